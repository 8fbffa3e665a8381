"""Calibrated recommendations at a small accuracy cost: an NDCG-aware objective, optimised well.

Steck's re-ranker (:mod:`debiasrec.debias.post.calibrated`) maximises
``(1 - lambda) * sum_{i in L} s~(u, i) - lambda * KL(p || q~(L))`` greedily, with ``s~`` the base
score min-max scaled *per user*, and lists the items in the order the greedy picked them. The
miscalibration ``C_KL`` depends only on the *set* ``L``; NDCG depends on the order and, with
position discounts, mostly on the top positions. This re-ranker (:class:`CalibratedDCGReranker`)
keeps Steck's divergence and changes three things:

1. **Order.** The chosen set is listed in base-score order (the set's miscalibration is unchanged;
   by the rearrangement inequality this order maximises the expected DCG of the set when the gain
   decreases with the base rank), so the items added for calibration sit at the bottom.
2. **Objective in expected-DCG units with one trade-off for everyone.** For the list ``L`` in
   base order, ``G(L) = sum_{t=1..k} g(r_t) / log2(t + 1)``, where ``r_t`` is the base rank of
   the ``t``-th item and ``g(r)`` the gain of the rank-``r`` candidate:

   * ``gain = "rank"`` (default): the probability that the base model's rank-``r`` candidate is a
     held-out item, measured on the *validation* users' candidate lists in :meth:`fit` and made
     non-increasing by isotonic regression (pool adjacent violators);
   * ``gain = "score"``: Steck's per-user min-max scaled score.

   The list maximises ``F(L) = (1 - lambda) * G(L) / G_0 - lambda * D(p || q~(L)) / D_0``, where
   ``G_0`` and ``D_0`` are the mean ``G`` and divergence of the base top-``k`` lists of the
   validation users (set in :meth:`fit`; the reranked users when not fitted). With ``gain="rank"``
   the trade-off is in absolute expected-DCG units, the same for every user, so the effective
   per-user strength differs: users whose calibration costs little expected DCG (a missing genre
   available close to the top) are calibrated more, users for whom it is expensive less, which is
   what minimises the *mean* accuracy loss for a given *mean* ``C_KL``.
3. **Search.** ``search = "greedy"``: append at step ``t`` the candidate of best marginal
   ``F`` (item at position ``t``), as Steck; ``"local"`` (default): then best-improvement swaps
   (one listed item out, one candidate in, the exact ``F`` of the base-ordered list) until no
   swap improves or ``max_swaps`` rounds; ``"milp"``: the exact optimum of ``F`` with the
   divergence's ``log`` replaced by the minimum of ``milp_tangents`` tangent lines (a
   mixed-integer linear programme per user, solved by HiGHS through :func:`scipy.optimize.milp`;
   the result is re-scored with the true divergence). MILP is slow (about 0.05-1 s per user) and
   serves to measure how far the local search is from the optimum
   (:func:`calibrated_dcg_gap`).

``lambda = 0`` is the top-``k`` by score, ``lambda = 1`` the least miscalibrated list the search
finds. The divergence is Steck's ``KL(p || q~)`` with ``q~ = (1 - alpha) q + alpha p`` (or JS), as
in :func:`debiasrec.metrics.calibration.miscalibration`.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from debiasrec.debias.post.base import (
    RERANKERS,
    RerankConfig,
    RerankContext,
    Reranker,
    minmax_relevance,
    sort_candidates,
)
from debiasrec.errors import DataError
from debiasrec.metrics.calibration import (
    Divergence,
    divergence,
    item_category_distribution,
    user_distribution,
)
from debiasrec.models.base import Recs

#: Users per block of the swap search (bounds the ``[users, k, candidates, categories]`` array).
SWAP_BLOCK = 128


class CalibratedDCGConfig(RerankConfig):
    """Options of :class:`CalibratedDCGReranker` (see the module docstring)."""

    alpha: float = Field(0.01, ge=0.0, lt=1.0, description="smoothing of q towards p")
    divergence: Literal["kl", "js"] = "kl"
    gain: Literal["rank", "score"] = Field(
        "rank", description="gain of a candidate: validation hit rate of its base rank, or score"
    )
    search: Literal["greedy", "local", "milp"] = Field(
        "local", description="greedy; greedy + best-improvement swaps; exact MILP (slow)"
    )
    max_swaps: int = Field(50, ge=0, description="rounds of swaps of the local search")
    milp_tangents: int = Field(16, ge=2, description="initial tangents of log in the MILP")
    milp_time_limit: float = Field(10.0, gt=0, description="seconds per user for the MILP")


def pav_decreasing(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Least-squares non-increasing fit of ``y`` (pool adjacent violators), weights ``w``."""
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64)
    vals: list[float] = []
    wts: list[float] = []
    lens: list[int] = []
    for v, wt in zip(y, w, strict=True):
        vals.append(float(v))
        wts.append(float(wt))
        lens.append(1)
        while len(vals) > 1 and vals[-2] < vals[-1]:
            tw = wts[-2] + wts[-1]
            merged = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / tw if tw > 0 else vals[-1]
            vals[-2:] = [merged]
            wts[-2:] = [tw]
            lens[-2:] = [lens[-2] + lens[-1]]
    return np.repeat(vals, lens)


