"""Shared pieces of post-processing: context, candidate lists and the re-ranker contract.

Post-processing is ``(scores or Recs, context) -> Recs``: a re-ranker takes each user's candidate
list (the top-``n_candidates`` items of any model's scores, with training and, on test, validation
items already masked; or a :class:`~debiasrec.models.base.Recs` made by any system) and returns a
top-``k`` list chosen from it. Every re-ranker is a greedy selection run for all users at once: at
step ``t`` a ``[n_users, n_candidates]`` matrix of marginal objectives is computed with array
operations and each row's argmax is appended to that user's list (no per-user Python loop).

The returned ``Recs.scores`` are the base scores of the chosen items (the order is the re-ranked
one, so they need not decrease along a row).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import Self

from debiasrec.config import build_config
from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError, DataError, NotFittedError
from debiasrec.metrics.topk import full_ranking_topk, topk_from_scores
from debiasrec.models.base import Recs
from debiasrec.registry import Registry

ScoresLike = np.ndarray | torch.Tensor | Callable[[np.ndarray], Any]

#: Users re-ranked per block (bounds the ``[users, candidates, categories]`` temporaries).
CHUNK_USERS = 4096


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


@dataclass(frozen=True)
class RerankContext:
    """What re-rankers may know besides the scores; nothing here comes from the test split.

    Attributes:
        history: ``[n_users, n_items]`` training interactions (user profiles, popularity).
        item_pop: training interaction count per item.
        item_features: ``[n_items, C]`` category indicator matrix (e.g. genres) or None.
        feature_names: names of the ``C`` categories.
        user_groups: ``{attribute: per-user-code labels}`` of sensitive attributes (used for
            debiasing only, never by a model at inference).
        valid: ``[n_users, n_items]`` validation interactions (utility estimates), or None.
    """

    history: sp.csr_matrix
    item_pop: np.ndarray
    item_features: sp.csr_matrix | None = None
    feature_names: list[str] | None = None
    user_groups: Mapping[str, pd.Categorical] = field(default_factory=dict)
    valid: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return int(self.history.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.history.shape[1])

    @classmethod
    def from_datasets(
        cls,
        train: Dataset,
        valid: Dataset | None = None,
        *,
        features: str | None = "genres",
        sensitive: Sequence[str] | None = None,
    ) -> RerankContext:
        """Context from a training (and validation) dataset.

        Args:
            train: training interactions; its user table gives the sensitive attributes.
            valid: validation interactions (needed by :class:`GroupFairReranker` and the
                controller); the test split is never needed.
            features: item category column (multi-valued, e.g. ``"genres"``) or None.
            sensitive: attribute names (or ``"a&b"`` intersections); default every sensitive
                attribute declared by the schema.
        """
        feats, names = None, None
        if features is not None and features in train.item_table.columns:
            feats, names = train.item_category_matrix(features)
        attrs = train.schema.sensitive_names if sensitive is None else list(sensitive)
        groups = {a: train.user_groups(a) for a in attrs}
        return cls(
            history=train.csr(),
            item_pop=train.item_counts(),
            item_features=feats,
            feature_names=names,
            user_groups=groups,
            valid=None if valid is None else valid.csr(),
        )

    def groups(self, attr: str, users: np.ndarray) -> pd.Categorical:
        """Labels of ``attr`` for ``users`` (codes -1 = missing)."""
        if attr not in self.user_groups:
            raise DataError(
                f"unknown sensitive attribute {attr!r}; the context has {sorted(self.user_groups)}"
            )
        cat = self.user_groups[attr]
        return pd.Categorical.from_codes(
            np.asarray(cat.codes)[users], categories=cat.categories, ordered=cat.ordered
        )

    def require_features(self, who: str) -> sp.csr_matrix:
        if self.item_features is None:
            raise DataError(
                f"{who} needs item categories (e.g. genres): build the context with "
                "RerankContext.from_datasets(train, features='genres') or pass item_features"
            )
        return self.item_features


def candidates(
    scores: ScoresLike,
    users: np.ndarray | None = None,
    *,
    n: int = 100,
    exclude: Sequence[sp.csr_matrix] = (),
    chunk: int = 2048,
) -> Recs:
    """Top-``n`` candidate lists from base scores, ``exclude`` masked.

    Args:
        scores: ``[len(users), n_items]`` score block, a full ``[n_users, n_items]`` matrix (rows
            taken at ``users``), or a callable ``score_fn(user_codes) -> block`` (e.g.
            ``model.score``; scored in chunks).
        users: user codes (default: every row of ``scores``).
        n: candidate list length.
        exclude: user x item matrices whose non-zeros are never candidates (training items, and
            validation items on test).
        chunk: users per scoring block for a callable.
    """
    if n < 1:
        raise ConfigError(f"n_candidates must be >= 1, got {n}")
    if callable(scores):
        if users is None:
            raise DataError("users are needed when scores is a callable")
        u = np.asarray(users, dtype=np.int64)
        items, vals = full_ranking_topk(scores, u, n, exclude, chunk=chunk)
        return Recs(users=u, items=items, scores=vals)
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if s.ndim != 2:
        raise DataError(f"scores must be a 2-D [n_users, n_items] array, got shape {s.shape}")
    if users is None:
        u = np.arange(s.shape[0], dtype=np.int64)
    else:
        u = np.asarray(users, dtype=np.int64)
        if s.shape[0] != len(u):
            if exclude and s.shape[0] == exclude[0].shape[0]:
                s = s[u]  # a full matrix: take the users' rows
            else:
                raise DataError(
                    f"scores has {s.shape[0]} rows but {len(u)} users were given; pass the "
                    "users' rows or the full [n_users, n_items] matrix"
                )
    items, vals = topk_from_scores(np.array(s, dtype=np.float32), n, u, exclude, inplace=True)
    return Recs(users=u, items=items, scores=vals)


def sort_candidates(recs: Recs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates sorted by score, best first: ``(items, scores, valid)`` (padding last)."""
    items = np.asarray(recs.items, dtype=np.int64)
    s = np.asarray(recs.scores, dtype=np.float64)
    valid = (items >= 0) & np.isfinite(s)
    key = np.where(valid, s, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")
    return (
        np.take_along_axis(items, order, 1),
        np.take_along_axis(s, order, 1),
        np.take_along_axis(valid, order, 1),
    )


def minmax_relevance(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row min-max scaling of the valid scores to [0, 1] (a constant row maps to 1)."""
    lo = np.where(valid, scores, np.inf).min(axis=1, keepdims=True)
    hi = np.where(valid, scores, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    rel = np.where(ok, (scores - np.where(ok, lo, 0.0)) / np.where(ok, span, 1.0), 1.0)
    return np.where(valid, rel, 0.0)


def greedy_pick(obj: np.ndarray, avail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise argmax of ``obj`` over ``avail`` entries: ``(column, has_any)``.

    Ties go to the lowest column, i.e. to the better-scored candidate.
    """
    masked = np.where(avail, obj, -np.inf)
    j = np.argmax(masked, axis=1)
    has = np.asarray(avail.any(axis=1))
    return j, has


class RerankConfig(BaseModel):
    """Options shared by every re-ranker; unknown keys fail at construction."""

    model_config = ConfigDict(extra="forbid")

    strength: float = Field(0.0, ge=0.0, le=1.0, description="trade-off strength lambda")
    k: int = Field(10, ge=1, description="length of the re-ranked list")
    n_candidates: int = Field(100, ge=1, description="candidates taken from the base scores")


R = TypeVar("R", bound=RerankConfig)


class Reranker(ABC, Generic[R]):
    """Base re-ranker: ``rerank(scores or Recs, context) -> Recs`` (top-``k`` of the candidates).

    Subclasses set ``name`` and ``Config`` and implement ``_select(items, rel, valid, users,
    context) -> positions [n, k]`` (column indices into the score-sorted candidates, -1 = none).
    ``strength = 0`` always returns the top-``k`` by score.
    """

    name: ClassVar[str] = "reranker"
    Config: ClassVar[type[RerankConfig]] = RerankConfig
    needs_fit: ClassVar[bool] = False
    config: R

    def __init__(self, config: R | dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.config = cast(
            R, build_config(self.Config, config, kwargs, what=f"re-ranker {self.name!r}")
        )

    @property
    def strength(self) -> float:
        return float(self.config.strength)

    def with_strength(self, strength: float) -> Self:
        """A copy with another trade-off strength (fitted state shared)."""
        if not 0.0 <= float(strength) <= 1.0:
            raise ConfigError(f"strength must be in [0, 1], got {strength}")
        new = copy.copy(self)
        new.config = self.config.model_copy(update={"strength": float(strength)})
        return new

    def fit(self, context: RerankContext, valid_candidates: Recs | None = None) -> Self:
        """Learn what the method estimates from data (validation only); returns ``self``.

        Args:
            context: training history, item categories, user groups, validation interactions.
            valid_candidates: base candidate lists for validation users (training items masked,
                not validation items); used by methods that estimate utility.
        """
        self._fit(context, valid_candidates)
        self.fitted_ = True
        return self

    def _fit(self, context: RerankContext, valid_candidates: Recs | None) -> None:
        return None

    def rerank(
        self,
        x: Recs | ScoresLike,
        context: RerankContext,
        *,
        users: np.ndarray | None = None,
        exclude: Sequence[sp.csr_matrix] = (),
    ) -> Recs:
        """Re-rank candidates (a ``Recs``) or the top-``n_candidates`` of ``x`` (scores).

        Args:
            x: candidate lists, or scores as accepted by :func:`candidates`.
            context: see :class:`RerankContext`.
            users: user codes of the score rows (scores only).
            exclude: user x item matrices masked before taking candidates (scores only).

        Returns:
            ``Recs`` with ``k`` items per user (-1 padding if fewer candidates).
        """
        if self.needs_fit and not getattr(self, "fitted_", False):
            raise NotFittedError(f"{self.name} is not fitted; call fit(context, valid_candidates)")
        cand = (
            x
            if isinstance(x, Recs)
            else candidates(x, users, n=self.config.n_candidates, exclude=exclude)
        )
        items, s, valid = sort_candidates(cand)
        users_ = np.asarray(cand.users, dtype=np.int64)
        if len(users_) and (users_.min() < 0 or users_.max() >= context.n_users):
            raise DataError(f"user codes must be in [0, {context.n_users})")
        k = self.config.k
        if self.strength == 0.0:
            pos = np.broadcast_to(
                np.arange(min(k, items.shape[1])), (len(users_), min(k, items.shape[1]))
            )
            pos = np.where(np.take_along_axis(valid, pos, 1), pos, -1)
        else:
            rel = minmax_relevance(s, valid)
            parts = [
                self._select(items[a:b], rel[a:b], valid[a:b], users_[a:b], context)
                for a, b in _blocks(len(users_), CHUNK_USERS)
            ]
            pos = np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)
        if pos.shape[1] < k:
            pos = np.pad(pos, ((0, 0), (0, k - pos.shape[1])), constant_values=-1)
        ok = pos >= 0
        safe = np.where(ok, pos, 0)
        out_items = np.where(ok, np.take_along_axis(items, safe, 1), -1)
        out_scores = np.where(ok, np.take_along_axis(s, safe, 1), -np.inf).astype(np.float32)
        return Recs(users=users_, items=out_items, scores=out_scores)

    __call__ = rerank

    @abstractmethod
    def _select(
        self,
        items: np.ndarray,
        rel: np.ndarray,
        valid: np.ndarray,
        users: np.ndarray,
        context: RerankContext,
    ) -> np.ndarray:
        """Positions ``[n, k]`` into the sorted candidates (``rel`` in [0, 1], best first)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({args})"


#: Every re-ranker by name (see :mod:`debiasrec.registry`); each registers itself where defined.
RERANKERS: Registry[type[Reranker[Any]]] = Registry("re-ranker", "debiasrec.rerankers")


def greedy_loop(
    k: int,
    valid: np.ndarray,
    objective: Callable[[int, np.ndarray], np.ndarray],
    on_pick: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
) -> np.ndarray:
    """Run ``k`` greedy steps for all rows at once.

    At step ``t`` ``objective(t, avail) -> [n, N]`` gives the marginal value of each candidate;
    each row takes its best available candidate (ties: lowest column) and ``on_pick(rows, cols,
    has)`` updates the caller's state. Returns positions ``[n, k]`` (-1 once a row runs out).
    """
    n, n_cand = valid.shape
    avail = valid.copy()
    out = np.full((n, k), -1, dtype=np.int64)
    rows = np.arange(n)
    for t in range(min(k, n_cand)):
        obj = objective(t, avail)
        j, has = greedy_pick(obj, avail)
        out[:, t] = np.where(has, j, -1)
        on_pick(rows, j, has)
        avail[rows[has], j[has]] = False
    return out


__all__ = [
    "RERANKERS",
    "RerankConfig",
    "RerankContext",
    "Reranker",
    "ScoresLike",
    "candidates",
    "greedy_loop",
    "greedy_pick",
    "minmax_relevance",
    "sort_candidates",
]
