"""Live fairness monitor and the online self-calibration loop of the service.

:class:`FairnessMonitor` keeps running totals of the feedback stream:

- per user group of each monitored attribute (labels read server-side from the result folder's
  data, used only for these aggregates): distinct users, impressions, position-weighted exposure
  ``sum 1 / log2(position + 1)``, clicks, ratings; utility estimates are the click-through rate
  ``CTR_g = clicks_g / impressions_g`` (standard error ``sqrt(CTR (1 - CTR) / impressions)``)
  and the mean rating (its standard error from the running sum of squares);
- per item group (short head vs long tail, by training popularity): impressions, exposure,
  exposure share and CTR.

Groups with fewer than ``min_group_users`` distinct users report counts only (estimates None), so
that the endpoint never describes an individual. Users not in the training data are counted under
``"(cold start)"``.

:class:`OnlineLoop` feeds the same stream to :class:`~debiasrec.debias.post.OnlineController`
every ``update_every`` impressions and logs each adjustment (in memory and in the store).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
import pandas as pd

from debiasrec.debias.post.online import OnlineController
from debiasrec.serve.config import OnlineServeConfig
from debiasrec.serve.store import Adjustment, FeedbackStore

IMPRESSION, CLICK, RATING = 0, 1, 2
TYPE_CODES = {"impression": IMPRESSION, "click": CLICK, "rating": RATING}
COLD = "(cold start)"
MISSING = "(missing)"


def position_weight(positions: np.ndarray) -> np.ndarray:
    """DCG-style exposure ``1 / log2(position + 1)``; unknown positions (<= 0) count as 1."""
    p = np.asarray(positions, dtype=np.float64)
    return np.where(p >= 1, 1.0 / np.log2(np.maximum(p, 1.0) + 1.0), 1.0)


class _Totals:
    """Per-bucket running sums (numpy arrays indexed by bucket)."""

    FIELDS = ("impressions", "exposure", "clicks", "ratings", "rating_sum", "rating_sq")

    def __init__(self, n: int) -> None:
        for f in self.FIELDS:
            setattr(self, f, np.zeros(n))

    def add(self, bucket: np.ndarray, types: np.ndarray, w: np.ndarray, values: np.ndarray) -> None:
        n = len(self.impressions)
        imp, clk, rat = types == IMPRESSION, types == CLICK, types == RATING
        self.impressions += np.bincount(bucket[imp], minlength=n)
        self.exposure += np.bincount(bucket[imp], weights=w[imp], minlength=n)
        self.clicks += np.bincount(bucket[clk], minlength=n)
        v = np.nan_to_num(values[rat])
        self.ratings += np.bincount(bucket[rat], minlength=n)
        self.rating_sum += np.bincount(bucket[rat], weights=v, minlength=n)
        self.rating_sq += np.bincount(bucket[rat], weights=v * v, minlength=n)


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


class FairnessMonitor:
    """Running per-group exposure and utility estimates (see module docstring).

    Args:
        groups: ``{attr: pd.Categorical}`` labels per user code (server-side only).
        long_tail: ``[n_items]`` bool, True for long-tail items.
        min_group_users: distinct users a group needs before its estimates are shown.
    """

    def __init__(
        self,
        groups: dict[str, pd.Categorical],
        long_tail: np.ndarray,
        *,
        min_group_users: int = 5,
    ) -> None:
        self.min_group_users = int(min_group_users)
        self.long_tail = np.asarray(long_tail, dtype=bool)
        self._lock = threading.Lock()
        self._attrs: dict[str, tuple[np.ndarray, list[str]]] = {}
        for attr, cat in groups.items():
            codes = np.asarray(cat.codes, dtype=np.int64)
            names = [f"{attr}={c}" for c in cat.categories]
            # buckets: the categories, then missing, then cold start
            codes = np.where(codes >= 0, codes, len(names))
            self._attrs[attr] = (codes, [*names, f"{attr}={MISSING}", COLD])
        n_users = len(next(iter(groups.values()))) if groups else 0
        self._users_seen = np.zeros(n_users, dtype=bool)
        self._cold_users: set[str] = set()
        self._user_totals = {a: _Totals(len(names)) for a, (_, names) in self._attrs.items()}
        self._item_totals = _Totals(2)
        self.n_events = 0

    def observe(
        self,
        users: np.ndarray,
        items: np.ndarray,
        types: np.ndarray,
        values: np.ndarray,
        positions: np.ndarray,
        cold_ids: list[str] | None = None,
    ) -> None:
        """Fold in events (user code -1 = a user not in the training data)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        types = np.asarray(types, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        w = position_weight(positions)
        with self._lock:
            known = users >= 0
            if len(self._users_seen):
                self._users_seen[users[known]] = True
            self._cold_users.update(cold_ids or [])
            for attr, (codes, names) in self._attrs.items():
                bucket = np.where(known, codes[np.where(known, users, 0)], len(names) - 1)
                self._user_totals[attr].add(bucket, types, w, values)
            self._item_totals.add(self.long_tail[items].astype(np.int64), types, w, values)
            self.n_events += len(users)

    def _rows(self, totals: _Totals, names: list[str], users: np.ndarray) -> list[dict[str, Any]]:
        rows = []
        tot_exp = float(totals.exposure.sum())
        for g, name in enumerate(names):
            n_u = int(users[g])
            show = n_u >= self.min_group_users
            imp, clk = float(totals.impressions[g]), float(totals.clicks[g])
            nr = float(totals.ratings[g])
            ctr = _ratio(clk, imp)
            mean_r = _ratio(float(totals.rating_sum[g]), nr)
            se_r = None
            if mean_r is not None and nr > 1:
                var = max(float(totals.rating_sq[g]) / nr - mean_r**2, 0.0) * nr / (nr - 1)
                se_r = float(np.sqrt(var / nr))
            rows.append(
                {
                    "group": name,
                    "users": n_u,
                    "impressions": int(imp),
                    "clicks": int(clk),
                    "ratings": int(nr),
                    "exposure": float(totals.exposure[g]) if show else None,
                    "exposure_share": _ratio(float(totals.exposure[g]), tot_exp) if show else None,
                    "exposure_per_user": _ratio(float(totals.exposure[g]), n_u) if show else None,
                    "ctr": ctr if show else None,
                    "ctr_se": (
                        float(np.sqrt(ctr * (1 - ctr) / imp)) if show and ctr is not None else None
                    ),
                    "mean_rating": mean_r if show else None,
                    "mean_rating_se": se_r if show else None,
                    "suppressed": not show,
                }
            )
        return rows

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready aggregates (no user ids, no per-user attributes)."""
        with self._lock:
            out: dict[str, Any] = {"events": self.n_events, "user_groups": {}}
            seen = np.flatnonzero(self._users_seen)
            for attr, (codes, names) in self._attrs.items():
                users = np.bincount(codes[seen], minlength=len(names)).astype(np.int64)
                users[len(names) - 1] = len(self._cold_users)
                rows = self._rows(self._user_totals[attr], names, users)
                out["user_groups"][attr] = [
                    r for r in rows if r["users"] > 0 or r["impressions"] > 0
                ]
            lt = self.long_tail
            item_rows = self._rows(
                self._item_totals,
                ["head", "long_tail"],
                np.array([int((~lt).sum()), int(lt.sum())]),  # items per group, not users
            )
            for r in item_rows:
                r["items"] = r.pop("users")
                r.pop("exposure_per_user")
                r["suppressed"] = False
            out["item_groups"] = item_rows
            return out


class OnlineLoop:
    """Online self-calibration of one re-ranker's strength from the feedback stream.

    ``exposure_share``: long-tail share of position-weighted impressions; ``utility_gap``:
    CTR gap between the groups of ``attr`` (``groups`` gives the label of each user code).
    Every update is logged: :attr:`log` (latest 1000) and the store's ``adjustments`` table.
    """

    def __init__(
        self,
        config: OnlineServeConfig,
        *,
        long_tail: np.ndarray,
        groups: pd.Categorical | None = None,
        store: FeedbackStore | None = None,
    ) -> None:
        self.config = config
        if config.kind == "utility_gap" and groups is None:
            raise ValueError("utility_gap needs user groups")
        self.controller = OnlineController(
            kind=config.kind,
            target=config.target,
            init=config.init,
            lo=config.lo,
            hi=config.hi,
            gain=config.gain,
            max_delta=config.max_delta,
            decay=config.decay,
            min_events=config.min_events,
        )
        self.long_tail = np.asarray(long_tail, dtype=bool)
        self.group_codes = None if groups is None else np.asarray(groups.codes, dtype=np.int64)
        self.group_names = None if groups is None else [str(c) for c in groups.categories]
        self.store = store
        self.log: deque[dict[str, Any]] = deque(maxlen=1000)
        self.n_updates = 0
        self._lock = threading.Lock()
        self._reset_buffer()
        if store is not None:  # resume from the last logged strength after a restart
            prev = store.adjustments()
            prev = prev[(prev["post"] == config.post) & (prev["kind"] == config.kind)]
            for row in prev.tail(self.log.maxlen or 1000).to_dict("records"):
                self.log.append(_clean(row))
            self.n_updates = len(prev)
            if len(prev):
                last = float(prev["strength"].iloc[-1])
                self.controller.strength = float(np.clip(last, config.lo, config.hi))

    def _reset_buffer(self) -> None:
        self._n = 0
        self._n_events = 0
        self._prot: list[np.ndarray] = []
        self._w: list[np.ndarray] = []
        self._imp: dict[int, float] = {}
        self._clk: dict[int, float] = {}

    @property
    def strength(self) -> float:
        return float(self.controller.strength)

    def observe(
        self, users: np.ndarray, items: np.ndarray, types: np.ndarray, positions: np.ndarray
    ) -> list[dict[str, Any]]:
        """Buffer events; run one controller update per ``update_every`` impressions.

        Returns:
            The adjustments made (usually none or one).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        types = np.asarray(types, dtype=np.int64)
        made = []
        with self._lock:
            imp = types == IMPRESSION
            self._n_events += len(users)
            self._n += int(imp.sum())
            if self.config.kind == "exposure_share":
                self._prot.append(self.long_tail[items[imp]])
                self._w.append(position_weight(np.asarray(positions)[imp]))
            else:
                assert self.group_codes is not None
                known = users >= 0
                g = np.where(known, self.group_codes[np.where(known, users, 0)], -1)
                for mask, acc in ((imp, self._imp), (types == CLICK, self._clk)):
                    sel = g[mask & (g >= 0)]
                    for code, cnt in zip(*np.unique(sel, return_counts=True), strict=True):
                        acc[int(code)] = acc.get(int(code), 0.0) + float(cnt)
            if self._n >= self.config.update_every:
                made.append(self._update())
        return made

    def _frame(self) -> pd.DataFrame:
        if self.config.kind == "exposure_share":
            prot = np.concatenate(self._prot) if self._prot else np.zeros(0, bool)
            w = np.concatenate(self._w) if self._w else np.zeros(0)
            return pd.DataFrame({"protected": prot, "exposure": w})
        assert self.group_names is not None
        labels, util = [], []
        for code, n_imp in self._imp.items():
            n = int(n_imp)
            hits = min(int(self._clk.get(code, 0.0)), n)
            labels += [self.group_names[code]] * n
            util += [1.0] * hits + [0.0] * (n - hits)
        return pd.DataFrame({"group": labels, "utility": util})

    def _update(self) -> dict[str, Any]:
        before = self.controller.strength
        self.controller.update(self._frame())
        hist = self.controller._rows[-1]
        row = {
            "at": time.time(),
            "post": self.config.post,
            "kind": self.config.kind,
            "strength": float(self.controller.strength),
            "value": None if not np.isfinite(hist[1]) else float(hist[1]),
            "delta": float(self.controller.strength - before),
            "n_events": int(self._n_events),
        }
        self._reset_buffer()
        self.n_updates += 1
        self.log.append(row)
        if self.store is not None:
            self.store.add_adjustment(Adjustment(**row))
        return row

    def snapshot(self, last: int = 50) -> dict[str, Any]:
        cfg = self.config
        with self._lock:
            v = self.controller.value()
            return {
                "enabled": True,
                "post": cfg.post,
                "kind": cfg.kind,
                "op": self.controller.config.op,
                "target": cfg.target,
                "attr": cfg.attr if cfg.kind == "utility_gap" else None,
                "strength": self.strength,
                "bounds": [cfg.lo, cfg.hi],
                "max_delta": cfg.max_delta,
                "update_every": cfg.update_every,
                "value": float(v) if np.isfinite(v) else None,
                "buffered_impressions": self._n,
                "n_adjustments": self.n_updates,
                "adjustments": list(self.log)[-last:],
            }


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, (np.floating, float)):
            out[k] = None if not np.isfinite(v) else float(v)
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


__all__ = ["CLICK", "IMPRESSION", "RATING", "FairnessMonitor", "OnlineLoop", "position_weight"]
