"""Item-based k-nearest-neighbour collaborative filtering (Sarwar et al., WWW 2001).

Similarity of items ``i`` and ``j`` over the binary user x item matrix ``X``:

    sim(i, j) = <x_i, x_j> / (||x_i|| * ||x_j|| + shrink)

For each target item ``j`` only its ``k`` most similar items are kept (``W[:, j]`` has ``k``
non-zeros), and ``score(u, j) = sum_i X[u, i] * W[i, j]``. Similarities are computed in blocks of
target items, so memory is ``O(n_items * block)`` rather than ``O(n_items^2)``.

Weighted training data (``Dataset.weights``): similarities are computed on ``X_w`` with entries
``sqrt(w_ui)`` (``Dataset.pair_weights``), so a user whose interactions all weigh ``k`` counts in
every co-occurrence like ``k`` copies of that user; scoring still sums over the user's binary
history ``X``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.models.base import MODELS, ModelConfig, Recommender
from debiasrec.models.capabilities import (
    ItemSimilarity,
    WeightedTraining,
)


class ItemKNNConfig(ModelConfig):
    """ItemKNN hyper-parameters."""

    k: int = Field(100, ge=1, description="neighbours kept per target item")
    shrink: float = Field(0.0, ge=0.0, description="added to the cosine denominator")
    block: int = Field(2048, ge=1, description="target items per similarity block")


@MODELS.register
class ItemKNN(Recommender[ItemKNNConfig], WeightedTraining, ItemSimilarity):
    """Item-item cosine neighbourhood model with shrinkage and top-k pruning."""

    name = "itemknn"
    Config = ItemKNNConfig

    def _fit(self, train: Dataset, *, valid: Dataset | None, rng: object) -> None:
        cfg = self.config
        x = train.csr().astype(np.float32)
        if train.weights is not None:
            xw = x.copy()
            xw.data = np.sqrt(train.pair_weights()).astype(np.float32)
        else:
            xw = x
        xt = xw.T.tocsr()
        norms = np.sqrt(np.asarray(xw.multiply(xw).sum(axis=0)).ravel()).astype(np.float32)
        n = x.shape[1]
        k = min(cfg.k, n - 1) if n > 1 else 0
        rows_out, cols_out, vals_out = [], [], []
        for start in range(0, n, cfg.block):
            stop = min(start + cfg.block, n)
            co = (xt @ xw[:, start:stop]).toarray()  # [n_items, block] co-occurrence counts
            denom = norms[:, None] * norms[None, start:stop] + cfg.shrink
            with np.errstate(divide="ignore", invalid="ignore"):
                sim = np.where(denom > 0, co / np.where(denom > 0, denom, 1.0), 0.0)
            sim[np.arange(start, stop), np.arange(stop - start)] = 0.0  # no self-similarity
            if k <= 0:
                continue
            top = np.argpartition(-sim, k - 1, axis=0)[:k]  # [k, block] neighbour rows
            vals = np.take_along_axis(sim, top, axis=0)
            keep = vals > 0
            rows_out.append(top[keep])
            cols_out.append(np.broadcast_to(np.arange(start, stop), top.shape)[keep])
            vals_out.append(vals[keep].astype(np.float32))
        if rows_out:
            w = sp.csr_matrix(
                (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
                shape=(n, n),
            )
        else:
            w = sp.csr_matrix((n, n), dtype=np.float32)
        self.sim_ = w
        self._x = x

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (self._x[users] @ self.sim_).toarray().astype(np.float32)

    def item_similarity(self) -> sp.csr_matrix:
        """The pruned item-item similarity matrix ``W`` (``W[i, j]``: i is a neighbour of j)."""
        self._check_fitted()
        return self.sim_

    def _state(self) -> dict[str, np.ndarray]:
        w = self.sim_.tocsr()
        return {
            "w_data": w.data,
            "w_indices": w.indices.astype(np.int64),
            "w_indptr": w.indptr.astype(np.int64),
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        n = self.n_items_
        self.sim_ = sp.csr_matrix(
            (state["w_data"], state["w_indices"], state["w_indptr"]), shape=(n, n)
        )
        self._x = self.train_csr_
