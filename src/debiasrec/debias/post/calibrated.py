"""Calibrated recommendations (Steck, "Calibrated Recommendations", RecSys 2018).

The list ``L`` of ``k`` items maximises

    (1 - lambda) * sum_{i in L} s(u, i)  -  lambda * KL(p(.|u) || q~(.|L))

greedily (a (1 - 1/e)-approximation for this submodular objective, as in the paper), where
``s(u, i)`` is the base score min-max scaled to [0, 1] over the user's candidates, ``p(.|u)`` the
genre distribution of the user's training history, ``q(.|L)`` that of the list and
``q~ = (1 - alpha) q + alpha p`` with ``alpha = 0.01`` (see
:mod:`debiasrec.metrics.calibration`). At step ``t`` every candidate ``j`` not yet chosen gets the
marginal objective ``(1 - lambda) s(u, j) - lambda * KL(p || q~(L + j))`` and each user takes the
best one; all users advance together. ``lambda = 0`` is the top-``k`` by score, ``lambda = 1`` the
greedy KL minimiser. The achieved miscalibration is ``C_KL`` =
:func:`debiasrec.metrics.calibration.miscalibration`.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from debiasrec.debias.post.base import RERANKERS, RerankConfig, RerankContext, Reranker, greedy_loop
from debiasrec.metrics.calibration import (
    Divergence,
    divergence,
    item_category_distribution,
    user_distribution,
)


class CalibratedConfig(RerankConfig):
    """Options of :class:`CalibratedReranker`."""

    alpha: float = Field(0.01, ge=0.0, lt=1.0, description="smoothing of q towards p")
    divergence: Literal["kl", "js"] = "kl"


def calibrated_select(
    rel: np.ndarray,
    valid: np.ndarray,
    cand_dist: np.ndarray,
    p: np.ndarray,
    *,
    lam: float,
    k: int,
    alpha: float = 0.01,
    kind: Divergence = "kl",
) -> np.ndarray:
    """Greedy calibrated selection for all users at once.

    Args:
        rel: ``[n, N]`` relevance of the candidates in [0, 1].
        valid: ``[n, N]`` True for real candidates.
        cand_dist: ``[n, N, C]`` category distribution ``p(c|i)`` of each candidate.
        p: ``[n, C]`` target distribution of each user (history).
        lam: trade-off ``lambda`` in [0, 1].
        k: list length.
        alpha: smoothing ``q~ = (1 - alpha) q + alpha p``.
        kind: ``"kl"`` (``KL(p || q~)``) or ``"js"``.

    Returns:
        ``[n, k]`` chosen candidate columns (-1 when a user runs out of candidates).
    """
    # float32: NumPy's float64 log has no SIMD path and dominates the run time otherwise.
    p = np.asarray(p, dtype=np.float32)
    cand_dist = np.asarray(cand_dist, dtype=np.float32)
    rel = np.asarray(rel, dtype=np.float32)
    alpha32 = np.float32(alpha)
    mass = np.zeros_like(p)  # category mass of the list so far
    pb = p[:, None, :]
    support = p > 0
    # log q~ is only needed where p > 0 (there q~ >= alpha * p > 0); elsewhere log(1) = 0.
    pad = (~support)[:, None, :].astype(p.dtype)
    if kind == "kl":
        # KL(p || q~) = sum p log p - sum p log q~; the first term is the same for every
        # candidate of a user but is kept so that the objective is the true KL.
        neg_ent = _kl_const(p)

    cand_mass = cand_dist.sum(axis=2)  # [n, N]
    apb = alpha32 * pb

    def objective(t: int, avail: np.ndarray) -> np.ndarray:
        tot = mass[:, None, :] + cand_dist  # list mass with candidate j added
        s = mass.sum(axis=1, keepdims=True) + cand_mass
        inv = np.divide(np.float32(1.0) - alpha32, s, out=np.zeros_like(s), where=s > 0)
        tot *= inv[:, :, None]
        tot += apb  # q~ = (1 - alpha) q + alpha p
        if kind == "kl":
            tot += pad
            np.log(tot, out=tot)
            d = neg_ent[:, None] - np.einsum("nmc,nc->nm", tot, p)
        else:
            d = divergence(pb, tot, kind)
        return np.float32(1.0 - lam) * rel - np.float32(lam) * d

    def on_pick(rows: np.ndarray, cols: np.ndarray, has: np.ndarray) -> None:
        mass[has] += cand_dist[rows[has], cols[has]]

    return greedy_loop(k, valid, objective, on_pick)


def _kl_const(p: np.ndarray) -> np.ndarray:
    """``sum_c p_c log p_c`` per row (0 log 0 = 0)."""
    return np.einsum("nc,nc->n", p, np.log(np.where(p > 0, p, 1.0)))


def candidate_distributions(
    items: np.ndarray, valid: np.ndarray, item_dist: sp.csr_matrix
) -> np.ndarray:
    """``[n, N, C]`` dense ``p(c|i)`` of every candidate (zeros for padding)."""
    dense = np.asarray(item_dist.todense(), dtype=np.float64)
    out = dense[np.where(valid, items, 0)]
    out[~valid] = 0.0
    return out


CC = TypeVar("CC", bound=CalibratedConfig)


@RERANKERS.register
class CalibratedReranker(Reranker[CC], Generic[CC]):
    """Steck's calibrated re-ranking over item categories (genres by default).

    ``strength`` is ``lambda``. See the module docstring for the objective.

    Example:
        >>> ctx = RerankContext.from_datasets(split.train, split.valid)  # doctest: +SKIP
        >>> recs = CalibratedReranker(strength=0.5).rerank(cands, ctx)  # doctest: +SKIP
    """

    name = "calibrated"
    Config = CalibratedConfig

    def _features(self, context: RerankContext) -> sp.csr_matrix:
        return context.require_features(self.name)

    def _select(
        self,
        items: np.ndarray,
        rel: np.ndarray,
        valid: np.ndarray,
        users: np.ndarray,
        context: RerankContext,
    ) -> np.ndarray:
        cfg = self.config
        dist = item_category_distribution(self._features(context))
        p = user_distribution(context.history[users], dist)
        cand = candidate_distributions(items, valid, dist)
        return calibrated_select(
            rel, valid, cand, p, lam=self.strength, k=cfg.k, alpha=cfg.alpha, kind=cfg.divergence
        )


__all__ = ["CalibratedConfig", "CalibratedReranker", "calibrated_select", "candidate_distributions"]
