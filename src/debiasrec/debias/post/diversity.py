"""Maximal marginal relevance (Carbonell & Goldstein, "The Use of MMR, Diversity-Based Reranking
for Reordering Documents and Producing Summaries", SIGIR 1998).

The list is built greedily; at each step every user takes

    argmax_{j not in L} (1 - lambda) * s(u, j) - lambda * max_{i in L} sim(i, j)

with ``s`` the base score min-max scaled to [0, 1] over the candidates and ``sim`` the cosine of the
items' feature rows (genre indicators by default; any ``[n_items, d]`` matrix, e.g. embeddings,
passed as the context's ``item_features``). The max-similarity term is 0 for the first item. Items
with an all-zero feature row have similarity 0 with everything. The effect is measured by
intra-list diversity (:func:`debiasrec.metrics.intra_list_diversity`, Ziegler et al. WWW 2005).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from debiasrec.debias.post.base import RERANKERS, RerankConfig, RerankContext, Reranker, greedy_loop


class DiversityConfig(RerankConfig):
    """Options of :class:`MMRReranker` (only the shared ones)."""


def unit_rows(features: Any) -> np.ndarray:
    """Dense L2-normalised rows of a feature matrix (sparse or dense; zero rows stay zero)."""
    import scipy.sparse as sp

    dense = np.asarray(features.todense() if sp.issparse(features) else features, dtype=np.float64)
    norm = np.linalg.norm(dense, axis=1, keepdims=True)
    return np.divide(dense, norm, out=np.zeros_like(dense), where=norm > 0)


def mmr_select(
    rel: np.ndarray, valid: np.ndarray, cand_vec: np.ndarray, *, lam: float, k: int
) -> np.ndarray:
    """Greedy MMR for all users at once.

    Args:
        rel: ``[n, N]`` relevance in [0, 1].
        valid: ``[n, N]`` True for real candidates.
        cand_vec: ``[n, N, d]`` unit feature vectors of the candidates.
        lam: trade-off ``lambda`` in [0, 1].
        k: list length.

    Returns:
        ``[n, k]`` chosen candidate columns (-1 when a user runs out).
    """
    max_sim = np.full(rel.shape, -np.inf)

    def objective(t: int, avail: np.ndarray) -> np.ndarray:
        red = np.where(np.isfinite(max_sim), max_sim, 0.0)
        return (1.0 - lam) * rel - lam * red

    def on_pick(rows: np.ndarray, cols: np.ndarray, has: np.ndarray) -> None:
        picked = cand_vec[rows, cols]  # [n, d]
        sim = np.einsum("nmd,nd->nm", cand_vec, picked)
        np.maximum(max_sim, np.where(has[:, None], sim, -np.inf), out=max_sim)

    return greedy_loop(k, valid, objective, on_pick)


@RERANKERS.register
class MMRReranker(Reranker[DiversityConfig]):
    """MMR diversification with cosine similarity of item features; ``strength`` is ``lambda``."""

    name = "diversity"
    Config = DiversityConfig

    def _select(
        self,
        items: np.ndarray,
        rel: np.ndarray,
        valid: np.ndarray,
        users: np.ndarray,
        context: RerankContext,
    ) -> np.ndarray:
        unit = unit_rows(context.require_features(self.name))
        vec = unit[np.where(valid, items, 0)]
        vec[~valid] = 0.0
        return mmr_select(rel, valid, vec, lam=self.strength, k=self.config.k)


__all__ = ["DiversityConfig", "MMRReranker", "mmr_select", "unit_rows"]
