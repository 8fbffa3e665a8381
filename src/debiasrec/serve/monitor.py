"""Live fairness monitor and the online self-calibration loop of the service.

:class:`FairnessMonitor` aggregates the accepted feedback stream:

- per user group of each monitored attribute (labels read server-side from the result folder's
  data, used only for these aggregates): users, impressions, position-weighted exposure
  ``sum 1 / log2(position + 1)``, clicks, ratings; utility estimates are the click-through rate
  ``CTR_g = clicks_g / impressions_g`` and the mean rating, each with a standard error;
- per item group (short head vs long tail, by training popularity): impressions, exposure,
  exposure share and CTR (these do not depend on anyone's sensitive attributes and are exact).

**Privacy of the user-group statistics** (``PrivacyConfig.mechanism="laplace"``, the default).
Anyone who can post feedback for a user id and read ``/fairness`` before and after could read
that user's group off exact counts (differencing). So the user-group statistics are published
only as differentially private releases (Dwork, McSherry, Nissim & Smith 2006):

1. *Contribution bound.* Within a budget period a user's first ``C = max_events_per_user``
   accepted events count; later ones are stored and used for everything else, but not counted
   here. One user's counted contribution, in units where an impression adds 1 to impressions and
   ``w <= 1`` to exposure, a click 1 to clicks and a rating 1 to ratings and its value scaled to
   ``[0, 1]`` to the rating sum, plus 1 to ``users`` for their first counted event, has L1 norm
   at most ``1 + 2C``.
2. *Windows.* The accepted events (every one, in store order) are cut into windows of
   ``release_every`` events (or ``release_seconds``); the schedule depends only on how many
   events arrive and when, never on anyone's group.
3. *Noise.* When a window closes, every cell of its per-group table (each attribute, each group,
   each statistic) gets independent discrete Laplace noise ``P(z) ~ exp(-|z| / t)`` with
   ``t = A * 2 * (1 + 2C) / epsilon`` in the units above (``A`` monitored attributes). Changing
   one user's attributes moves their contribution from one group's row to another's in each of
   the ``A`` tables: L1 distance at most ``A * 2 * (1 + 2C)`` over all windows of the period
   together, so the whole sequence of releases of a period is ``epsilon``-DP with respect to
   any change of one user's sensitive attributes (Laplace mechanism; the discrete version has
   the same privacy loss for integer shifts).
4. *Publication.* ``/fairness`` shows sums of released windows only (post-processing, no further
   loss); the events of the open window are not shown. Releases are persisted in the store, so
   a restart publishes the same numbers rather than fresh noise. Budget periods
   (``period_releases``) restart the contribution bound; the losses of ``k`` periods add up to
   ``k * epsilon``.

``mechanism="off"`` publishes exact, live counts (local debugging only; it leaks).

:class:`OnlineLoop` feeds the same stream to :class:`~debiasrec.debias.post.OnlineController`
every ``update_every`` impressions and logs each adjustment (in memory and in the store). A
``utility_gap`` controller reads user groups, so with privacy on it is fed the noisy releases
(one update per release) instead of raw events.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import pandas as pd

from debiasrec.debias.post.online import OnlineController
from debiasrec.errors import ConfigError, DataError
from debiasrec.serve.config import OnlineServeConfig, PrivacyConfig
from debiasrec.serve.store import Adjustment, FeedbackStore, Release

IMPRESSION, CLICK, RATING = 0, 1, 2
TYPE_CODES = {"impression": IMPRESSION, "click": CLICK, "rating": RATING}
COLD = "(cold start)"
MISSING = "(missing)"

#: statistics of a private release, and the integer units per normalised unit of each
STATS = ("users", "impressions", "exposure", "clicks", "ratings", "rating_sum")
QUANT = 100  # exposure and scaled ratings are kept in hundredths
UNITS = np.array([1, 1, QUANT, 1, 1, QUANT], dtype=np.int64)
SERIES_KEY = "monitor_series"


def position_weight(positions: np.ndarray) -> np.ndarray:
    """DCG-style exposure ``1 / log2(position + 1)``; unknown positions (<= 0) count as 1."""
    p = np.asarray(positions, dtype=np.float64)
    return np.where(p >= 1, 1.0 / np.log2(np.maximum(p, 1.0) + 1.0), 1.0)


def discrete_laplace(scale: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Discrete Laplace noise ``P(z) = (1-p)/(1+p) p^|z|``, ``p = exp(-1/scale)``, per cell.

    The difference of two geometric variables, each drawn by inverting its CDF from the given
    uniforms in ``(0, 1]`` (``uniform`` has shape ``(2, *scale.shape)``).
    """
    scale = np.asarray(scale, dtype=np.float64)
    g = np.floor(np.log(uniform) * -scale)  # log(u) / log(p) with log(p) = -1 / scale
    return (g[0] - g[1]).astype(np.int64)


