"""The service's logic, independent of HTTP: recommend, take feedback, report fairness.

:class:`Service` ties a :class:`~debiasrec.serve.pipeline.ServingPipeline` to a feedback store,
a :class:`~debiasrec.serve.monitor.FairnessMonitor` and an
:class:`~debiasrec.serve.monitor.OnlineLoop`. The FastAPI app (:mod:`debiasrec.serve.app`) is a
thin layer over it; benchmarks drive it directly.

Cold start: a user id that is not in the training data gets the most popular training items
(``policy="popularity"``), without re-ranking or explanations. Text-based cold start (a user
description given as ``user_text``) is not available until the language-model text encoder
lands; such requests are answered with popularity and say so.

Feedback is validated completely before anything is stored; the store then commits the events
(an ``event_id`` already stored is not stored again), and the monitor, the online controller and
the online-seen masks are brought up to date from the store's accepted events, in store order,
each event exactly once (:meth:`Service._sync`): duplicates and retries change no counter.
"""

from __future__ import annotations

import hashlib
import math
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from debiasrec.data.dataset import Dataset
from debiasrec.data.split import Split
from debiasrec.errors import ConfigError, DataError
from debiasrec.serve.config import ServeConfig, load_api_keys
from debiasrec.serve.monitor import TYPE_CODES, FairnessMonitor, OnlineLoop
from debiasrec.serve.pipeline import ServingPipeline
from debiasrec.serve.store import Event, EventConflict, FeedbackStore, open_store

