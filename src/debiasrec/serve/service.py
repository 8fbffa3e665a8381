"""The service's logic, independent of HTTP: recommend, take feedback, report fairness.

:class:`Service` ties a :class:`~debiasrec.serve.pipeline.ServingPipeline` to a feedback store,
a :class:`~debiasrec.serve.monitor.FairnessMonitor` and an
:class:`~debiasrec.serve.monitor.OnlineLoop`. The FastAPI app (:mod:`debiasrec.serve.app`) is a
thin layer over it; benchmarks drive it directly.

Cold start: a user id that is not in the training data gets the most popular training items
(``policy="popularity"``), without re-ranking or explanations. Text-based cold start (a user
description given as ``user_text``) is not available until the language-model text encoder
lands; such requests are answered with popularity and say so.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from debiasrec.data.dataset import Dataset
from debiasrec.data.split import Split
from debiasrec.errors import ConfigError, DataError
from debiasrec.serve.config import ServeConfig
from debiasrec.serve.monitor import TYPE_CODES, FairnessMonitor, OnlineLoop
from debiasrec.serve.pipeline import ServingPipeline
from debiasrec.serve.store import Event, FeedbackStore, open_store

TEXT_COLD_START_NOTE = (
    "text-based cold start is not available yet (it needs the language-model text encoder); "
    "served the popularity fallback"
)


class RequestError(DataError):
    """A request the service refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class Service:
    """Recommendations, feedback and the live fairness monitor over one result folder.

    Args:
        folder: result folder with ``models/``.
        config: service options (:class:`ServeConfig`).
        prepared: ``(dataset, split)`` already in memory (skips re-loading the data).
        store: a ready feedback store (default: from ``config.store``; SQLite file
            ``DIR/feedback.sqlite``).
    """

    def __init__(
        self,
        folder: str | Path,
        config: ServeConfig | None = None,
        *,
        prepared: tuple[Dataset, Split] | None = None,
        store: FeedbackStore | None = None,
    ) -> None:
        self.config = cfg = config or ServeConfig()
        self.pipeline = p = ServingPipeline(folder, cfg, prepared=prepared)
        self.store = store or open_store(
            cfg.store, p.folder / "feedback.sqlite", synchronous=cfg.synchronous
        )
        attrs = cfg.monitor_attrs if cfg.monitor_attrs is not None else p.sensitive
        unknown = [a for a in attrs if a not in p.sensitive]
        if unknown:
            raise ConfigError(
                f"monitor_attrs {unknown} are not sensitive attributes of the data; "
                f"available: {p.sensitive}"
            )
        self.monitor = FairnessMonitor(
            {a: p.dataset.user_groups(a) for a in attrs},
            p.long_tail,
            min_group_users=cfg.min_group_users,
        )
        self.online: OnlineLoop | None = None
        on = cfg.online
        if on.enabled:
            groups = None
            if on.kind == "utility_gap":
                attr = on.attr or (p.sensitive[0] if p.sensitive else None)
                if attr is None:
                    raise ConfigError("online utility_gap needs a sensitive attribute in the data")
                if attr not in p.sensitive:
                    raise ConfigError(f"online.attr {attr!r} is not one of {p.sensitive}")
                on = on.model_copy(update={"attr": attr})
                groups = p.dataset.user_groups(attr)
            p.reranker(on.post)  # fit now; an unusable choice fails at start-up
            self.online = OnlineLoop(on, long_tail=p.long_tail, groups=groups, store=self.store)
        if cfg.default_post != "none":
            p.reranker(cfg.default_post)
        self._replay()

    # ------------------------------------------------------------------ state
    def _replay(self) -> None:
        """Rebuild the monitor and the online-seen masks from the stored events."""
        ev = self.store.events()
        if len(ev) == 0:
            return
        users, items, types, values, pos, cold = self._codes_from_frame(ev)
        ok = items >= 0
        self.monitor.observe(users[ok], items[ok], types[ok], values[ok], pos[ok], cold_ids=cold)
        self._mask(users[ok], items[ok], types[ok])

    def _codes_from_frame(self, ev: Any) -> tuple[np.ndarray, ...]:
        p = self.pipeline
        users = np.array([p.user_index.get(u, -1) for u in ev["user_id"]], dtype=np.int64)
        items = np.array([p.item_index.get(i, -1) for i in ev["item_id"]], dtype=np.int64)
        types = ev["type"].map(TYPE_CODES).fillna(-1).to_numpy(dtype=np.int64)
        values = ev["value"].to_numpy(dtype=np.float64, na_value=np.nan)
        pos = ev["position"].to_numpy(dtype=np.float64, na_value=0.0)
        cold = sorted({u for u, c in zip(ev["user_id"], users, strict=True) if c < 0})
        return users, items, types, values, pos, cold

    def _mask(self, users: np.ndarray, items: np.ndarray, types: np.ndarray) -> None:
        sel = (types != TYPE_CODES["impression"]) & (users >= 0)
        for u in np.unique(users[sel]):
            self.pipeline.mark_seen(int(u), items[sel & (users == u)])

    def strength(self, post: str) -> float:
        """Current strength of ``post``: the online controller's, or the configured one."""
        if post == "none":
            return 0.0
        if self.online is not None and post == self.online.config.post:
            return self.online.strength
        return float(self.config.strengths.get(post, 0.5))

    # ------------------------------------------------------------------ recommend
    def _check_post(self, post: str | None) -> str:
        name = self.config.default_post if post is None else post
        names = self.pipeline.post_names()
        if name not in names:
            raise RequestError(f"unknown post-processor {name!r}; available: {names}")
        if name != "none":
            try:
                self.pipeline.reranker(name)
            except ConfigError as exc:
                raise RequestError(str(exc)) from None
        return name

    def recommend(
        self,
        user_id: str,
        k: int | None = None,
        *,
        post: str | None = None,
        user_text: str | None = None,
        cold_start: str = "popularity",
    ) -> dict[str, Any]:
        """A top-``k`` list for ``user_id`` with scores and explanations (JSON-ready)."""
        cfg, p = self.config, self.pipeline
        k = cfg.k_default if k is None else int(k)
        if not 1 <= k <= cfg.k_max:
            raise RequestError(f"k must be between 1 and {cfg.k_max}, got {k}")
        if cold_start not in ("popularity", "error"):
            raise RequestError(f"cold_start must be 'popularity' or 'error', got {cold_start!r}")
        name = self._check_post(post)
        code = p.user_code(user_id)
        request_id = uuid.uuid4().hex
        base = {"user_id": str(user_id), "k": k, "model": p.label, "request_id": request_id}
        if code is None:
            if cold_start == "error":
                raise RequestError(
                    f"unknown user {user_id!r}: not in the training data (ask with "
                    "cold_start=popularity to get the popularity fallback)",
                    status=404,
                )
            items, scores = p.popular_items(k)
            note = TEXT_COLD_START_NOTE if user_text else "user not in the training data"
            return {
                **base,
                "post": None,
                "strength": 0.0,
                "cold_start": {"policy": "popularity", "reason": note},
                "items": [
                    {
                        "item_id": p.item_ids[int(i)],
                        "rank": r + 1,
                        "score": float(s),
                        "because": [],
                    }
                    for r, (i, s) in enumerate(zip(items, scores, strict=True))
                ],
            }
        strength = self.strength(name)
        recs = p.recommend_codes(np.array([code]), k, name, strength)
        items = recs.items[0]
        keep = items >= 0
        items, scores = items[keep], recs.scores[0][keep]
        why = p.explain(code, items)
        return {
            **base,
            "post": None if name == "none" else name,
            "strength": strength,
            "cold_start": None,
            "explanation_method": p.explainer,
            "items": [
                {
                    "item_id": p.item_ids[int(i)],
                    "rank": r + 1,
                    "score": _finite(float(s)),
                    "because": [
                        {"item_id": p.item_ids[j], "weight": round(w, 6)} for j, w in why[r]
                    ],
                }
                for r, (i, s) in enumerate(zip(items, scores, strict=True))
            ],
        }

    # ------------------------------------------------------------------ feedback
    def feedback(self, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Validate, store (committed before returning), then fold into monitor and controller.

        Each event: ``user_id``, ``item_id``, ``type`` (impression, click, rating), optional
        ``value`` (the rating; required for ratings), ``position`` (1-based rank shown),
        ``request_id``, ``event_id`` (idempotency key: a repeated id is stored once).
        """
        cfg, p = self.config, self.pipeline
        if not events:
            raise RequestError("no events: send {'events': [...]} with at least one event")
        if len(events) > cfg.max_events:
            raise RequestError(
                f"too many events in one request ({len(events)} > {cfg.max_events}); split it",
                status=413,
            )
        rows: list[Event] = []
        for n, e in enumerate(events):
            where = f"events[{n}]"
            uid, iid, typ = str(e["user_id"]), str(e["item_id"]), e["type"]
            for label, v in (("user_id", uid), ("item_id", iid)):
                if not v or len(v) > cfg.max_id_length:
                    raise RequestError(f"{where}.{label} must have 1 to {cfg.max_id_length} chars")
            if p.item_code(iid) is None:
                raise RequestError(f"{where}: unknown item_id {iid!r} (not in the catalogue)")
            value = e.get("value")
            if typ == "rating":
                if value is None or not math.isfinite(float(value)):
                    raise RequestError(f"{where}: a rating needs a finite 'value'")
            elif value is not None and not math.isfinite(float(value)):
                raise RequestError(f"{where}: 'value' must be finite")
            rows.append(
                Event(
                    user_id=uid,
                    item_id=iid,
                    type=typ,
                    value=None if value is None else float(value),
                    position=e.get("position"),
                    request_id=e.get("request_id"),
                    event_id=e.get("event_id"),
                )
            )
        seqs = self.store.add_events(rows)  # committed: durable from here on
        users = np.array([p.user_index.get(r.user_id, -1) for r in rows], dtype=np.int64)
        items = np.array([p.item_index[r.item_id] for r in rows], dtype=np.int64)
        types = np.array([TYPE_CODES[r.type] for r in rows], dtype=np.int64)
        values = np.array([np.nan if r.value is None else r.value for r in rows])
        pos = np.array([0 if r.position is None else r.position for r in rows], dtype=np.float64)
        cold = sorted({r.user_id for r, c in zip(rows, users, strict=True) if c < 0})
        self.monitor.observe(users, items, types, values, pos, cold_ids=cold)
        self._mask(users, items, types)
        adjustments = []
        if self.online is not None:
            adjustments = self.online.observe(users, items, types, pos)
        return {
            "accepted": len(rows),
            "seq": seqs,
            "adjusted": bool(adjustments),
            "strength": None if self.online is None else self.online.strength,
        }

    # ------------------------------------------------------------------ reports
    def fairness(self) -> dict[str, Any]:
        """Live aggregates per user group and item group, and the controller's log."""
        snap = self.monitor.snapshot()
        snap["controller"] = {"enabled": False} if self.online is None else self.online.snapshot()
        snap["note"] = (
            "group labels come from the result folder's user table, server-side, and are used "
            f"only for these aggregates; groups with fewer than {self.config.min_group_users} "
            "users show counts only"
        )
        return snap

    def health(self) -> dict[str, Any]:
        p = self.pipeline
        return {
            "status": "ok",
            "model": p.label,
            "model_type": p.model.name,
            "n_users": p.n_users,
            "n_items": p.n_items,
            "events": self.store.count(),
            "store": self.store.kind,
            "default_post": self.config.default_post,
            "posts": {k: v is None for k, v in p.available_posts().items()},
        }

    def close(self) -> None:
        self.store.close()


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


__all__ = ["TEXT_COLD_START_NOTE", "RequestError", "Service"]
