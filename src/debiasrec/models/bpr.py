"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking (Rendle et al., UAI 2009).

For a training pair ``(u, i)`` and a uniformly sampled non-interacted item ``j``:

    loss = -log sigmoid(<p_u, q_i> - <p_u, q_j>) + reg * (||p_u||^2 + ||q_i||^2 + ||q_j||^2) / 2

averaged over the batch. Negatives are drawn for the whole epoch at once (vectorised, with
rejection of positives); the score of ``(u, j)`` is ``<p_u, q_j>``.

Weighted training data (``Dataset.weights``, set by :mod:`debiasrec.debias.pre`): each row's
BPR and L2 terms are multiplied by its pair's weight ``w_ui`` (``Dataset.pair_weights``) before
averaging over the batch, ``sum_r w_r * loss_r / batch``, so a weight ``k`` acts like ``k``
copies of the pair and a weight 0 removes it from training entirely.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.models.base import MODELS
from debiasrec.models.capabilities import (
    ItemEmbeddings,
    ItemRepresentation,
    PairScorer,
    PairwiseTraining,
    SparseTables,
    UserEmbeddings,
    UserFilterHost,
    UserRepresentation,
    WeightedTraining,
)
from debiasrec.models.torch_base import PairSampler, TorchModelConfig, TorchRecommender
from debiasrec.training.trainer import TrainerConfig


def _bpr_train_defaults() -> TrainerConfig:
    # Chosen by validation NDCG@10 on ML-100K (benchmarks/RESULTS.md): a high initial rate with
    # exponential decay converges in ~60-80 epochs to better optima than a constant rate.
    return TrainerConfig(
        epochs=300, lr=3e-2, lr_decay=0.92, batch_size=4096, patience=3, eval_every=5
    )


class BPRConfig(TorchModelConfig):
    """BPR-MF hyper-parameters."""

    dim: int = Field(128, ge=1)
    reg: float = Field(1e-2, ge=0.0, description="L2 weight on the batch's embeddings")
    init_std: float = Field(0.1, gt=0)
    train: TrainerConfig = Field(default_factory=_bpr_train_defaults)


class _BPRLoss(torch.autograd.Function):
    """BPR loss and its L2 term with a hand-written, allocation-light backward.

    On CPU every temporary of a ``[batch, dim]`` tensor costs page faults, so the backward works
    in place on its own temporaries (never on saved tensors, so the graph may be backpropagated
    more than once): about 3x faster than autograd of the plain formula.
    """

    @staticmethod
    def forward(ctx, u, qi, qj, reg):
        d = qi - qj
        x = (u * d).sum(1)
        n = x.shape[0]
        bpr = torch.nn.functional.softplus(-x).mean()
        uf, qif, qjf = u.reshape(-1), qi.reshape(-1), qj.reshape(-1)
        l2 = 0.5 * reg * (uf @ uf + qif @ qif + qjf @ qjf) / n
        ctx.save_for_backward(u, qi, qj, d, torch.sigmoid(-x))
        ctx.reg, ctx.n = reg, n
        return bpr, l2

    @staticmethod
    def backward(ctx, g_bpr, g_l2):
        u, qi, qj, d, sig = ctx.saved_tensors
        c = sig.mul(-(g_bpr / ctx.n)).unsqueeze(1)
        # Not ``d.mul_(c)``: a saved tensor changed in place breaks any second backward through
        # the graph (``retain_graph=True``: gradcheck, per-term gradients of a Strategy).
        gu = d * c
        gi = u * c
        gj = gi.neg()
        if ctx.reg:
            r = float(g_l2) * ctx.reg / ctx.n
            gu.add_(u, alpha=r)
            gi.add_(qi, alpha=r)
            gj.add_(qj, alpha=r)
        return gu, gi, gj, None


