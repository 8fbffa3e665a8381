"""User-group fair re-ranking, in the spirit of UGF (Li et al., "User-oriented Fairness in
Recommendation", WWW 2021), with every estimate taken from validation data.

UGF maximises the summed scores of all lists subject to ``|U(G_1) - U(G_2)| <= eps``, where
``U(G)`` is a group's mean utility (NDCG, F1); its published code evaluates that constraint with the
test labels. Here the utilities are *estimated on validation interactions* and enforced by a
constrained greedy, so the test split is never read:

1. ``fit``: on the validation users' base candidate lists (training items masked), measure each
   group's mean NDCG@k of the base top-k, ``mu_g``, and the pooled hit rate of the item at base
   rank ``r``, ``h(r) = P(rank-r candidate is a validation item)``, smoothed by a power law
   ``h(r) = c * r^-b`` (least squares in log space).
2. For strength ``lambda`` the target level is ``tau = mu_max - lambda * (mu_max - mu_min)``; users
   of a group above it get the utility ratio ``rho_g = tau / mu_g`` (others ``rho = 1``).
3. A user's list must keep its expected DCG within ``rho`` times that of the base list in every
   prefix: with ``B(t) = sum_{r <= t} h(r) / log2(r + 1)`` and ``E(t)`` the expected DCG of the
   first ``t`` chosen items (``h(base rank) / log2(position + 1)`` each), position ``t`` takes the
   best-scored remaining candidate with ``E(t) <= rho * B(t)``; if none fits, the remaining
   candidate of least expected gain.

With one relevance model for everyone, re-ranking cannot raise the expected utility of the
lowest group above its top-k by score, so the gap is closed from above at the least expected
accuracy cost (the lost utility ``sum_g share_g (mu_g - tau)``); ``lambda = 1`` targets
equal estimated utility. The controller (:mod:`debiasrec.debias.post.controller`) picks the
smallest ``lambda`` meeting a validation gap target.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pydantic import Field

from debiasrec.debias.post.base import (
    RERANKERS,
    RerankConfig,
    RerankContext,
    Reranker,
    greedy_loop,
    sort_candidates,
)
from debiasrec.errors import DataError
from debiasrec.metrics import DegenerateMetricWarning
from debiasrec.metrics.ranking import ranking_metrics
from debiasrec.models.base import Recs


class GroupFairConfig(RerankConfig):
    """Options of :class:`GroupFairReranker`."""

    attr: str = Field("gender", description="sensitive attribute (or 'a&b' intersection)")
    min_group_users: int = Field(
        5, ge=1, description="groups with fewer validation users are ignored"
    )


def power_law_fit(rate: np.ndarray) -> tuple[float, float]:
    """``(log c, b)`` of ``rate(r) ~ c * r^-b`` fitted on the ranks with a positive rate."""
    r = np.arange(1, len(rate) + 1, dtype=np.float64)
    pos = rate > 0
    if pos.sum() < 2:
        return float(np.log(max(rate.max(initial=0.0), 1e-6))), 1.0
    b, a = np.polyfit(np.log(r[pos]), np.log(rate[pos]), 1)
    return float(a), float(max(-b, 0.0))


@RERANKERS.register
class GroupFairReranker(Reranker[GroupFairConfig]):
    """Close the NDCG gap between user groups of ``attr``; ``strength`` is ``lambda``.

    Needs ``fit(context, valid_candidates)``; see the module docstring.

    Attributes (after fit):
        group_utility_: estimated validation NDCG@k per group (``pd.Series``).
        rank_curve_: ``(log c, b)`` of the smoothed hit-rate curve ``h(r)``.
    """

    name = "group_fair"
    Config = GroupFairConfig
    needs_fit = True

    def _fit(self, context: RerankContext, valid_candidates: Recs | None) -> None:
        if valid_candidates is None or context.valid is None:
            raise DataError(
                "GroupFairReranker estimates group utility on validation data: pass a context "
                "with valid interactions and valid_candidates (base top-N, training items masked)"
            )
        cfg = self.config
        items, _, valid = sort_candidates(valid_candidates)
        users = np.asarray(valid_candidates.users, dtype=np.int64)
        truth = context.valid[users]
        keep = np.diff(truth.indptr) > 0
        items, valid, users, truth = items[keep], valid[keep], users[keep], truth[keep]
        if len(users) == 0:
            raise DataError("no validation user has validation interactions")
        topk = np.where(valid, items, -1)
        k = min(cfg.k, topk.shape[1])
        with warnings.catch_warnings():
            # Candidate lists of users without validation hits: NaN, excluded from the means.
            warnings.filterwarnings("ignore", category=DegenerateMetricWarning)
            ndcg = ranking_metrics(topk[:, :k], truth, ks=[k], metrics=["ndcg"])[f"ndcg@{k}"]
        # hit rate per base rank
        t = truth.tocsr()
        rows = np.repeat(np.arange(len(users)), topk.shape[1])
        flat = topk.ravel()
        ok = flat >= 0
        hit = np.zeros(flat.shape[0], dtype=bool)
        hit[ok] = np.asarray(t[rows[ok], flat[ok]]).ravel() > 0
        rate = hit.reshape(topk.shape).mean(axis=0)
        self.rank_curve_ = power_law_fit(rate)
        groups = context.groups(cfg.attr, users)
        codes = np.asarray(groups.codes)
        util, sizes = {}, {}
        for g, label in enumerate(groups.categories):
            sel = codes == g
            sizes[str(label)] = int(sel.sum())
            util[str(label)] = float(np.nanmean(ndcg[sel])) if sel.any() else np.nan
        self.group_utility_ = pd.Series(util, name=f"valid_ndcg@{k}")
        self.group_sizes_ = pd.Series(sizes, name="n_valid_users")
        self._categories = [str(c) for c in groups.categories]

    def utility_ratio(self) -> pd.Series:
        """``rho_g`` per group at the current strength (1 = untouched)."""
        mu = self.group_utility_.where(self.group_sizes_ >= self.config.min_group_users)
        mu = mu[np.isfinite(mu) & (mu > 0)]
        rho = pd.Series(1.0, index=self.group_utility_.index)
        if len(mu) < 2:
            return rho
        tau = mu.max() - self.strength * (mu.max() - mu.min())
        rho[mu.index] = np.minimum(1.0, tau / mu)
        return rho

    def _hit_curve(self, n: int) -> np.ndarray:
        a, b = self.rank_curve_
        return np.exp(a) * np.arange(1, n + 1, dtype=np.float64) ** (-b)

    def _select(
        self,
        items: np.ndarray,
        rel: np.ndarray,
        valid: np.ndarray,
        users: np.ndarray,
        context: RerankContext,
    ) -> np.ndarray:
        k = self.config.k
        n, n_cand = valid.shape
        groups = context.groups(self.config.attr, users)
        if [str(c) for c in groups.categories] != self._categories:
            raise DataError(f"groups of {self.config.attr!r} differ from those seen in fit")
        rho_g = self.utility_ratio().to_numpy()
        codes = np.asarray(groups.codes)
        rho = np.where(codes >= 0, rho_g[np.where(codes >= 0, codes, 0)], 1.0)
        h = self._hit_curve(n_cand)
        disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
        m = min(k, n_cand)
        budget = np.cumsum(h[:m] * disc[:m])  # expected DCG of the base prefix
        spent = np.zeros(n)
        order_obj = -np.broadcast_to(np.arange(n_cand, dtype=np.float64), (n, n_cand))
        gain_t = np.zeros(n_cand)

        def objective(t: int, avail: np.ndarray) -> np.ndarray:
            gain_t[:] = h * disc[t]
            cap = rho * budget[t] * (1.0 + 1e-9) + 1e-15
            fits = (spent[:, None] + gain_t[None, :] <= cap[:, None]) & avail
            any_fit = fits.any(axis=1, keepdims=True)
            # If nothing fits, the candidate of least expected gain (the lowest-ranked one).
            fallback = np.broadcast_to(np.arange(n_cand, dtype=np.float64), (n, n_cand))
            return np.where(any_fit, np.where(fits, order_obj, -1e18), fallback)

        def on_pick(rows: np.ndarray, cols: np.ndarray, has: np.ndarray) -> None:
            spent[has] += gain_t[cols[has]]

        return greedy_loop(k, valid, objective, on_pick)


__all__ = ["GroupFairConfig", "GroupFairReranker", "power_law_fit"]
