"""Shared plumbing for torch recommenders: config, fitting through the one Trainer, persistence."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from pydantic import Field, field_validator

from debiasrec.data.dataset import Dataset
from debiasrec.errors import DataError
from debiasrec.models.base import ModelConfig, Recommender
from debiasrec.models.capabilities import TrainedByTrainer
from debiasrec.random import np_rng, torch_generator
from debiasrec.training.trainer import Strategy, Trainer, TrainerConfig, TrainHistory


class TorchModelConfig(ModelConfig):
    """Hyper-parameters common to torch models; ``train`` holds the Trainer settings."""

    train: TrainerConfig = Field(default_factory=TrainerConfig)

    @field_validator("train", mode="before")
    @classmethod
    def _merge_train(cls, value: Any) -> Any:
        """A partial ``train`` table overrides the model's defaults instead of replacing them."""
        if isinstance(value, dict):
            factory = cls.model_fields["train"].default_factory
            base = factory().model_dump() if factory is not None else {}  # type: ignore[call-arg]  # pydantic types default_factory as taking validated data
            return {**base, **value}
        return value


TC = TypeVar("TC", bound=TorchModelConfig)


class TorchRecommender(Recommender[TC], TrainedByTrainer, Generic[TC]):
    """A recommender whose parameters live in ``self.module`` (an ``nn.Module``).

    Subclasses implement ``_build(train, gen)`` (create ``self.module``), ``batches``,
    ``loss_terms`` and ``score_block``, and pass their user representation through
    :meth:`filter_user` (a no-op unless a user filter is installed with :meth:`set_user_filter`).
    """

    #: Name of the optional user-representation filter submodule inside ``self.module``.
    FILTER_ATTR = "user_filter"

    module: torch.nn.Module

    def __init__(self, config: Any = None, *, strategies: Sequence[Strategy] = (), **kw: Any):
        super().__init__(config, **kw)
        self.strategies = list(strategies)

    def _fit(
        self, train: Dataset, *, valid: Dataset | None, rng: int | np.random.Generator | None
    ) -> None:
        gen = np_rng(rng)
        self._build(train, torch_generator(gen))
        trainer = Trainer(self.config.train, self.strategies)
        self.history_: TrainHistory = trainer.fit(self, train, valid, rng=gen)
        self._after_fit(train)

    def _build(self, train: Dataset, gen: torch.Generator) -> None:
        raise NotImplementedError

    def _after_fit(self, train: Dataset) -> None:
        """Hook to cache inference-time tensors after training."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Training state outside ``self.module`` that a resumed run needs (see Trainer)."""
        return {}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint_state`."""

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.module.parameters() if p.requires_grad]}]

    def score_block(self, users: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _score(self, users: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.score_block(users).numpy()

    def _score_tensor(self, users: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.score_block(users)

    # ------------------------------------------------------------------ user filter hook
    def set_user_filter(self, filt: torch.nn.Module | None) -> None:
        """Install (or with ``None`` remove) a module applied to the user representation.

        It is registered as ``self.module.user_filter``, so its parameters are trained by the
        main optimizer and saved with the model (see :mod:`debiasrec.models.filters`).
        """
        if filt is None:
            if hasattr(self.module, self.FILTER_ATTR):
                delattr(self.module, self.FILTER_ATTR)
            return
        self.module.add_module(self.FILTER_ATTR, filt)

    @property
    def user_filter(self) -> torch.nn.Module | None:
        """The installed user filter, or ``None``."""
        module = getattr(self, "module", None)
        return getattr(module, self.FILTER_ATTR, None) if module is not None else None

    def filter_user(self, u: torch.Tensor) -> torch.Tensor:
        """Apply the installed user filter (identity without one)."""
        filt = self.user_filter
        return u if filt is None else filt(u)

    def _state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._build_empty()
        prefix = self.FILTER_ATTR + "."
        if any(k.startswith(prefix) for k in state):
            from debiasrec.models.filters import CompositionalFilter

            tensors = {k: torch.from_numpy(v) for k, v in state.items()}
            self.set_user_filter(CompositionalFilter.from_state_dict(tensors, prefix))
        self.module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
        self.module.eval()
        self._after_load()

    def _build_empty(self) -> None:
        raise NotImplementedError(f"{self.name} does not support loading")

    def _after_load(self) -> None:
        """Hook to rebuild inference caches after loading."""


#: From this many queries on, :func:`_sorted_lookup` sorts them first.
_SORT_QUERIES_FROM = 1 << 18


def _sorted_lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``np.searchsorted(sorted_keys, queries)``, faster for many random queries.

    Random queries into a large array make every binary-search probe a cache miss (23 s for 15M
    queries into 15M keys here); sorted queries walk the array in order (4 s with the sort).
    The result is identical.
    """
    if len(queries) < _SORT_QUERIES_FROM:
        return np.searchsorted(sorted_keys, queries)
    order = np.argsort(queries)
    out = np.empty(len(queries), dtype=np.intp)
    out[order] = np.searchsorted(sorted_keys, queries[order])
    return out


def bpr_negatives(
    users: np.ndarray, n_items: int, pos_keys: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One uniformly drawn negative item per ``users[r]``, never one of the user's positives.

    ``pos_keys`` are the sorted ``user * n_items + item`` keys of the training positives.
    Rejected draws are redrawn (vectorised) a few times; the rare rows still rejected after that
    (users who interacted with nearly every item) draw exactly from their complement.

    Raises:
        DataError: a user interacted with every item, so no negative exists.
    """
    neg = rng.integers(0, n_items, size=len(users))
    if len(pos_keys) == 0 or len(users) == 0:
        return neg
    u64 = np.asarray(users, dtype=np.int64)
    todo = np.arange(len(users))
    for _ in range(100):
        keys = u64[todo] * n_items + neg[todo]
        pos = _sorted_lookup(pos_keys, keys)
        pos[pos >= len(pos_keys)] = len(pos_keys) - 1
        hit = pos_keys[pos] == keys
        todo = todo[hit]
        if len(todo) == 0:
            return neg
        neg[todo] = rng.integers(0, n_items, size=len(todo))
    # Rows still rejected after 100 rounds belong to users with (almost) every item as a
    # positive; redraw them from the exact complement of their positives.
    for u in np.unique(u64[todo]):
        lo, hi = np.searchsorted(pos_keys, [u * n_items, (u + 1) * n_items])
        free = np.setdiff1d(np.arange(n_items), pos_keys[lo:hi] - u * n_items)
        if len(free) == 0:
            raise DataError(
                f"user code {int(u)} interacted with all {n_items} items, so no negative item "
                "exists for pairwise (BPR) training; drop such users before fitting"
            )
        rows = todo[u64[todo] == u]
        neg[rows] = free[rng.integers(0, len(free), size=len(rows))]
    return neg


class PairSampler:
    """Training pairs of pairwise (BPR-style) losses and one epoch's batches of them.

    The pairs are the positives ``(user, item)`` of a CSR matrix in CSR order. Every epoch
    shuffles them and draws one negative item per pair (:func:`bpr_negatives`), in that order
    from ``rng``, so models sharing the sampler draw the same epochs from the same seed.
    ``weights`` (one per pair, e.g. ``Dataset.pair_weights()``) are shuffled with the pairs and
    yielded as ``batch["weight"]``.
    """

    def __init__(self, csr: Any, n_items: int, weights: np.ndarray | None = None) -> None:
        self.users = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr)).astype(np.int64)
        self.items = csr.indices.astype(np.int64)
        self.keys = self.users * n_items + self.items  # sorted (CSR order)
        self.n_items = n_items
        self.weights = weights

    def __len__(self) -> int:
        return len(self.users)

    def batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """``{"users", "pos", "neg"[, "weight"]}`` batches covering every pair once."""
        n = len(self.users)
        perm = rng.permutation(n)
        users = self.users[perm]
        neg = bpr_negatives(users, self.n_items, self.keys, rng)
        u_t, p_t, n_t = (torch.from_numpy(a) for a in (users, self.items[perm], neg))
        w_t = None if self.weights is None else torch.from_numpy(self.weights[perm])
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            batch = {"users": u_t[sl], "pos": p_t[sl], "neg": n_t[sl]}
            if w_t is not None:
                batch["weight"] = w_t[sl]
            yield batch