class _WeightedBPRLoss(torch.autograd.Function):
    """:class:`_BPRLoss` with a weight per row on both the BPR and the L2 term."""

    @staticmethod
    def forward(ctx, u, qi, qj, w, reg):
        d = qi - qj
        x = (u * d).sum(1)
        n = x.shape[0]
        bpr = (w * torch.nn.functional.softplus(-x)).sum() / n
        sq = u.pow(2).sum(1) + qi.pow(2).sum(1) + qj.pow(2).sum(1)
        l2 = 0.5 * reg * (w * sq).sum() / n
        ctx.save_for_backward(u, qi, qj, d, torch.sigmoid(-x), w)
        ctx.reg, ctx.n = reg, n
        return bpr, l2

    @staticmethod
    def backward(ctx, g_bpr, g_l2):
        u, qi, qj, d, sig, w = ctx.saved_tensors
        c = (sig * w).mul(-(g_bpr / ctx.n)).unsqueeze(1)
        gu = d * c
        gi = u * c
        gj = gi.neg()
        if ctx.reg:
            r = (w * (float(g_l2) * ctx.reg / ctx.n)).unsqueeze(1)
            gu.add_(u * r)
            gi.add_(qi * r)
            gj.add_(qj * r)
        return gu, gi, gj, None, None


class _MF(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(n_users, dim)
        self.item = torch.nn.Embedding(n_items, dim)


@MODELS.register
class BPR(
    TorchRecommender[BPRConfig], UserRepresentation, ItemRepresentation, PairScorer, PairwiseTraining, WeightedTraining, UserEmbeddings, ItemEmbeddings, SparseTables, UserFilterHost
):
    """Matrix factorisation with the BPR pairwise loss."""

    name = "bpr"
    Config = BPRConfig
    module: _MF

    def _build(self, train: Dataset, gen: torch.Generator) -> None:
        cfg = self.config
        self.module = _MF(train.n_users, train.n_items, cfg.dim)
        with torch.no_grad():
            self.module.user.weight.normal_(0.0, cfg.init_std, generator=gen)
            self.module.item.weight.normal_(0.0, cfg.init_std, generator=gen)
        weights = None if train.weights is None else train.pair_weights()
        self._pairs = PairSampler(train.csr(), train.n_items, weights)

    def _build_empty(self) -> None:
        cfg = self.config
        self.module = _MF(self.n_users_, self.n_items_, cfg.dim)

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        return self._pairs.batches(batch_size, rng)

    def sparse_tables(self) -> list[torch.nn.Embedding]:
        """Tables the Trainer may train with row-sparse updates (``train.row_sparse``)."""
        return [self.module.user, self.module.item]

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        """User representation used for scoring (what adversaries and probes see)."""
        return self.filter_user(self.module.user(users))

    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        """Item representation used for scoring (what auxiliary item heads see)."""
        return self.module.item(items)

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        u = self.user_repr(batch["users"])
        qi, qj = self.module.item(torch.cat([batch["pos"], batch["neg"]])).chunk(2)
        if "weight" in batch:
            bpr, l2 = _WeightedBPRLoss.apply(u, qi, qj, batch["weight"], cfg.reg)
        else:
            bpr, l2 = _BPRLoss.apply(u, qi, qj, cfg.reg)
        return {"bpr": bpr, "reg": l2} if cfg.reg > 0 else {"bpr": bpr}

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Differentiable scores of ``(users[r], items[r])`` pairs."""
        return (self.user_repr(users) * self.module.item(items)).sum(1)

    def score_block(self, users: np.ndarray) -> torch.Tensor:
        u = self.user_repr(torch.as_tensor(users, dtype=torch.long))
        return u @ self.module.item.weight.T

    def user_embeddings(self) -> np.ndarray:
        self._check_fitted()
        with torch.no_grad():
            return self.user_repr(torch.arange(self.n_users_)).numpy().copy()

    def item_embeddings(self) -> np.ndarray:
        self._check_fitted()
        return self.module.item.weight.detach().numpy().copy()