def discrete_laplace_var(scale: np.ndarray | float) -> np.ndarray:
    """Variance ``2p / (1-p)^2`` of :func:`discrete_laplace` noise (``p = exp(-1/scale)``)."""
    p = np.exp(-1.0 / np.asarray(scale, dtype=np.float64))
    return 2.0 * p / (1.0 - p) ** 2


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """0-based rank of each element among the earlier elements with the same key."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    start = np.r_[True, sk[1:] != sk[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(len(sk)), 0))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(sk)) - first
    return rank


class _Totals:
    """Per-bucket running sums (numpy arrays indexed by bucket)."""

    FIELDS = ("impressions", "exposure", "clicks", "ratings", "rating_sum", "rating_sq")
    impressions: np.ndarray
    exposure: np.ndarray
    clicks: np.ndarray
    ratings: np.ndarray
    rating_sum: np.ndarray
    rating_sq: np.ndarray

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
        with np.errstate(over="ignore"):  # stored ratings from before range checks
            self.rating_sum += np.bincount(bucket[rat], weights=v, minlength=n)
            self.rating_sq += np.bincount(bucket[rat], weights=v * v, minlength=n)


def _ratio(a: float, b: float) -> float | None:
    return _finite(a / b) if b > 0 else None


def _finite(x: float | None) -> float | None:
    """``x`` as a float, or None when it is missing or not finite (JSON has no inf/NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None


class FairnessMonitor:
    """Per-group exposure and utility estimates of the feedback stream (see module docstring).

    Args:
        groups: ``{attr: pd.Categorical}`` labels per user code (server-side only).
        long_tail: ``[n_items]`` bool, True for long-tail items.
        min_group_users: (noisy) users a group needs before its estimates are shown.
        privacy: the release mechanism (default: :class:`PrivacyConfig`, private releases).
        rating_range: the valid ratings (scaled to [0, 1] for the private rating sum).
        store: where releases are persisted (and read back after a restart); None keeps them
            in memory only.
    """

    def __init__(
        self,
        groups: dict[str, pd.Categorical],
        long_tail: np.ndarray,
        *,
        min_group_users: int = 5,
        privacy: PrivacyConfig | None = None,
        rating_range: tuple[float, float] = (0.0, 5.0),
        store: FeedbackStore | None = None,
    ) -> None:
        self.min_group_users = int(min_group_users)
        self.privacy = privacy = privacy or PrivacyConfig()
        self.private = privacy.mechanism != "off"
        lo, hi = rating_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"rating_range must be finite with low < high, got {[lo, hi]}")
        self.rating_range = (float(lo), float(hi))
        self.long_tail = np.asarray(long_tail, dtype=bool)
        self._lock = threading.RLock()
        self._attrs: dict[str, tuple[np.ndarray, list[str]]] = {}
        for attr, cat in groups.items():
            codes = np.asarray(cat.codes, dtype=np.int64)
            names = [f"{attr}={c}" for c in cat.categories]
            # buckets: the categories, then missing, then cold start
            codes = np.where(codes >= 0, codes, len(names))
            self._attrs[attr] = (codes, [*names, f"{attr}={MISSING}", COLD])
        n_users = len(next(iter(groups.values()))) if groups else 0
        self.n_users = n_users
        self._item_totals = _Totals(2)
        self.n_events = 0
        self.last_seq = 0
        if not self.private:
            self._users_seen = np.zeros(n_users, dtype=bool)
            self._cold_users: set[int] = set()
            self._user_totals = {a: _Totals(len(names)) for a, (_, names) in self._attrs.items()}
            return
        # ---- private releases
        n_attrs = max(len(self._attrs), 1)
        c = privacy.max_events_per_user
        #: discrete Laplace scale per statistic, in each statistic's integer units
        self.noise_scale = n_attrs * 2.0 * (1 + 2 * c) / privacy.epsilon * UNITS
        self.store = store
        self.series = self._series_id()
        self.series_start = 0
        self._stored: dict[int, Release] = {}
        if store is not None:
            meta = store.get_meta(SERIES_KEY)
            known = json.loads(meta) if meta else {}
            if known.get("id") == self.series:
                self.series_start = int(known["start_seq"])
                self._stored = {r.release: r for r in store.releases(self.series)}
            else:  # new settings or groups: a new series, from the events still to come
                self.series_start = store.last_seq()
                store.set_meta(
                    SERIES_KEY, json.dumps({"id": self.series, "start_seq": self.series_start})
                )
        self.n_releases = 0
        self.released_events = 0
        self.last_release_at: float | None = None
        self._released = {
            a: np.zeros((len(n), len(STATS)), np.int64) for a, (_, n) in self._attrs.items()
        }
        self._new_period()
        self._new_window()

    @property
    def attrs(self) -> list[str]:
        """The monitored attributes."""
        return list(self._attrs)

    # ------------------------------------------------------------------ private state
    def _series_id(self) -> str:
        p = self.privacy
        key = {
            "epsilon": p.epsilon,
            "max_events_per_user": p.max_events_per_user,
            "release_every": p.release_every,
            "release_seconds": p.release_seconds,
            "period_releases": p.period_releases,
            "rating_range": list(self.rating_range),
            "groups": {a: names for a, (_, names) in self._attrs.items()},
            "n_users": self.n_users,
            "seed": p.seed,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    def _new_period(self) -> None:
        self._counted = np.zeros(self.n_users, dtype=np.int64)
        self._cold_period: set[int] = set()

    def _new_window(self) -> None:
        self._window = {
            a: np.zeros((len(n), len(STATS)), np.int64) for a, (_, n) in self._attrs.items()
        }
        self._window_events = 0
        self._window_started: float | None = None

    def _noise(self, release: int, shape: tuple[int, int]) -> np.ndarray:
        scale = np.broadcast_to(self.noise_scale, shape)
        if self.privacy.seed is None:
            rnd = secrets.SystemRandom()
            u = np.array([1.0 - rnd.random() for _ in range(2 * scale.size)])
        else:  # reproducible (tests): one stream per series and release, never reused
            seed = [int(self.privacy.seed), int(self.series[:8], 16), release]
            u = 1.0 - np.random.default_rng(seed).random(2 * scale.size)
        return discrete_laplace(scale, u.reshape(2, *shape))

    def _fold_private(
        self,
        users: np.ndarray,
        types: np.ndarray,
        w: np.ndarray,
        values: np.ndarray,
        valid: np.ndarray,
    ) -> None:
        """Add one window's worth of events, each user's counted events capped per period."""
        if not self._attrs:  # nothing monitored: the windows stay empty
            return
        c = self.privacy.max_events_per_user
        known = np.flatnonzero(valid & (users >= 0))
        u = users[known]
        rank = _rank_within(u)
        prior = self._counted[u]
        keep = prior + rank < c
        first_known = known[keep & (prior == 0) & (rank == 0)]
        np.add.at(self._counted, u[keep], 1)
        cold = np.flatnonzero(valid & (users < 0))
        cold_first = []
        for i in cold:  # cold-start ids carry no attributes: not capped
            key = int(users[i])
            if key not in self._cold_period:
                self._cold_period.add(key)
                cold_first.append(i)
        counted = np.sort(np.concatenate([known[keep], cold]))
        if len(counted) == 0:
            return
        firsts = np.concatenate([first_known, np.asarray(cold_first, dtype=np.int64)])
        t = types[counted]
        lo, hi = self.rating_range
        scaled = np.clip((np.nan_to_num(values[counted], nan=lo) - lo) / (hi - lo), 0.0, 1.0)
        contrib = np.zeros((len(counted), len(STATS)), dtype=np.int64)
        contrib[:, 0] = np.isin(counted, firsts)  # a user's first counted event adds the user
        contrib[:, 1] = t == IMPRESSION
        contrib[:, 2] = np.where(t == IMPRESSION, np.rint(w[counted] * QUANT), 0)
        contrib[:, 3] = t == CLICK
        contrib[:, 4] = t == RATING
        contrib[:, 5] = np.where(t == RATING, np.rint(scaled * QUANT), 0)
        uu = users[counted]
        for attr, (codes, names) in self._attrs.items():
            bucket = np.where(uu >= 0, codes[np.maximum(uu, 0)], len(names) - 1)
            np.add.at(self._window[attr], bucket, contrib)

    def _release(self, end_seq: int) -> dict[str, np.ndarray]:
        """Close the open window: noisy tables (or the stored ones of this release)."""
        index = self.n_releases
        stored = self._stored.get(index)
        if stored is not None:
            noisy = {a: np.asarray(t, dtype=np.int64) for a, t in stored.payload["tables"].items()}
            shapes = {a: t.shape for a, t in self._window.items()}
            if stored.end_seq != end_seq or {a: t.shape for a, t in noisy.items()} != shapes:
                raise DataError(
                    f"the feedback store's fairness release {index} (series {self.series}) does "
                    "not match its events (were events deleted?); publishing fresh noise for it "
                    "would weaken the privacy guarantee. Move the store aside to start afresh"
                )
            at = stored.at
        else:
            noisy = {}
            for attr, table in self._window.items():
                noisy[attr] = table + self._noise(index, table.shape)
            at = time.time()
            if self.store is not None:  # persisted before it is published
                payload = {
                    "events": self._window_events,
                    "tables": {a: t.tolist() for a, t in noisy.items()},
                }
                self.store.add_release(Release(self.series, index, end_seq, at, payload))
        for attr, t in noisy.items():
            self._released[attr] += t
        self.n_releases += 1
        self.released_events += self._window_events
        self.last_release_at = at
        self._new_window()
        per = self.privacy.period_releases
        if per is not None and self.n_releases % per == 0:
            self._new_period()
        return noisy

    # ------------------------------------------------------------------ input
    def observe(
        self,
        seqs: np.ndarray,
        users: np.ndarray,
        items: np.ndarray,
        types: np.ndarray,
        values: np.ndarray,
        positions: np.ndarray,
    ) -> list[dict[str, np.ndarray]]:
        """Fold in accepted events, in store order (each event exactly once).

        Args:
            seqs: store sequence numbers (increasing).
            users: user codes; negative for users not in the training data (one negative code
                per distinct such id).
            items, types: codes; events with a negative item or type (e.g. an item no longer
                in the catalogue) only count toward the release schedule.

        Returns:
            The releases made (noisy tables per attribute), oldest first; none without privacy.
        """
        seqs = np.asarray(seqs, dtype=np.int64)
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        types = np.asarray(types, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        w = position_weight(positions)
        valid = (items >= 0) & (types >= 0)
        made: list[dict[str, np.ndarray]] = []
        with self._lock:
            v = valid
            self._item_totals.add(
                self.long_tail[items[v]].astype(np.int64), types[v], w[v], values[v]
            )
            self.n_events += len(seqs)
            if len(seqs):
                self.last_seq = int(seqs[-1])
            if not self.private:
                self._observe_exact(users[v], types[v], w[v], values[v])
                return made
            i, n = int(np.searchsorted(seqs, self.series_start, side="right")), len(seqs)
            while i < n:
                stored = self._stored.get(self.n_releases)
                if stored is not None:  # replay after a restart: the stored window boundary
                    end = stored.end_seq
                    j = max(i, int(np.searchsorted(seqs, end, side="right")))
                    full = j < n or seqs[j - 1] == end
                else:
                    j = min(n, i + self.privacy.release_every - self._window_events)
                    full = self._window_events + (j - i) >= self.privacy.release_every
                    end = int(seqs[j - 1])
                if j > i:
                    if self._window_started is None:
                        self._window_started = time.monotonic()
                    sl = slice(i, j)
                    self._fold_private(users[sl], types[sl], w[sl], values[sl], valid[sl])
                    self._window_events += j - i
                if full:
                    made.append(self._release(end))
                i = j
        return made

    def tick(self, now: float | None = None) -> list[dict[str, np.ndarray]]:
        """Release the open window if ``release_seconds`` have passed since its first event."""
        secs = self.privacy.release_seconds
        if not self.private or secs is None:
            return []
        now = time.monotonic() if now is None else now
        with self._lock:
            started = self._window_started
            if self._window_events and started is not None and now - started >= secs:
                return [self._release(self.last_seq)]
        return []

    def _observe_exact(
        self, users: np.ndarray, types: np.ndarray, w: np.ndarray, values: np.ndarray
    ) -> None:
        known = users >= 0
        if len(self._users_seen):
            self._users_seen[users[known]] = True
        self._cold_users.update(int(u) for u in np.unique(users[~known]))
        for attr, (codes, names) in self._attrs.items():
            bucket = np.where(known, codes[np.where(known, users, 0)], len(names) - 1)
            self._user_totals[attr].add(bucket, types, w, values)

    # ------------------------------------------------------------------ output
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
                se_r = _finite(np.sqrt(var / nr))
            rows.append(
                {
                    "group": name,
                    "users": n_u,
                    "impressions": int(imp),
                    "clicks": int(clk),
                    "ratings": int(nr),
                    "exposure": _finite(totals.exposure[g]) if show else None,
                    "exposure_share": _ratio(float(totals.exposure[g]), tot_exp) if show else None,
                    "exposure_per_user": _ratio(float(totals.exposure[g]), n_u) if show else None,
                    "ctr": ctr if show else None,
                    "ctr_se": (  # clicks sent without impressions can make ctr exceed 1
                        float(np.sqrt(min(ctr, 1.0) * (1 - min(ctr, 1.0)) / imp))
                        if show and ctr is not None
                        else None
                    ),
                    "mean_rating": mean_r if show else None,
                    "mean_rating_se": se_r if show else None,
                    "suppressed": not show,
                }
            )
        return rows

    def _private_rows(self, table: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
        """Rows from summed noisy releases, with standard errors that include the noise."""
        r = self.n_releases
        var = r * discrete_laplace_var(self.noise_scale)  # per statistic, integer units
        lo, hi = self.rating_range
        t = np.maximum(table, 0)
        exposure = t[:, 2] / QUANT
        tot_exp = float(exposure.sum())
        rows = []
        for g, name in enumerate(names):
            n_u, imp, rat = int(t[g, 0]), int(t[g, 1]), int(t[g, 4])
            clk = min(int(t[g, 3]), imp)
            show = r > 0 and n_u >= self.min_group_users
            ctr = ctr_se = mean_r = se_r = None
            if show and imp > 0:
                ctr = clk / imp
                ctr_se = math.sqrt(ctr * (1 - ctr) / imp + (var[3] + ctr**2 * var[1]) / imp**2)
            if show and rat > 0:
                m = min(t[g, 5] / QUANT, rat) / rat  # mean of the ratings scaled to [0, 1]
                mean_r = lo + (hi - lo) * m
                # 1/4 bounds the variance of a [0, 1] variable (no sum of squares is released)
                se_r = (hi - lo) * math.sqrt(
                    0.25 / rat + (var[5] / QUANT**2 + m**2 * var[4]) / rat**2
                )
            e = float(exposure[g])
            rows.append(
                {
                    "group": name,
                    "users": n_u,
                    "impressions": imp,
                    "clicks": clk,
                    "ratings": rat,
                    "exposure": e if show else None,
                    "exposure_share": _ratio(e, tot_exp) if show else None,
                    "exposure_per_user": _ratio(e, n_u) if show else None,
                    "ctr": ctr,
                    "ctr_se": ctr_se,
                    "mean_rating": mean_r,
                    "mean_rating_se": se_r,
                    "suppressed": not show,
                }
            )
        return rows

    def privacy_report(self) -> dict[str, Any]:
        """What is published and with which guarantee (JSON-ready)."""
        p = self.privacy
        if not self.private:
            return {
                "mechanism": "off",
                "warning": (
                    "exact live counts: anyone who can post feedback and read this endpoint can "
                    "learn a user's group by differencing; for local debugging only"
                ),
            }
        sd = np.sqrt(self.n_releases * discrete_laplace_var(self.noise_scale)) / UNITS
        lo, hi = self.rating_range
        sd[5] *= hi - lo
        with self._lock:
            return {
                "mechanism": "discrete_laplace",
                "epsilon": p.epsilon,
                "max_events_per_user": p.max_events_per_user,
                "release_every": p.release_every,
                "release_seconds": p.release_seconds,
                "period_releases": p.period_releases,
                "period": (
                    0 if p.period_releases is None else self.n_releases // p.period_releases
                ),
                "releases": self.n_releases,
                "released_events": self.released_events,
                "pending_events": self._window_events,
                "noise_scale": {
                    s: float(x) for s, x in zip(STATS, self.noise_scale / UNITS, strict=True)
                },
                "noise_sd": {s: float(x) for s, x in zip(STATS, sd, strict=True)},
                "rating_range": [lo, hi],
                "guarantee": (
                    f"the user-group statistics released in one budget period are "
                    f"{p.epsilon:g}-differentially private with respect to the sensitive "
                    f"attributes of any one user (all monitored attributes together); each "
                    f"user's first {p.max_events_per_user} events per period count; budget "
                    "periods add up; events of the open window are not shown"
                ),
            }

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready aggregates (no user ids, no per-user attributes)."""
        with self._lock:
            out: dict[str, Any] = {"events": self.n_events, "user_groups": {}}
            for attr, (codes, names) in self._attrs.items():
                if self.private:
                    out["user_groups"][attr] = self._private_rows(self._released[attr], names)
                    continue
                seen = np.flatnonzero(self._users_seen)
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
        out["privacy"] = self.privacy_report()
        return out


class OnlineLoop:
    """Online self-calibration of one re-ranker's strength from the feedback stream.

    ``exposure_share``: long-tail share of position-weighted impressions; ``utility_gap``:
    CTR gap between the groups of ``attr`` (``groups`` gives the label of each user code).
    With ``private=True`` a ``utility_gap`` loop ignores the raw events' groups and makes one
    update per noisy monitor release (:meth:`observe_release`), so that its strength and log
    reveal no more than the releases do.
    Every update is logged: :attr:`log` (latest 1000) and the store's ``adjustments`` table.
    """

    def __init__(
        self,
        config: OnlineServeConfig,
        *,
        long_tail: np.ndarray,
        groups: pd.Categorical | None = None,
        store: FeedbackStore | None = None,
        private: bool = False,
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
        self.private = bool(private) and config.kind == "utility_gap"
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
        """Buffer accepted events; run one controller update per ``update_every`` impressions.

        Returns:
            The adjustments made (usually none or one).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        types = np.asarray(types, dtype=np.int64)
        made: list[dict[str, Any]] = []
        with self._lock:
            imp = types == IMPRESSION
            self._n_events += len(users)
            self._n += int(imp.sum())
            if self.private:
                return made  # updated from the monitor's releases only
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

    def observe_release(self, table: np.ndarray) -> list[dict[str, Any]]:
        """One update from a noisy release of the monitor (rows: the groups of ``attr``)."""
        if not self.private:
            return []
        assert self.group_names is not None
        with self._lock:
            for code in range(len(self.group_names)):
                imp = max(int(table[code, 1]), 0)
                self._imp[code] = float(imp)
                self._clk[code] = float(min(max(int(table[code, 3]), 0), imp))
            return [self._update()]

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
        row: dict[str, Any] = {
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
                "fed_by": "private releases" if self.private else "events",
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


__all__ = [
    "CLICK",
    "IMPRESSION",
    "RATING",
    "STATS",
    "FairnessMonitor",
    "OnlineLoop",
    "discrete_laplace",
    "discrete_laplace_var",
    "position_weight",
]
