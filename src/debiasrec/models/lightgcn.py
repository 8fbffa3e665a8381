"""LightGCN: simplified graph convolution for collaborative filtering (He et al., SIGIR 2020).

With the normalised bipartite adjacency ``A_hat = D^-1/2 A D^-1/2`` and layer-0 embeddings
``E_0`` of users and items, ``E_{l+1} = A_hat E_l`` and the final embedding is the layer mean
``E = (E_0 + ... + E_L) / (L + 1)``. Trained with BPR on ``E``, L2 on the batch's ``E_0`` rows.

Weighted training data (``Dataset.weights``): as in BPR-MF, each row's BPR and L2 terms are
multiplied by its pair's weight (``Dataset.pair_weights``) before averaging over the batch. The
propagation graph stays the unweighted interaction graph: a weight-0 pair contributes no loss
but still links its user and item in ``A_hat``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.models.base import MODELS
from debiasrec.models.capabilities import (
    ItemRepresentation,
    PairScorer,
    PairwiseTraining,
    UserEmbeddings,
    UserFilterHost,
    UserRepresentation,
    WeightedTraining,
)
from debiasrec.models.torch_base import PairSampler, TorchModelConfig, TorchRecommender
from debiasrec.training.trainer import TrainerConfig


def _lgcn_train_defaults() -> TrainerConfig:
    return TrainerConfig(epochs=300, lr=5e-3, batch_size=4096, patience=3, eval_every=5)


class LightGCNConfig(TorchModelConfig):
    """LightGCN hyper-parameters."""

    dim: int = Field(64, ge=1)
    layers: int = Field(2, ge=0)
    reg: float = Field(1e-4, ge=0.0)
    train: TrainerConfig = Field(default_factory=_lgcn_train_defaults)


class _Emb(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(n_users, dim)
        self.item = torch.nn.Embedding(n_items, dim)
        torch.nn.init.xavier_normal_(self.user.weight)
        torch.nn.init.xavier_normal_(self.item.weight)


def normalized_adjacency(csr, n_users: int, n_items: int) -> torch.Tensor:
    """Symmetric-normalised adjacency of the user-item bipartite graph (sparse COO tensor)."""
    coo = csr.tocoo()
    rows = np.concatenate([coo.row, coo.col + n_users])
    cols = np.concatenate([coo.col + n_users, coo.row])
    n = n_users + n_items
    deg = np.bincount(rows, minlength=n).astype(np.float64)
    dinv = np.zeros(n)
    np.power(deg, -0.5, out=dinv, where=deg > 0)
    vals = (dinv[rows] * dinv[cols]).astype(np.float32)
    idx = torch.from_numpy(np.stack([rows, cols]).astype(np.int64))
    adj = torch.sparse_coo_tensor(idx, torch.from_numpy(vals), size=(n, n), check_invariants=False)
    return adj.coalesce()


@MODELS.register
class LightGCN(
    TorchRecommender[LightGCNConfig], UserRepresentation, ItemRepresentation, PairScorer, PairwiseTraining, WeightedTraining, UserEmbeddings, UserFilterHost
):
    """Graph-convolutional MF with layer-mean embeddings, trained with BPR."""

    name = "lightgcn"
    Config = LightGCNConfig
    module: _Emb

    def _build(self, train: Dataset, gen: torch.Generator) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.module = _Emb(train.n_users, train.n_items, cfg.dim)
        csr = train.csr()
        self._adj = normalized_adjacency(csr, train.n_users, train.n_items)
        weights = None if train.weights is None else train.pair_weights()
        self._pairs = PairSampler(csr, train.n_items, weights)
        self._final: tuple[torch.Tensor, torch.Tensor] | None = None

    def _build_empty(self) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):  # the init is overwritten by load: leave no trace
            self.module = _Emb(self.n_users_, self.n_items_, cfg.dim)

    def _after_fit(self, train: Dataset) -> None:
        # The Trainer restores the best epoch's weights after the last validation pass, which
        # cached the final embeddings of the *last* epoch: drop them so scores use the restored
        # weights.
        self._final = None

    def _after_load(self) -> None:
        self._adj = normalized_adjacency(self.train_csr_, self.n_users_, self.n_items_)
        self._final = None

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (layer-mean) user and item embeddings."""
        cfg = self.config
        e = torch.cat([self.module.user.weight, self.module.item.weight])
        acc = e
        for _ in range(cfg.layers):
            e = torch.sparse.mm(self._adj, e)
            acc = acc + e
        acc = acc / (cfg.layers + 1)
        n_u = self.module.user.num_embeddings
        return acc[:n_u], acc[n_u:]

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        return self._pairs.batches(batch_size, rng)

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        self._final = None
        users_f, items_f = self.propagate()
        u = self.filter_user(users_f[batch["users"]])
        x = (u * (items_f[batch["pos"]] - items_f[batch["neg"]])).sum(1)
        w = batch.get("weight")
        if w is None:
            terms = {"bpr": torch.nn.functional.softplus(-x).mean()}
        else:
            terms = {"bpr": (w * torch.nn.functional.softplus(-x)).sum() / len(x)}
        if cfg.reg > 0:
            u0 = self.module.user(batch["users"])
            if w is None:
                i0 = self.module.item(torch.cat([batch["pos"], batch["neg"]]))
                terms["reg"] = cfg.reg * 0.5 * (u0.pow(2).sum() + i0.pow(2).sum()) / len(x)
            else:
                sq = (
                    u0.pow(2).sum(1)
                    + self.module.item(batch["pos"]).pow(2).sum(1)
                    + self.module.item(batch["neg"]).pow(2).sum(1)
                )
                terms["reg"] = cfg.reg * 0.5 * (w * sq).sum() / len(x)
        return terms

    def _finals(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._final is None or self.module.training:
            with torch.no_grad():
                self._final = self.propagate()
        return self._final

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        """Final (layer-mean) user embeddings: what adversaries and probes see.

        While training (with gradients enabled) they are propagated afresh and differentiable, so
        a Strategy's loss on them reaches the model's parameters; otherwise the cached ones.
        """
        if self.module.training and torch.is_grad_enabled():
            return self.filter_user(self.propagate()[0][users])
        return self.filter_user(self._finals()[0][users])

    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        """Final (layer-mean) item embeddings; differentiable while training, as user_repr."""
        if self.module.training and torch.is_grad_enabled():
            return self.propagate()[1][items]
        return self._finals()[1][items]

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Differentiable scores of ``(users[r], items[r])`` pairs (propagates afresh)."""
        users_f, items_f = self.propagate()
        return (self.filter_user(users_f[users]) * items_f[items]).sum(1)

    def score_block(self, users: np.ndarray) -> torch.Tensor:
        uf, itf = self._finals()
        return self.filter_user(uf[torch.as_tensor(users, dtype=torch.long)]) @ itf.T

    def user_embeddings(self) -> np.ndarray:
        self._check_fitted()
        with torch.no_grad():
            return self.filter_user(self._finals()[0]).numpy().copy()
