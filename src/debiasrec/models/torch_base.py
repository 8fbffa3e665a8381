"""Shared plumbing for torch recommenders: config, fitting through the one Trainer, persistence."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from pydantic import Field, field_validator

from debiasrec.data.dataset import Dataset
from debiasrec.errors import DataError
from debiasrec.models.base import ModelConfig, Recommender
from debiasrec.models.capabilities import TrainedByTrainer
from debiasrec.random import derive_seed, np_rng, torch_generator
from debiasrec.training.device import (
    BatchRule,
    generator_for,
    module_device,
    precision_context,
    resolve_device,
)
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

    Device (``config.train.device``, :mod:`debiasrec.training.device`): it is resolved once per
    ``fit`` (and per ``load``) into ``self.device_`` *before* ``_build``. ``_build`` draws the
    initial weights on the CPU, as it always did (so the initial weights are the same on every
    device), and may put its own training data on ``self.device_``; the module is then moved to
    the device. ``score_block`` returns tensors on the device; :meth:`score` copies to the host.
    """

    #: Name of the optional user-representation filter submodule inside ``self.module``.
    FILTER_ATTR = "user_filter"
    #: How ``train.batch_size = "auto"`` resolves (None: 2048 on every device).
    batch_rule: ClassVar[BatchRule | None] = None

    module: torch.nn.Module
    device_: torch.device

    def __init__(self, config: Any = None, *, strategies: Sequence[Strategy] = (), **kw: Any):
        super().__init__(config, **kw)
        self.strategies = list(strategies)

    def _fit(
        self, train: Dataset, *, valid: Dataset | None, rng: int | np.random.Generator | None
    ) -> None:
        gen = np_rng(rng)
        self.device_ = resolve_device(self.config.train.device)
        self._build(train, torch_generator(gen))
        self.module.to(self.device_)
        trainer = Trainer(self.config.train, self.strategies)
        self.history_: TrainHistory = trainer.fit(self, train, valid, rng=gen)
        self._after_fit(train)

    @property
    def device(self) -> torch.device:
        """Where the model computes (resolved from ``train.device`` at fit or load)."""
        return getattr(self, "device_", torch.device("cpu"))

    def _set_load_device(self, device: str | torch.device | None) -> None:
        self.device_ = resolve_device(self.config.train.device if device is None else device)

    def train_rows(self, train: Dataset) -> int:
        """Training rows per epoch (what ``batch_size = "auto"`` divides into steps)."""
        return int(train.n_interactions)

    def _device_generator(self, gen: torch.Generator) -> torch.Generator:
        """``gen`` on the CPU; on a GPU a generator there, seeded from one draw of ``gen``."""
        if self.device.type == "cpu":
            return gen
        return generator_for(self.device, int(torch.randint(0, 2**62, (1,), generator=gen)))

    def _ids(self, ids: Any) -> torch.Tensor:
        """Integer codes (array, list or tensor) as a long tensor on the model's device."""
        t = torch.as_tensor(ids, dtype=torch.long)
        return t if t.device == self.device else t.to(self.device)

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
        return self._score_tensor(users).cpu().numpy()

    def _score_tensor(self, users: np.ndarray) -> torch.Tensor:
        """Scores on the model's device (in ``train.precision``; returned as float32)."""
        with (
            torch.no_grad(),
            precision_context(self.device, self.config.train.precision_or_default),
        ):
            return self.score_block(users).float()

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
        self.module.add_module(self.FILTER_ATTR, filt.to(module_device(self.module)))

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
        self.module.to(self.device)
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
    _complement_draws(u64, todo, neg, n_items, pos_keys, rng)
    return neg