EVENT_FIELDS = ("user_id", "item_id", "type", "value", "position", "request_id", "event_id")
MAX_POSITION = 10_000

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
        # API keys from cfg.api_key_env (checked first: a missing key fails fast); only their
        # SHA-256 digests are kept
        self.api_key_digests = tuple(
            hashlib.sha256(k.encode()).digest() for k in load_api_keys(cfg.api_key_env)
        )
        self.pipeline = p = ServingPipeline(folder, cfg, prepared=prepared)
        #: valid rating values (feedback outside is refused)
        self.rating_range = cfg.rating_range or _rating_range(p.dataset)
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
            privacy=cfg.privacy,
            rating_range=self.rating_range,
            store=self.store,
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
            if on.kind == "utility_gap" and attr not in self.monitor.attrs and self.monitor.private:
                raise ConfigError(
                    f"online.attr {attr!r} must be monitored (monitor_attrs) when the monitor "
                    "is private: the utility_gap controller is fed its noisy releases"
                )
            p.reranker(on.post)  # fit now; an unusable choice fails at start-up
            self.online = OnlineLoop(
                on,
                long_tail=p.long_tail,
                groups=groups,
                store=self.store,
                private=self.monitor.private,
            )
        if cfg.default_post != "none":
            p.reranker(cfg.default_post)
        self._lock = threading.RLock()
        self._seq = 0  # the last store sequence number folded into monitor, masks, controller
        self._cold: dict[str, int] = {}  # ids not in the training data -> negative codes
        self._sync(replay=True)

    # ------------------------------------------------------------------ state
    def _sync(
        self, *, replay: bool = False, inserted: tuple[list[int], list[Event]] | None = None
    ) -> list[dict[str, Any]]:
        """Fold the store's events after the last folded one into monitor, masks, controller.

        Counters are derived from what the store accepted, in store order, once per event.
        ``inserted``: the ``(seqs, events)`` the caller's commit has just inserted; when they
        are exactly the store's next sequence numbers (no other writer) they are folded without
        reading them back. At start-up (``replay``) the monitor and the masks are rebuilt; the
        controller resumes from its last logged strength instead of re-living old events.
        """
        if inserted is not None and inserted[0] == list(
            range(self._seq + 1, self._seq + 1 + len(inserted[0]))
        ):
            seqs = np.asarray(inserted[0], dtype=np.int64)
            evs = inserted[1]
            cols = (
                [e.user_id for e in evs],
                [e.item_id for e in evs],
                [e.type for e in evs],
                [e.value for e in evs],
                [e.position for e in evs],
            )
        else:
            ev = self.store.events(after_seq=self._seq)
            seqs = ev["seq"].to_numpy(dtype=np.int64)
            cols = tuple(
                ev[c].tolist() for c in ("user_id", "item_id", "type", "value", "position")
            )
        if len(seqs) == 0:
            return []
        users, items, types, values, pos = self._codes(*cols)
        releases = self.monitor.observe(seqs, users, items, types, values, pos)
        self._seq = int(seqs[-1])
        ok = (items >= 0) & (types >= 0)
        self._mask(users[ok], items[ok], types[ok])
        if replay or self.online is None:
            return []
        made = self.online.observe(users[ok], items[ok], types[ok], pos[ok])
        return made + self._feed_releases(releases)

    def _feed_releases(self, releases: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
        made: list[dict[str, Any]] = []
        if self.online is not None and self.online.private:
            attr = self.online.config.attr
            assert attr is not None  # a private controller watches one attribute (validated)
            for rel in releases:
                made += self.online.observe_release(rel[attr])
        return made

    def _codes(
        self, user_ids: list, item_ids: list, types: list, values: list, positions: list
    ) -> tuple[np.ndarray, ...]:
        """Codes of stored events; a user id not in the training data gets a negative code."""
        p, cold = self.pipeline, self._cold
        uidx, iidx = p.user_index, p.item_index
        users = np.array(
            [uidx[u] if u in uidx else cold.setdefault(u, -1 - len(cold)) for u in user_ids],
            dtype=np.int64,
        )
        items = np.array([iidx.get(i, -1) for i in item_ids], dtype=np.int64)
        codes = np.array([TYPE_CODES.get(t, -1) for t in types], dtype=np.int64)
        vals = np.array([np.nan if _missing(v) else float(v) for v in values], dtype=np.float64)
        pos = np.array([0.0 if _missing(v) else float(v) for v in positions], dtype=np.float64)
        return users, items, codes, vals, pos

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
        why = self._explain(code, items)
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

    def _explain(self, code: int, items: np.ndarray) -> list[list[tuple[int, float]]]:
        """``because`` lists under the ``explain`` setting (bounded: few distinct items)."""
        cfg = self.config
        if cfg.explain == "off":
            return [[] for _ in items]
        why = self.pipeline.explain(code, items)
        if cfg.explain == "full":
            return why
        # the strongest contributor of each item, in rank order, then by total contribution
        m = cfg.explain_max_items
        keep: dict[int, None] = {}
        for lst in why:
            if len(keep) >= m:
                break
            if lst:
                keep.setdefault(lst[0][0])
        total: dict[int, float] = {}
        for lst in why:
            for j, w in lst:
                total[j] = total.get(j, 0.0) + w
        for j in sorted(total, key=lambda j: (-total[j], j)):
            if len(keep) >= m:
                break
            keep.setdefault(j)
        return [[(j, w) for j, w in lst if j in keep] for lst in why]

    # ------------------------------------------------------------------ feedback
    def _event(self, n: int, e: Any) -> Event:
        """One validated event (RequestError naming ``events[n].field`` otherwise)."""
        cfg, p = self.config, self.pipeline
        where = f"events[{n}]"
        if not isinstance(e, Mapping):
            raise RequestError(f"{where} must be an object with user_id, item_id and type")
        unknown = sorted(set(map(str, e)) - set(EVENT_FIELDS))
        if unknown:
            raise RequestError(f"{where}: unknown field(s) {unknown}; allowed: {EVENT_FIELDS}")
        ids = {}
        for label in ("user_id", "item_id"):
            v = e.get(label)
            if v is None or isinstance(v, bool) or not isinstance(v, (str, int, np.integer)):
                raise RequestError(f"{where}.{label} is required (a string or an integer)")
            ids[label] = str(int(v)) if isinstance(v, np.integer) else str(v)
            if not 1 <= len(ids[label]) <= cfg.max_id_length:
                raise RequestError(f"{where}.{label} must have 1 to {cfg.max_id_length} characters")
        typ = e.get("type")
        if typ not in TYPE_CODES:
            raise RequestError(f"{where}.type must be one of {list(TYPE_CODES)}, got {typ!r}")
        if p.item_code(ids["item_id"]) is None:
            raise RequestError(
                f"{where}: unknown item_id {ids['item_id']!r} (not in the catalogue)"
            )
        value = e.get("value")
        if value is not None:
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise RequestError(f"{where}.value must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise RequestError(f"{where}.value must be finite, got {value!r}")
        if typ == "rating":
            if value is None:
                raise RequestError(f"{where}: a rating needs a finite 'value'")
            lo, hi = self.rating_range
            if not lo <= float(value) <= hi:
                raise RequestError(
                    f"{where}.value: a rating must lie in [{lo:g}, {hi:g}] (the data's rating "
                    f"range; set rating_range to change it), got {value!r}"
                )
        position = e.get("position")
        if position is not None and (
            isinstance(position, bool)
            or not isinstance(position, (int, np.integer))
            or not 1 <= position <= MAX_POSITION
        ):
            raise RequestError(
                f"{where}.position must be an integer rank in [1, {MAX_POSITION}], got {position!r}"
            )
        for label, lo in (("request_id", 0), ("event_id", 1)):
            v = e.get(label)
            if v is not None and (not isinstance(v, str) or not lo <= len(v) <= 128):
                raise RequestError(f"{where}.{label} must be a string of {lo} to 128 characters")
        return Event(
            user_id=ids["user_id"],
            item_id=ids["item_id"],
            type=typ,
            value=None if value is None else float(value),
            position=None if position is None else int(position),
            request_id=e.get("request_id"),
            event_id=e.get("event_id"),
        )

    def feedback(self, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Validate every event, store them (committed before returning), fold in once.

        Each event: ``user_id``, ``item_id``, ``type`` (impression, click, rating), optional
        ``value`` (the rating; required for ratings), ``position`` (1-based rank shown),
        ``request_id``, ``event_id`` (idempotency key: a repeated id with the same event is
        stored and counted once; with a different event it is refused, 409, nothing stored).

        Raises:
            RequestError: an invalid event (nothing is stored), or a conflicting ``event_id``.
        """
        cfg = self.config
        if isinstance(events, (str, bytes)) or not isinstance(events, Sequence) or not events:
            raise RequestError("no events: send {'events': [...]} with at least one event")
        if len(events) > cfg.max_events:
            raise RequestError(
                f"too many events in one request ({len(events)} > {cfg.max_events}); split it",
                status=413,
            )
        rows = [self._event(n, e) for n, e in enumerate(events)]  # all valid, or nothing stored
        with self._lock:
            try:
                seqs, new = self.store.insert(rows)  # committed: durable from here on
            except EventConflict as exc:
                raise RequestError(str(exc), status=409) from None
            new_seqs = [q for q, n in zip(seqs, new, strict=True) if n]
            new_rows = [r for r, n in zip(rows, new, strict=True) if n]
            adjustments = self._sync(inserted=(new_seqs, new_rows))
            adjustments += self._feed_releases(self.monitor.tick())
        return {
            "accepted": len(rows),
            "duplicates": int(len(new) - sum(new)),
            "seq": seqs,
            "adjusted": bool(adjustments),
            "strength": None if self.online is None else self.online.strength,
        }

    # ------------------------------------------------------------------ reports
    def fairness(self) -> dict[str, Any]:
        """Aggregates per user group (private releases) and item group, the controller's log."""
        with self._lock:
            self._sync()  # events another writer committed to a shared store
            self._feed_releases(self.monitor.tick())
            snap = self.monitor.snapshot()
            snap["controller"] = (
                {"enabled": False} if self.online is None else self.online.snapshot()
            )
        if self.monitor.private:
            how = (
                "user-group statistics are sums of differentially private releases (see "
                "'privacy'); events of the open window are not included yet"
            )
        else:
            how = "user-group statistics are exact and live (privacy mechanism off)"
        snap["note"] = (
            "group labels come from the result folder's user table, server-side, and are used "
            f"only for these aggregates; {how}; groups with fewer than "
            f"{self.config.min_group_users} users show counts only"
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


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _rating_range(ds: Dataset) -> tuple[float, float]:
    """The training data's rating range (0 to 5 without ratings)."""
    r = ds.ratings
    if r is not None:
        r = np.asarray(r, dtype=np.float64)
        r = r[np.isfinite(r)]
        if len(r) and r.min() < r.max():
            return float(r.min()), float(r.max())
    return 0.0, 5.0


__all__ = ["TEXT_COLD_START_NOTE", "RequestError", "Service"]
