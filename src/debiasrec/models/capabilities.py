"""Declared model capabilities: the ``typing.Protocol``s that strategies and tools require.

A model declares what it can do by listing the protocols among its base classes::

    class BPR(TorchRecommender[BPRConfig], UserRepresentation, ItemRepresentation, PairScorer,
              PairwiseTraining, UserEmbeddings, ItemEmbeddings, SparseTables, UserFilterHost,
              WeightedTraining): ...

Declaring is a promise checked twice: a type checker checks the method signatures against the
protocol (an explicit protocol base makes mypy compare them), and
:class:`debiasrec.testing.CapabilityContract` calls each declared method on a fitted model and
checks shapes and types. Consumers never probe with ``hasattr``: a strategy lists the
capabilities it requires (:meth:`debiasrec.debias.inproc.base.InprocStrategy.requires`), and
:func:`missing_capabilities` rejects a model/strategy pairing when the experiment config is
validated, before anything trains, with a message naming the model and what it lacks.

Capabilities may depend on a model's config (e.g. TextTwoTower trains on pairwise batches only
with ``loss = "bpr"``): such a model overrides :meth:`Recommender.capabilities`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import scipy.sparse as sp
    import torch


class UserRepresentation(Protocol):
    """Differentiable user representations (what adversaries, filters and probes see)."""

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        """``[len(users), d]`` representations of user codes ``users`` (training graph kept)."""
        ...


class ItemRepresentation(Protocol):
    """Differentiable item representations (what auxiliary item heads see)."""

    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        """``[len(items), d]`` representations of item codes ``items``."""
        ...


class PairScorer(Protocol):
    """Differentiable scores of (user, item) pairs (what fairness regularizers use)."""

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[len(users)]`` scores of the pairs ``(users[r], items[r])``."""
        ...


class TrainedByTrainer(Protocol):
    """Marker: trained by the one :class:`~debiasrec.training.trainer.Trainer`, so in-processing
    strategies can plug into its training (every torch model)."""


class PairwiseTraining(Protocol):
    """Marker: training batches carry ``users``, ``pos`` and ``neg`` (pairwise losses)."""


class WeightedTraining(Protocol):
    """Marker: the model honours per-interaction weights (``Dataset.weights``) when fitting."""


class UserEmbeddings(Protocol):
    """Fixed user embeddings after fitting (what leakage probes read)."""

    def user_embeddings(self) -> np.ndarray:
        """``[n_users, d]`` float array."""
        ...


class ItemEmbeddings(Protocol):
    """Fixed item embeddings after fitting (explanations use their similarities)."""

    def item_embeddings(self) -> np.ndarray:
        """``[n_items, d]`` float array."""
        ...


class ItemSimilarity(Protocol):
    """An item-item similarity matrix (explanations use it)."""

    def item_similarity(self) -> sp.csr_matrix:
        """``[n_items, n_items]`` sparse similarities."""
        ...


class SparseTables(Protocol):
    """Embedding tables that the Trainer may update row-sparsely (``train.row_sparse``)."""

    def sparse_tables(self) -> list[torch.nn.Embedding]:
        """The lookup tables used only through ``nn.Embedding`` during training."""
        ...


class UserFilterHost(Protocol):
    """A model that applies an installable filter module to its user representation."""

    def set_user_filter(self, filt: torch.nn.Module | None) -> None:
        """Install (or remove with ``None``) the filter."""
        ...


class TextScorer(Protocol):
    """Scores the catalog for users described by free text (what counterfactual audits need)."""

    def score_with_texts(self, user_codes: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """``[len(user_codes), n_items]`` scores when user ``r`` is described by ``texts[r]``."""
        ...


#: Every capability, by the name used in messages and docs.
CAPABILITIES: dict[str, type] = {
    c.__name__: c
    for c in (
        TrainedByTrainer,
        UserRepresentation,
        ItemRepresentation,
        PairScorer,
        PairwiseTraining,
        WeightedTraining,
        UserEmbeddings,
        ItemEmbeddings,
        ItemSimilarity,
        SparseTables,
        UserFilterHost,
        TextScorer,
    )
}


def declares(cls: type, capability: type) -> bool:
    """Whether ``cls`` lists ``capability`` among its bases (nominal, not structural)."""
    return capability in cls.__mro__


def missing_capabilities(
    provided: Sequence[type] | set[type], required: Sequence[type]
) -> list[str]:
    """Names of ``required`` capabilities absent from ``provided``, in order."""
    have = set(provided)
    return [c.__name__ for c in required if c not in have]


__all__ = [
    "CAPABILITIES",
    "ItemEmbeddings",
    "ItemRepresentation",
    "ItemSimilarity",
    "PairScorer",
    "PairwiseTraining",
    "SparseTables",
    "TextScorer",
    "TrainedByTrainer",
    "UserEmbeddings",
    "UserFilterHost",
    "UserRepresentation",
    "WeightedTraining",
    "declares",
    "missing_capabilities",
]