def hit_rate_by_rank(valid_candidates: Recs, truth: sp.csr_matrix) -> np.ndarray:
    """Share of users whose rank-``r`` candidate is a held-out item, per rank ``r`` (1-based).

    Rows of ``truth`` align with ``valid_candidates.users``; users without held-out items are
    left out; ranks where no user has a candidate give 0.
    """
    items, _, valid = sort_candidates(valid_candidates)
    t = sp.csr_matrix(truth)
    keep = np.diff(t.indptr) > 0
    items, valid, t = items[keep], valid[keep], t[keep]
    if len(items) == 0:
        raise DataError("no validation user has validation interactions")
    rows = np.repeat(np.arange(len(items)), items.shape[1])
    flat = items.ravel()
    ok = valid.ravel()
    hit = np.zeros(flat.shape[0], dtype=bool)
    hit[ok] = np.asarray(t[rows[ok], flat[ok]]).ravel() > 0
    hit = hit.reshape(items.shape)
    n = valid.sum(axis=0)
    return np.where(n > 0, hit.sum(axis=0) / np.maximum(n, 1), 0.0)


class _Problem:
    """One block of users: candidate gains, category masses and the objective's pieces."""

    def __init__(
        self,
        gain: np.ndarray,
        valid: np.ndarray,
        cand_dist: np.ndarray,
        p: np.ndarray,
        *,
        k: int,
        lam: float,
        scale_gain: float,
        scale_div: float,
        alpha: float,
        kind: Divergence,
    ) -> None:
        self.gain = np.where(valid, gain, 0.0).astype(np.float64)
        self.valid = valid
        self.dist = cand_dist.astype(np.float64)
        self.p = p.astype(np.float64)
        self.k = k
        self.disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
        self.a = (1.0 - lam) / max(scale_gain, 1e-12)
        self.b = lam / max(scale_div, 1e-12)
        self.alpha = alpha
        self.kind = kind

    def div(self, mass: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Divergence of ``p`` from the smoothed category mix of list masses ``mass``."""
        s = mass.sum(axis=-1, keepdims=True)
        q = np.divide(mass, s, out=np.zeros_like(mass), where=s > 0)
        return divergence(p, (1.0 - self.alpha) * q + self.alpha * p, self.kind)

    def value(self, idx: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """``F`` of lists given as candidate columns ``idx`` ``[n, m]`` (sorted, -1 = none) of
        the users ``rows`` of the block (default: all, in order)."""
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        rows = np.arange(idx.shape[0]) if rows is None else np.asarray(rows)
        r = rows[:, None]
        g = np.where(ok, self.gain[r, safe], 0.0)
        dcg = (g * self.disc[: idx.shape[1]]).sum(axis=1)
        mass = (self.dist[r, safe] * ok[..., None]).sum(axis=1)
        return self.a * dcg - self.b * self.div(mass, self.p[rows])

    def greedy(self) -> np.ndarray:
        """Steck-style greedy (item ``t`` at position ``t``); columns sorted, -1 padded."""
        n, n_cand = self.valid.shape
        m = min(self.k, n_cand)
        avail = self.valid.copy()
        mass = np.zeros_like(self.p)
        out = np.full((n, self.k), -1, dtype=np.int64)
        rows = np.arange(n)
        for t in range(m):
            tot = mass[:, None, :] + self.dist
            obj = self.a * self.gain * self.disc[t] - self.b * self.div(tot, self.p[:, None, :])
            obj = np.where(avail, obj, -np.inf)
            j = np.argmax(obj, axis=1)
            has = avail[rows, j]
            out[has, t] = j[has]
            mass[has] += self.dist[rows[has], j[has]]
            avail[rows[has], j[has]] = False
        return _sorted_cols(out)

    def swaps(self, idx: np.ndarray, max_rounds: int) -> np.ndarray:
        """Best-improvement swaps from ``idx`` (full lists only; short lists are left alone)."""
        idx = idx.copy()
        k = idx.shape[1]
        full = (idx >= 0).all(axis=1)
        if k < 2 or max_rounds == 0:
            return idx
        rows_all = np.flatnonzero(full)
        for start in range(0, len(rows_all), SWAP_BLOCK):
            rows = rows_all[start : start + SWAP_BLOCK]
            idx[rows] = self._swap_block(rows, idx[rows], max_rounds)
        return idx

    def _swap_block(self, rows: np.ndarray, idx: np.ndarray, max_rounds: int) -> np.ndarray:
        n, k = idx.shape
        n_cand = self.valid.shape[1]
        gain, dist, p = self.gain[rows], self.dist[rows], self.p[rows]
        valid = self.valid[rows]
        disc = self.disc[:k]
        r = np.arange(n)[:, None]
        cols = np.arange(n_cand)
        drop = np.array([np.delete(np.arange(k), a) for a in range(k)])  # [k, k-1]
        cur = self.a * (gain[r, idx] * disc).sum(1) - self.b * self.div(dist[r, idx].sum(1), p)
        active = np.ones(n, dtype=bool)
        for _ in range(max_rounds):
            if not active.any():
                break
            ar = np.flatnonzero(active)
            ix = idx[ar]
            ra = np.arange(len(ar))[:, None]
            g_in = gain[ar[:, None], ix]  # [m, k]
            rest_g = g_in[:, drop]  # [m, k, k-1]: list without position a
            rest_c = ix[:, drop]
            # DCG of (rest with candidate j inserted at its base-order position)
            pre = np.concatenate(
                [np.zeros((len(ar), k, 1)), np.cumsum(rest_g * disc[: k - 1], axis=2)], axis=2
            )
            tail = rest_g * disc[1:k]
            suf = np.concatenate(
                [np.cumsum(tail[..., ::-1], axis=2)[..., ::-1], np.zeros((len(ar), k, 1))], axis=2
            )
            pos = (rest_c[..., None] < cols).sum(axis=2)  # [m, k, N]
            dcg = (
                np.take_along_axis(pre, pos, 2)
                + gain[ar][:, None, :] * disc[pos]
                + np.take_along_axis(suf, pos, 2)
            )
            mass = dist[ar[:, None], ix].sum(axis=1)  # [m, C]
            new_mass = (
                mass[:, None, None, :] - dist[ar[:, None], ix][:, :, None, :] + dist[ar][:, None]
            )
            obj = self.a * dcg - self.b * self.div(new_mass, p[ar][:, None, None, :])
            listed = np.zeros((len(ar), n_cand), dtype=bool)
            listed[ra, ix] = True
            obj = np.where((listed | ~valid[ar])[:, None, :], -np.inf, obj)
            flat = obj.reshape(len(ar), -1)
            best = np.argmax(flat, axis=1)
            val = flat[np.arange(len(ar)), best]
            better = val > cur[ar] + 1e-12 * np.maximum(1.0, np.abs(cur[ar]))
            if not better.any():
                break
            a, j = np.divmod(best[better], n_cand)
            rb = ar[better]
            idx[rb, a] = j
            idx[rb] = np.sort(idx[rb], axis=1)
            cur[rb] = val[better]
            active[ar[~better]] = False
        return idx

    def milp(self, time_limit: float, tangents: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-user MILP optimum (see the module docstring): columns sorted, -1 padded, and per
        user the remaining gap between the MILP's upper bound and the list's true ``F`` (0 when
        the optimum is proven; NaN where the MILP was not used)."""
        if self.kind != "kl":
            raise DataError("search='milp' supports the KL divergence only")
        start = self.greedy()
        out = start.copy()
        gaps = np.full(len(out), np.nan)
        for u in range(len(out)):
            out[u], gaps[u] = self._milp_one(u, start[u], time_limit, tangents)
        return out, gaps

    def _milp_one(
        self, u: int, fallback: np.ndarray, time_limit: float, tangents: int, rounds: int = 20
    ) -> tuple[np.ndarray, float]:
        """Outer approximation: ``log`` is the minimum of tangent lines; after each solve, the
        tangents at the solution's ``q~`` are added, until the MILP's bound meets the true value
        of its solution (then the list is optimal) or ``rounds`` solves."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        cand = np.flatnonzero(self.valid[u])
        k = min(self.k, len(cand))
        d = self.dist[u, cand]  # [N, C]
        if k == 0:
            return fallback, np.nan
        if not np.allclose(d.sum(axis=1), 1.0):
            warnings.warn(
                "search='milp' needs every candidate to carry category mass 1; user left to "
                "the greedy search",
                stacklevel=3,
            )
            return fallback, np.nan
        p = self.p[u]
        support = np.flatnonzero(p > 0)
        n_c, n_s = len(cand), len(support)
        # x[j, t]: candidate j at position t (t <= j: a base-ordered list); then s_c, c in support
        jj = np.concatenate([np.full(min(j + 1, k), j) for j in range(n_c)])
        tt = np.concatenate([np.arange(min(j + 1, k)) for j in range(n_c)])
        nx = len(jj)
        nv = nx + n_s
        c_obj = np.zeros(nv)
        c_obj[:nx] = -self.a * self.gain[u, cand][jj] * self.disc[tt]
        c_obj[nx:] = -self.b * p[support]  # maximise sum_c p_c log q~_c (= -KL + const)
        cols = np.arange(nx)
        assign = sp.vstack(
            [
                sp.csr_matrix((np.ones(nx), (tt, cols)), shape=(k, nv)),  # one item per position
                sp.csr_matrix((np.ones(nx), (jj, cols)), shape=(n_c, nv)),  # an item at most once
            ]
        )
        a_lo = np.concatenate([np.ones(k), np.zeros(n_c)])
        a_hi = np.ones(k + n_c)
        lo_q = self.alpha * p[support]
        coef = (1.0 - self.alpha) * d[jj][:, support] / k  # q~_c = coef_c . x + lo_q_c

        def cuts(points: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
            # s_c <= log(a) + (q~_c - a) / a  <=>  s_c - coef_c . x / a <= log(a) - 1 + lo_q_c / a
            rows, vals, cidx, rhs = [], [], [], []
            for r, (ci, a) in enumerate(points):
                ci = int(ci)
                nz = np.flatnonzero(coef[:, ci])
                rows += [r] * (len(nz) + 1)
                cidx += [*nz.tolist(), nx + ci]
                vals += [*(-coef[nz, ci] / a).tolist(), 1.0]
                rhs.append(np.log(a) - 1.0 + lo_q[ci] / a)
            m = sp.csr_matrix((vals, (rows, cidx)), shape=(len(points), nv))
            return m, np.asarray(rhs)

        pts = [
            (ci, a) for ci in range(n_s) for a in np.geomspace(max(lo_q[ci], 1e-9), 1.0, tangents)
        ]
        cut_m, cut_hi = cuts(np.asarray(pts, dtype=np.float64))
        integrality = np.concatenate([np.ones(nx), np.zeros(n_s)])
        bounds = Bounds(
            np.concatenate([np.zeros(nx), np.log(np.maximum(lo_q, 1e-300))]),
            np.concatenate([np.ones(nx), np.zeros(n_s)]),
        )
        one = np.array([u])
        best, best_val, gap = fallback, float(self.value(fallback[None], one)[0]), np.nan
        const = self.b * float(np.sum(p[support] * np.log(p[support])))
        for _ in range(rounds):
            res = milp(
                c_obj,
                constraints=[
                    LinearConstraint(assign, a_lo, a_hi),
                    LinearConstraint(cut_m, -np.inf, cut_hi),
                ],
                integrality=integrality,
                bounds=bounds,
                options={"time_limit": time_limit, "disp": False},
            )
            if res.x is None:
                break
            x = np.round(res.x[:nx])
            chosen = np.zeros(n_c)
            np.add.at(chosen, jj, x)
            picked = np.flatnonzero(chosen > 0.5)
            out = np.full(self.k, -1, dtype=np.int64)
            out[: len(picked)] = np.sort(cand[picked])
            val = float(self.value(out[None], one)[0])
            bound = -float(res.fun) - const  # upper bound of F over all lists
            if val > best_val:
                best, best_val = out, val
            gap = max(bound - best_val, 0.0)
            if gap <= 1e-9 * max(1.0, abs(best_val)) or not res.success:
                break
            q = coef[x > 0.5].sum(axis=0) + lo_q if (x > 0.5).any() else lo_q
            new_m, new_hi = cuts(np.column_stack([np.arange(n_s), np.maximum(q, 1e-12)]))
            cut_m, cut_hi = sp.vstack([cut_m, new_m]).tocsr(), np.concatenate([cut_hi, new_hi])
        return best, gap


def _sorted_cols(idx: np.ndarray) -> np.ndarray:
    """Sort each row's columns ascending with -1 padding last."""
    big = np.where(idx >= 0, idx, np.iinfo(np.int64).max)
    s = np.sort(big, axis=1)
    return np.where(s == np.iinfo(np.int64).max, -1, s)


@RERANKERS.register
class CalibratedDCGReranker(Reranker[CalibratedDCGConfig]):
    """Calibrated re-ranking with an expected-DCG objective (module docstring); ``strength`` is
    ``lambda``.

    Attributes (after fit):
        gain_curve_: gain per base rank (``gain="rank"``), from validation.
        scale_gain_, scale_div_: ``G_0`` and ``D_0`` of the validation users' base lists.
    """

    name = "calibrated_dcg"
    Config = CalibratedDCGConfig
    needs_fit = True

    def _fit(self, context: RerankContext, valid_candidates: Recs | None) -> None:
        cfg = self.config
        self.gain_curve_: np.ndarray | None = None
        if cfg.gain == "rank":
            if valid_candidates is None or context.valid is None:
                raise DataError(
                    "calibrated_dcg with gain='rank' measures the hit rate per base rank on "
                    "validation data: pass a context with valid interactions and "
                    "valid_candidates (base top-N, training items masked)"
                )
            users = np.asarray(valid_candidates.users, dtype=np.int64)
            rate = hit_rate_by_rank(valid_candidates, context.valid[users])
            self.gain_curve_ = pav_decreasing(rate)
        self.scale_gain_, self.scale_div_ = (
            self._scales(valid_candidates, context) if valid_candidates is not None else (0.0, 0.0)
        )

    def _gains(self, items: np.ndarray, s: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.config.gain == "score" or self.gain_curve_ is None:
            return minmax_relevance(s, valid)
        curve = self.gain_curve_
        n_cand = items.shape[1]
        g = np.zeros(n_cand)
        m = min(n_cand, len(curve))
        g[:m] = curve[:m]
        if n_cand > m:  # ranks beyond those measured: the last measured rate
            g[m:] = curve[-1] if len(curve) else 0.0
        return np.broadcast_to(g, items.shape)

    def _parts(
        self, items: np.ndarray, s: np.ndarray, valid: np.ndarray, users: np.ndarray,
        context: RerankContext,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        dist = item_category_distribution(context.require_features(self.name))
        p = user_distribution(context.history[users], dist)
        dense = np.asarray(dist.todense(), dtype=np.float64)
        cand = dense[np.where(valid, items, 0)] * valid[..., None]
        return self._gains(items, s, valid), cand, p

    def _scales(self, recs: Recs, context: RerankContext) -> tuple[float, float]:
        """``G_0``, ``D_0``: mean expected DCG and divergence of the base top-``k`` lists."""
        items, s, valid = sort_candidates(recs)
        users = np.asarray(recs.users, dtype=np.int64)
        if len(users) == 0:
            return 0.0, 0.0
        gain, cand, p = self._parts(items, s, valid, users, context)
        k = min(self.config.k, items.shape[1])
        prob = _Problem(
            gain, valid, cand, p, k=k, lam=0.5, scale_gain=1.0, scale_div=1.0,
            alpha=self.config.alpha, kind=self.config.divergence,
        )  # fmt: skip
        top = np.where(valid[:, :k], np.arange(k), -1)
        ok = top >= 0
        safe = np.where(ok, top, 0)
        r = np.arange(len(users))[:, None]
        dcg = (np.where(ok, prob.gain[r, safe], 0.0) * prob.disc[:k]).sum(1)
        mass = (prob.dist[r, safe] * ok[..., None]).sum(1)
        div = prob.div(mass, prob.p)
        with_mass = p.sum(axis=1) > 0
        return float(np.mean(dcg)), float(np.mean(div[with_mass])) if with_mass.any() else 0.0

    def _select(
        self,
        items: np.ndarray,
        rel: np.ndarray,
        valid: np.ndarray,
        users: np.ndarray,
        context: RerankContext,
    ) -> np.ndarray:
        cfg = self.config
        # ``rel`` is the min-max scaled score, monotone in the base order (what "score" uses)
        gain, cand, p = self._parts(items, rel, valid, users, context)
        sg, sd = self.scale_gain_, self.scale_div_
        if sg <= 0 or sd <= 0:
            sg, sd = self._scales(Recs(users, items, np.where(valid, rel, -np.inf)), context)
        prob = _Problem(
            gain, valid, cand, p, k=cfg.k, lam=self.strength, scale_gain=sg, scale_div=sd,
            alpha=cfg.alpha, kind=cfg.divergence,
        )  # fmt: skip
        if cfg.search == "milp":
            idx, self.milp_gap_ = prob.milp(cfg.milp_time_limit, cfg.milp_tangents)
            return idx
        idx = prob.greedy()
        if cfg.search == "local":
            idx = prob.swaps(idx, cfg.max_swaps)
        return idx

    def objective(self, recs: Recs, context: RerankContext, candidates: Recs) -> np.ndarray:
        """``F`` per user of lists ``recs`` chosen from ``candidates`` at the current strength
        (items not among the candidates are ignored); to compare searches."""
        items, s, valid = sort_candidates(candidates)
        users = np.asarray(candidates.users, dtype=np.int64)
        rel = minmax_relevance(s, valid)
        gain, cand, p = self._parts(items, rel, valid, users, context)
        prob = _Problem(
            gain, valid, cand, p, k=self.config.k, lam=self.strength,
            scale_gain=self.scale_gain_, scale_div=self.scale_div_,
            alpha=self.config.alpha, kind=self.config.divergence,
        )  # fmt: skip
        listed = np.asarray(recs.items)[:, : self.config.k]
        col = np.full(listed.shape, -1, dtype=np.int64)
        for t in range(listed.shape[1]):
            hit = (items == listed[:, t : t + 1]) & valid & (listed[:, t : t + 1] >= 0)
            col[:, t] = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        return prob.value(_sorted_cols(col))


def calibrated_dcg_gap(
    reranker: CalibratedDCGReranker, candidates: Recs, context: RerankContext
) -> dict[str, float]:
    """How far greedy and local search are from the MILP optimum on ``candidates`` (slow).

    Returns the mean objective ``F`` of each search and the share of users where the local
    search reaches the MILP value (within ``1e-9``).
    """
    out: dict[str, float] = {}
    vals = {}
    for search in ("greedy", "local", "milp"):
        r = reranker.__class__(reranker.config.model_copy(update={"search": search}))
        r.__dict__.update({k: v for k, v in reranker.__dict__.items() if k.endswith("_")})
        r.fitted_ = True
        recs = r.rerank(candidates, context)
        vals[search] = r.objective(recs, context, candidates)
        out[f"objective_{search}"] = float(np.mean(vals[search]))
        if search == "milp":
            gaps = r.milp_gap_
    out["local_at_optimum"] = float(np.mean(vals["local"] >= vals["milp"] - 1e-9))
    out["greedy_at_optimum"] = float(np.mean(vals["greedy"] >= vals["milp"] - 1e-9))
    out["milp_proven"] = float(np.mean(gaps <= 1e-9 * np.maximum(1.0, np.abs(vals["milp"]))))
    return out


__all__ = [
    "CalibratedDCGConfig",
    "CalibratedDCGReranker",
    "calibrated_dcg_gap",
    "hit_rate_by_rank",
    "pav_decreasing",
]