def _complement_draws(
    u64: np.ndarray,
    todo: np.ndarray,
    neg: np.ndarray,
    n_items: int,
    pos_keys: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Redraw ``neg[todo]`` from the exact complement of each row's user's positives (in place).

    Rows still rejected after 100 rounds belong to users with (almost) every item as a positive.
    """
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


def bpr_negatives_torch(
    users: torch.Tensor,
    n_items: int,
    pos_keys: torch.Tensor,
    gen: torch.Generator,
    host_keys: np.ndarray,
    rng: np.random.Generator,
) -> torch.Tensor:
    """:func:`bpr_negatives` drawn on ``users``' device from ``gen`` (a generator there).

    The same rule (uniform, positives rejected and redrawn, the rare rows rejected 100 times
    drawn from their exact complement on the host with ``rng``), with the draws of a torch
    generator: equal in distribution to the CPU draws, not the same numbers.
    """
    dev = users.device
    n = users.numel()
    neg = torch.randint(0, n_items, (n,), generator=gen, device=dev)
    if len(host_keys) == 0 or n == 0:
        return neg
    todo = torch.arange(n, device=dev)
    last = pos_keys.numel() - 1
    for _ in range(100):
        keys = users[todo] * n_items + neg[todo]
        pos = torch.searchsorted(pos_keys, keys).clamp_(max=last)
        todo = todo[pos_keys[pos] == keys]
        if todo.numel() == 0:
            return neg
        neg[todo] = torch.randint(0, n_items, (todo.numel(),), generator=gen, device=dev)
    host_neg = neg.cpu().numpy()
    rows = todo.cpu().numpy()
    _complement_draws(users.cpu().numpy(), rows, host_neg, n_items, host_keys, rng)
    neg[todo] = torch.from_numpy(host_neg[rows]).to(dev)
    return neg


class PairSampler:
    """Training pairs of pairwise (BPR-style) losses and one epoch's batches of them.

    The pairs are the positives ``(user, item)`` of a CSR matrix in CSR order. Every epoch
    shuffles them and draws one negative item per pair (:func:`bpr_negatives`), in that order
    from ``rng``, so models sharing the sampler draw the same epochs from the same seed.
    ``weights`` (one per pair, e.g. ``Dataset.pair_weights()``) are shuffled with the pairs and
    yielded as ``batch["weight"]``.

    ``device``: on the CPU (default) the epoch is drawn with NumPy exactly as above. On a GPU the
    pairs live there once, and each epoch is drawn there (shuffle and negatives from a torch
    generator seeded by one draw of ``rng``; :func:`bpr_negatives_torch`) and sliced into
    batches there: no host work and no host-to-device copy per batch. The GPU draws differ from
    the CPU ones (equal in distribution); the same seed gives the same epochs on the same GPU.
    ``torch_draws=True`` uses that path on the CPU too (to test it without a GPU).
    """

    def __init__(
        self,
        csr: Any,
        n_items: int,
        weights: np.ndarray | None = None,
        device: torch.device | str | None = None,
        *,
        torch_draws: bool | None = None,
    ) -> None:
        self.users = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr)).astype(np.int64)
        self.items = csr.indices.astype(np.int64)
        self.keys = self.users * n_items + self.items  # sorted (CSR order)
        self.n_items = n_items
        self.weights = weights
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self._on_device: dict[str, torch.Tensor] = {}
        if torch_draws is None:
            torch_draws = self.device.type != "cpu"
        if torch_draws:
            arrays = {"users": self.users, "pos": self.items, "keys": self.keys}
            if weights is not None:
                arrays["weight"] = np.asarray(weights, dtype=np.float32)
            self._on_device = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}

    def __len__(self) -> int:
        return len(self.users)

    def batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """``{"users", "pos", "neg"[, "weight"]}`` batches covering every pair once."""
        if self._on_device:
            yield from self._device_batches(batch_size, rng)
            return
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

    def _device_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        d = self._on_device
        gen = generator_for(self.device, derive_seed(rng))
        n = len(self.users)
        perm = torch.randperm(n, generator=gen, device=self.device)
        users = d["users"][perm]
        neg = bpr_negatives_torch(users, self.n_items, d["keys"], gen, self.keys, rng)
        pos = d["pos"][perm]
        w = d["weight"][perm] if "weight" in d else None
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            batch = {"users": users[sl], "pos": pos[sl], "neg": neg[sl]}
            if w is not None:
                batch["weight"] = w[sl]
            yield batch
