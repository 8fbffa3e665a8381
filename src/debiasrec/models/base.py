"""The ``Recommender`` contract shared by every model.

* ``fit(train, *, valid=None, rng=None) -> self``; learned state ends in ``_``.
* ``score(user_codes) -> float32 [n_users, n_items]`` raw scores (no masking), one block at a time.
* ``recommend(users, k) -> Recs``: masked full-ranking top-k, scored in chunks.
* what else a model can do is declared with the protocols of
  :mod:`debiasrec.models.capabilities` (e.g. ``UserEmbeddings`` for ``user_embeddings()``).

Calling ``score``/``recommend`` before ``fit`` raises :class:`~debiasrec.errors.NotFittedError`.
Every model registers itself in :data:`MODELS` where it is defined (``@MODELS.register``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict
from typing_extensions import Self

from debiasrec.config import build_config
from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError, DataError, NotFittedError
from debiasrec.metrics.topk import full_ranking_topk, pad_rows
from debiasrec.models.capabilities import CAPABILITIES, declares
from debiasrec.registry import Registry


class ModelConfig(BaseModel):
    """Base of every model's typed config: unknown keys fail at construction."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Recs:
    """Top-k recommendations: ``items[r]`` (codes, -1 padding) and ``scores[r]`` for ``users[r]``."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    @property
    def k(self) -> int:
        return int(self.items.shape[1])

    def to_frame(self, ds: Dataset) -> pd.DataFrame:
        """Long format with original ids: ``user_id, item_id, rank, score`` (rank from 1)."""
        n, k = self.items.shape
        valid = self.items >= 0
        rows = np.repeat(np.arange(n), k).reshape(n, k)[valid]
        return pd.DataFrame(
            {
                "user_id": ds.user_vocab.take(self.users[rows]).to_numpy(),
                "item_id": ds.item_vocab.take(self.items[valid]).to_numpy(),
                "rank": np.tile(np.arange(1, k + 1), n).reshape(n, k)[valid].astype(np.int32),
                "score": self.scores[valid].astype(np.float32),
            }
        )


C = TypeVar("C", bound=ModelConfig)


class Recommender(ABC, Generic[C]):
    """Base class. Subclasses set ``name`` and ``Config`` and implement ``_fit`` and ``_score``.

    ``Recommender[XConfig]`` types ``self.config`` as ``XConfig``.
    """

    name: ClassVar[str] = "recommender"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    config: C

    def __init__(self, config: C | dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.config = cast(C, build_config(self.Config, config, kwargs, what=f"model {self.name!r}"))

    @classmethod
    def capabilities(cls, config: ModelConfig | None = None) -> set[type]:
        """The capabilities (protocols of :mod:`debiasrec.models.capabilities`) this model has
        with ``config`` (default: its declared ones, whatever the config)."""
        return {c for c in CAPABILITIES.values() if declares(cls, c)}

    # ------------------------------------------------------------------ contract
    def fit(
        self,
        train: Dataset,
        *,
        valid: Dataset | None = None,
        rng: int | np.random.Generator | None = None,
    ) -> Self:
        """Learn from ``train`` (``valid`` for early stopping where the model uses it)."""
        if train.n_interactions == 0:
            raise DataError(f"cannot fit {self.name}: training data {train.name!r} is empty")
        self.n_users_ = train.n_users
        self.n_items_ = train.n_items
        self.train_csr_ = train.csr()
        self._fit(train, valid=valid, rng=rng)
        return self

    @abstractmethod
    def _fit(
        self, train: Dataset, *, valid: Dataset | None, rng: int | np.random.Generator | None
    ) -> None: ...

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        """Raw float32 scores ``[len(user_codes), n_items]`` (nothing masked)."""
        self._check_fitted()
        users = self._check_users(user_codes)
        out = self._score(users)
        return np.asarray(out, dtype=np.float32)

    def score_tensor(self, user_codes: np.ndarray) -> torch.Tensor:
        """Raw float32 scores ``[len(user_codes), n_items]`` as a torch tensor (nothing masked).

        The same numbers as :meth:`score`, without a copy for torch models (the tensor is fresh
        and may be modified in place): what the evaluator and re-rankers use.
        """
        self._check_fitted()
        users = self._check_users(user_codes)
        out = self._score_tensor(users)
        return out if out.dtype == torch.float32 else out.float()

    def _score_tensor(self, users: np.ndarray) -> torch.Tensor:
        a = np.asarray(self._score(users), dtype=np.float32)
        if not (a.flags.writeable and a.flags.owndata and a.flags.c_contiguous):
            a = np.array(a, dtype=np.float32, order="C")  # a view (e.g. broadcast) is copied
        return torch.from_numpy(a)

    def _check_users(self, user_codes: np.ndarray) -> np.ndarray:
        users = np.asarray(user_codes, dtype=np.int64).ravel()
        if len(users) and (users.min() < 0 or users.max() >= self.n_users_):
            bad = users[(users < 0) | (users >= self.n_users_)]
            raise DataError(
                f"user codes must be in [0, {self.n_users_}) for {self.name}; got "
                f"{len(bad)} out-of-range code(s), e.g. {int(bad[0])}"
            )
        return users

    @abstractmethod
    def _score(self, users: np.ndarray) -> Any: ...

    def recommend(
        self,
        users: np.ndarray | None = None,
        k: int = 10,
        *,
        exclude: list[sp.csr_matrix] | None = None,
        chunk: int = 2048,
    ) -> Recs:
        """Top-``k`` for ``users`` (all by default).

        Training items are always masked; ``exclude`` masks the non-zeros of further user x item
        matrices too (e.g. validation items). Rows with fewer than ``k`` rankable items are padded
        with item ``-1`` (score ``-inf``).
        """
        self._check_fitted()
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        users = np.arange(self.n_users_) if users is None else self._check_users(users)
        masks = [self.train_csr_]
        for m in (sp.csr_matrix(x) for x in exclude or []):
            n_u, n_i = self.train_csr_.shape
            if m.shape[1] != n_i or m.shape[0] > n_u:
                raise DataError(
                    f"exclude matrices must be {self.train_csr_.shape} (users x items), "
                    f"got {m.shape}"
                )
            # A split part of the original data has fewer rows than a training set with
            # appended (e.g. synthetic) users: those users have nothing to exclude.
            masks.append(pad_rows(m, n_u))
        items, scores = full_ranking_topk(self.score_tensor, users, k, masks, chunk=chunk)
        return Recs(users=users, items=items, scores=scores)

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_users_"):
            raise NotFittedError(f"{self.name} is not fitted; call fit(train) first")

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``state.safetensors`` (no pickle) into ``folder``."""
        from safetensors.numpy import save_file

        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
        }
        (folder / "config.json").write_text(json.dumps(meta, indent=2))
        tensors = {k: np.ascontiguousarray(v) for k, v in self._state().items()}
        csr = self.train_csr_
        tensors["_train_indptr"] = csr.indptr.astype(np.int64)
        tensors["_train_indices"] = csr.indices.astype(np.int64)
        save_file(tensors, str(folder / "state.safetensors"))

    @classmethod
    def load(cls, folder: str | Path) -> Recommender[Any]:
        """Inverse of :meth:`save`."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta = json.loads((folder / "config.json").read_text())
        if meta.get("model") != cls.name:
            raise DataError(f"{folder} holds a {meta.get('model')!r} model, not {cls.name!r}")
        model = cls(cast(C, cls.Config(**meta["config"])))
        tensors = load_file(str(folder / "state.safetensors"))
        n_u, n_i = int(meta["n_users"]), int(meta["n_items"])
        indptr = tensors.pop("_train_indptr")
        indices = tensors.pop("_train_indices")
        model.n_users_, model.n_items_ = n_u, n_i
        model.train_csr_ = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(n_u, n_i)
        )
        model._load_state(tensors)
        return model

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{self.name} does not support saving")

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{self.name} does not support loading")


#: Every model by name (see :mod:`debiasrec.registry`); a model registers itself where defined.
MODELS: Registry[type[Recommender[Any]]] = Registry("model", "debiasrec.models")
