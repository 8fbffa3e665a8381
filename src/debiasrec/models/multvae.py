"""Mult-VAE: variational autoencoder with a multinomial likelihood (Liang et al., WWW 2018).

A user's L2-normalised interaction row (with input dropout) is encoded to ``q(z|x) = N(mu, sigma)``;
the decoder maps ``z`` to logits over all items. Loss per user:

    -sum_i x_i log softmax(f(z))_i + beta * KL(q(z|x) || N(0, I))

with ``beta`` annealed linearly from 0 to ``anneal_cap`` over ``total_anneal_steps`` updates.
Scores are the decoder logits at ``z = mu``; ``mu`` is the user representation.

Weighted training data (``Dataset.weights``): the multinomial log-likelihood weights each item
of the row by its pair weight, ``-sum_i w_ui x_ui log softmax(f(z))_i``, and the KL term of user
``u`` is multiplied by ``w_u``, the mean weight of the user's pairs; the encoder still reads the
unweighted row. A user whose pairs all weigh 0 contributes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.models.base import MODELS
from debiasrec.models.capabilities import (
    PairScorer,
    UserEmbeddings,
    UserFilterHost,
    UserRepresentation,
    WeightedTraining,
)
from debiasrec.models.torch_base import TorchModelConfig, TorchRecommender
from debiasrec.training.trainer import TrainerConfig


def _vae_train_defaults() -> TrainerConfig:
    # Chosen by validation NDCG@10 on ML-100K (benchmarks/RESULTS.md).
    return TrainerConfig(epochs=400, lr=2e-3, batch_size=1024, patience=10, eval_every=2)


class MultVAEConfig(TorchModelConfig):
    """Mult-VAE hyper-parameters."""

    hidden: int = Field(600, ge=1)
    latent: int = Field(128, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    anneal_cap: float = Field(0.2, ge=0.0)
    total_anneal_steps: int = Field(2000, ge=1)
    train: TrainerConfig = Field(default_factory=_vae_train_defaults)


class _VAE(torch.nn.Module):
    def __init__(self, n_items: int, hidden: int, latent: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.enc = torch.nn.Linear(n_items, hidden)
        self.enc_out = torch.nn.Linear(hidden, 2 * latent)
        self.dec = torch.nn.Linear(latent, hidden)
        self.dec_out = torch.nn.Linear(hidden, n_items)
        self.latent = latent
        for lin in (self.enc, self.enc_out, self.dec, self.dec_out):
            torch.nn.init.xavier_normal_(lin.weight)
            torch.nn.init.normal_(lin.bias, std=0.001)

    def encode(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance; input dropout (in training mode) draws from
        ``generator`` so that training is reproducible without touching global RNG state."""
        h = F.normalize(x, dim=1)
        if self.training and self.dropout > 0:
            keep = torch.rand(h.shape, generator=generator) >= self.dropout
            h = h * keep / (1.0 - self.dropout)
        h = torch.tanh(self.enc(h))
        out = self.enc_out(h)
        return out[:, : self.latent], out[:, self.latent :]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec_out(torch.tanh(self.dec(z)))


@MODELS.register
class MultVAE(
    TorchRecommender[MultVAEConfig], UserRepresentation, PairScorer, WeightedTraining, UserEmbeddings, UserFilterHost
):
    """Variational autoencoder over user interaction rows."""

    name = "multvae"
    Config = MultVAEConfig
    module: _VAE
    _noise_gen: torch.Generator | None = None  # drives dropout and the reparameterisation noise
    _wrows: sp.csr_matrix | None = None  # pair weights by row (weighted training data only)
    _user_w: np.ndarray | None = None  # mean pair weight of each user (weighted data only)

    def _build(self, train: Dataset, gen: torch.Generator) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.module = _VAE(train.n_items, cfg.hidden, cfg.latent, cfg.dropout)
        self._noise_gen = gen
        self._rows: sp.csr_matrix = train.csr()
        self._wrows = None
        self._user_w = None
        if train.weights is not None:
            pw = train.pair_weights()
            self._wrows = sp.csr_matrix(
                (pw, self._rows.indices, self._rows.indptr), shape=self._rows.shape
            )
            cnt = np.diff(self._rows.indptr)
            rows = np.repeat(np.arange(len(cnt)), cnt)
            sums = np.bincount(rows, weights=pw, minlength=len(cnt))
            self._user_w = (sums / np.maximum(cnt, 1)).astype(np.float32)
        self._step = 0

    def _build_empty(self) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):  # the init is overwritten by load: leave no trace
            self.module = _VAE(self.n_items_, cfg.hidden, cfg.latent, cfg.dropout)
        self._noise_gen = None

    def _after_load(self) -> None:
        self._rows = self.train_csr_

    def checkpoint_state(self) -> dict[str, Any]:
        """The KL-annealing step and the dropout/noise generator (for exact resumption)."""
        out: dict[str, Any] = {"step": self._step}
        if self._noise_gen is not None:
            out["noise_gen"] = self._noise_gen.get_state()
        return out

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self._step = int(state.get("step", 0))
        if "noise_gen" in state and self._noise_gen is not None:
            self._noise_gen.set_state(state["noise_gen"])

    def _dense_rows(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._rows[users].toarray())

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        active = np.flatnonzero(np.diff(self._rows.indptr) > 0)
        perm = rng.permutation(active)
        for start in range(0, len(perm), batch_size):
            yield {"users": torch.from_numpy(perm[start : start + batch_size])}

    def user_repr(self, users: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior mean ``mu`` (dropout only in training mode), through the user filter if any."""
        if x is None:
            x = self._dense_rows(users.numpy())
        return self.filter_user(self.module.encode(x, self._noise_gen)[0])

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        x = self._dense_rows(batch["users"].numpy())
        mu, logvar = self.module.encode(x, self._noise_gen)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(std.shape, generator=self._noise_gen)
        # An installed user filter sits between the sampled code and the decoder.
        logits = self.module.decode(self.filter_user(mu + eps * std))
        kl_u = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        if self._wrows is None or self._user_w is None:
            nll = -(F.log_softmax(logits, dim=1) * x).sum(1).mean()
            kl = kl_u.mean()
        else:
            users = batch["users"].numpy()
            xw = torch.from_numpy(self._wrows[users].toarray())
            nll = -(F.log_softmax(logits, dim=1) * xw).sum(1).mean()
            kl = (torch.from_numpy(self._user_w[users]) * kl_u).mean()
        beta = min(cfg.anneal_cap, self._step / cfg.total_anneal_steps)
        self._step += 1
        return {"nll": nll, "kl": beta * kl}

    def score_block(self, users: np.ndarray) -> torch.Tensor:
        x = self._dense_rows(np.asarray(users))
        mu, _ = self.module.encode(x)
        return self.module.decode(self.filter_user(mu))

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Differentiable decoder logits of ``(users[r], items[r])`` pairs (at ``z = mu``)."""
        uniq, inv = torch.unique(users, return_inverse=True)
        logits = self.module.decode(self.user_repr(uniq))
        return logits[inv, items]

    def user_embeddings(self) -> np.ndarray:
        self._check_fitted()
        with torch.no_grad():
            return self.user_repr(torch.arange(self.n_users_)).numpy().copy()
