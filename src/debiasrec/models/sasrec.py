"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A user's interactions in time order ``s_1 .. s_n`` (the last ``max_len``) are embedded (item
embedding + learned position embedding), passed through ``layers`` pre-LayerNorm Transformer
blocks with causal self-attention (``torch.nn.functional.scaled_dot_product_attention``; a
position attends to itself and earlier items, never to later ones or to padding), and the hidden
state ``h_t`` at position ``t`` scores every item ``j`` by ``<h_t, e_j>`` with the item embedding
table shared between input and output.

Training: every position of every training window predicts the next item with a full softmax
cross-entropy over all items (the "SASRec + CE" variant that beats BERT4Rec, Klenitskiy &
Vasilev, RecSys 2023; RecBole's ``loss_type = "CE"``), instead of the original's one sampled
negative per position. A user's training sequence is cut into windows of ``max_len + 1`` items
from its end, so every training transition is a target exactly once per epoch. Dropout (on the
embeddings and residual branches; no attention-weight dropout) draws from the model's own seeded
generator, so a seed gives bit-identical training on CPU.

Scoring: user ``u``'s representation is ``h`` at the last position of its *inference history*
(``user_embeddings()``), which is its training sequence after ``fit`` and grows with
:meth:`SASRec.extend_history` (leave-one-out evaluation: extend by the validation item before
scoring test). ``score`` / ``recommend`` read that history, so re-rankers and every evaluator
apply unchanged. Sequences are ordered by timestamp (ties: row order, as
:func:`~debiasrec.data.split.leave_one_out_split`); without timestamps, by row order.

Weighted training data (``Dataset.weights``): the cross-entropy of a target interaction is
multiplied by its weight (``sum_t w_t CE_t / n_targets`` per batch): a weight ``k`` acts like
``k`` copies of that transition, ``0`` removes it as a target (it still appears as input).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError
from debiasrec.models.base import MODELS
from debiasrec.models.capabilities import (
    ItemEmbeddings,
    UserEmbeddings,
    UserFilterHost,
    UserRepresentation,
    WeightedTraining,
)
from debiasrec.models.torch_base import TorchModelConfig, TorchRecommender
from debiasrec.training.trainer import TrainerConfig


def _sasrec_train_defaults() -> TrainerConfig:
    # ML-100K leave-one-out validation: lr 3e-3 peaks within ~10 epochs (valid NDCG@10 0.108 at
    # epoch 8; lr 1e-3: 0.095 at epoch 6 and still rising slowly), benchmarks/RESULTS.md.
    return TrainerConfig(epochs=200, lr=3e-3, batch_size=128, patience=3, eval_every=2)


class SASRecConfig(TorchModelConfig):
    """SASRec hyper-parameters."""

    dim: int = Field(64, ge=1, description="embedding and hidden size")
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    ffn: int = Field(256, ge=1, description="hidden size of the position-wise feed-forward net")
    max_len: int = Field(50, ge=1, description="items of history the model reads")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    init_std: float = Field(0.02, gt=0.0)
    train: TrainerConfig = Field(default_factory=_sasrec_train_defaults)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SASRecConfig:
        if self.dim % self.heads:
            raise ConfigError(f"sasrec: dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


class _Block(torch.nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.ln2 = torch.nn.LayerNorm(dim)
        self.ff1 = torch.nn.Linear(dim, ffn)
        self.ff2 = torch.nn.Linear(ffn, dim)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, drop: Any) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
        )
        h = h + drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return h + drop(self.ff2(drop(F.gelu(self.ff1(self.ln2(h))))))


class _SASRecNet(torch.nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item = torch.nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # 0 = padding
        self.pos = torch.nn.Embedding(cfg.max_len, cfg.dim)
        self.blocks = torch.nn.ModuleList(
            _Block(cfg.dim, cfg.heads, cfg.ffn) for _ in range(cfg.layers)
        )
        self.ln = torch.nn.LayerNorm(cfg.dim)
        self.dropout = cfg.dropout

    def forward(self, seq: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Hidden states ``[batch, len, dim]`` of left-padded item sequences (codes + 1)."""
        n = seq.shape[1]

        def drop(x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.dropout == 0:
                return x
            keep = torch.rand(x.shape, generator=gen) >= self.dropout
            return x * keep / (1.0 - self.dropout)

        valid = seq > 0
        h = self.item(seq) * (self.item.embedding_dim**0.5)
        h = h + self.pos.weight[self.pos.num_embeddings - n :][None]
        h = drop(h) * valid[..., None]
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        # Query t sees keys <= t that are items; itself always (padding rows stay finite).
        mask = (causal & valid[:, None, :]) | torch.eye(n, dtype=torch.bool)
        mask = mask[:, None]  # heads
        for block in self.blocks:
            h = block(h, mask, drop) * valid[..., None]
        return self.ln(h)


def _sequences(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user time-ordered items: ``indptr [n_users + 1]``, ``items`` and interaction ``rows``."""
    if ds.timestamps is None:
        warnings.warn(
            f"dataset {ds.name!r} has no timestamps: SASRec orders each user's interactions by "
            "row order",
            stacklevel=4,
        )
        order = np.lexsort((np.arange(ds.n_interactions), ds.users))
    else:
        order = np.lexsort((np.arange(ds.n_interactions), ds.timestamps, ds.users))
    counts = np.bincount(ds.users, minlength=ds.n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, ds.items[order].astype(np.int64), order


def _left_padded(
    items: np.ndarray, starts: np.ndarray, stops: np.ndarray, length: int
) -> np.ndarray:
    """``[len(starts), length]`` of ``items[start:stop] + 1`` right-aligned (0 = padding)."""
    out = np.zeros((len(starts), length), dtype=np.int64)
    n = stops - starts
    col = np.arange(length)[None, :]
    offset = length - n[:, None]
    take = col >= offset
    src = starts[:, None] + (col - offset)
    out[take] = items[src[take]] + 1
    return out


@MODELS.register
class SASRec(
    TorchRecommender[SASRecConfig], UserRepresentation, UserEmbeddings, ItemEmbeddings, UserFilterHost, WeightedTraining
):
    """Causal self-attention over each user's item sequence, trained with full-softmax CE."""

    name = "sasrec"
    Config = SASRecConfig
    module: _SASRecNet
    _gen: torch.Generator | None = None

    # ------------------------------------------------------------------ build
    def _build(self, train: Dataset, gen: torch.Generator) -> None:
        cfg = self.config
        self.module = _SASRecNet(train.n_items, cfg)
        with torch.no_grad():
            for name, p in self.module.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln" in name or name.startswith("ln"):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, cfg.init_std, generator=gen)
            self.module.item.weight[0].zero_()
        self._gen = gen
        indptr, items, rows = _sequences(train)
        self.hist_indptr_, self.hist_items_ = indptr, items
        # Training windows: targets are positions 1..n-1 of each sequence, max_len per window,
        # cut from the end. Window (start, stop) reads items[start:stop-1] and predicts
        # items[start+1:stop].
        n = np.diff(indptr)
        n_win = np.maximum(0, -(-(n - 1) // cfg.max_len))  # ceil((n - 1) / max_len) per user
        user = np.repeat(np.arange(len(n)), n_win)
        k = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win)
        stops = indptr[user + 1] - k * cfg.max_len
        starts = np.maximum(indptr[user], stops - cfg.max_len - 1)
        self._win = (starts.astype(np.int64), stops.astype(np.int64))
        self._win_user = user.astype(np.int64)
        self._target_w: np.ndarray | None = None
        if train.weights is not None:
            self._target_w = np.asarray(train.weights, dtype=np.float32)[rows]

    def _build_empty(self) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):  # the init is overwritten by load
            self.module = _SASRecNet(self.n_items_, cfg)

    def checkpoint_state(self) -> dict[str, Any]:
        """The dropout generator (for exact resumption)."""
        return {} if self._gen is None else {"gen": self._gen.get_state()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if "gen" in state and self._gen is not None:
            self._gen.set_state(state["gen"])

    # ------------------------------------------------------------------ training
    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        cfg = self.config
        starts, stops = self._win
        perm = rng.permutation(len(starts))
        items = self.hist_items_
        for lo in range(0, len(perm), batch_size):
            sel = perm[lo : lo + batch_size]
            s, e = starts[sel], stops[sel]
            batch = {
                "users": torch.from_numpy(self._win_user[sel]),  # for strategies (adversaries)
                "seq": torch.from_numpy(_left_padded(items, s, e - 1, cfg.max_len)),
                "target": torch.from_numpy(_left_padded(items, s + 1, e, cfg.max_len)),
            }
            if self._target_w is not None:
                w = np.zeros((len(sel), cfg.max_len), np.float32)
                tgt = batch["target"].numpy() > 0
                pos = np.arange(cfg.max_len)[None, :] - (cfg.max_len - (e - s - 1))[:, None]
                src = (s + 1)[:, None] + pos
                w[tgt] = self._target_w[src[tgt]]
                batch["weight"] = torch.from_numpy(w)
            yield batch

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self.module(batch["seq"], self._gen)
        tgt = batch["target"]
        valid = tgt > 0
        logits = h[valid] @ self.module.item.weight[1:].T
        ce = F.cross_entropy(logits, tgt[valid] - 1, reduction="none")
        if "weight" in batch:
            ce = ce * batch["weight"][valid]
        return {"ce": ce.sum() / max(int(valid.sum()), 1)}

    # ------------------------------------------------------------------ inference
    def _history(self, users: np.ndarray) -> torch.Tensor:
        cfg = self.config
        stops = self.hist_indptr_[users + 1]
        starts = np.maximum(self.hist_indptr_[users], stops - cfg.max_len)
        return torch.from_numpy(_left_padded(self.hist_items_, starts, stops, cfg.max_len))

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        """Hidden state after the user's last history item (what probes and adversaries see)."""
        h = self.module(self._history(users.numpy()), self._gen)
        return self.filter_user(h[:, -1])

    def score_block(self, users: np.ndarray) -> torch.Tensor:
        u = self.user_repr(torch.as_tensor(np.asarray(users), dtype=torch.long))
        return u @ self.module.item.weight[1:].T

    def user_embeddings(self) -> np.ndarray:
        self._check_fitted()
        out = []
        with torch.no_grad():
            for lo in range(0, self.n_users_, 1024):
                out.append(self.user_repr(torch.arange(lo, min(lo + 1024, self.n_users_))))
        return torch.cat(out).numpy().copy()

    def item_embeddings(self) -> np.ndarray:
        self._check_fitted()
        return self.module.item.weight[1:].detach().numpy().copy()

    def extend_history(self, extra: Dataset) -> SASRec:
        """Append ``extra``'s interactions (in time order) to the users' inference histories.

        For leave-one-out evaluation: after fitting on train, ``extend_history(valid)`` makes
        test scores read train + valid, as SASRec papers and RecBole do. Training is not
        repeated; ``score``, ``recommend`` and ``user_embeddings`` change. Saved with the model.

        Raises:
            ConfigError: ``extra`` uses another user or item vocabulary size.
        """
        self._check_fitted()
        if extra.n_users != self.n_users_ or extra.n_items != self.n_items_:
            raise ConfigError(
                f"extend_history: {extra.name!r} has {extra.n_users} users x {extra.n_items} "
                f"items, the model {self.n_users_} x {self.n_items_}; use a part of the same split"
            )
        ind2, it2, _ = _sequences(extra)
        n1, n2 = np.diff(self.hist_indptr_), np.diff(ind2)
        indptr = np.concatenate([[0], np.cumsum(n1 + n2)]).astype(np.int64)
        items = np.empty(indptr[-1], dtype=np.int64)
        pos1 = np.arange(len(self.hist_items_)) - np.repeat(self.hist_indptr_[:-1], n1)
        items[np.repeat(indptr[:-1], n1) + pos1] = self.hist_items_
        pos2 = np.arange(len(it2)) - np.repeat(ind2[:-1], n2)
        items[np.repeat(indptr[:-1] + n1, n2) + pos2] = it2
        self.hist_indptr_, self.hist_items_ = indptr, items
        return self

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        out = super()._state()
        out["_hist_indptr"] = self.hist_indptr_
        out["_hist_items"] = self.hist_items_
        return out

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        state = dict(state)
        self.hist_indptr_ = state.pop("_hist_indptr")
        self.hist_items_ = state.pop("_hist_items")
        self._gen = None
        super()._load_state(state)
