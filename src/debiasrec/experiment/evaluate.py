"""Evaluation protocol: full-ranking (or sampled) top-K -> per-user metrics -> tidy results.

Full ranking scores every catalog item for every test user, masks the user's training items (and
validation items when evaluating on test) and keeps the top ``max(ks)``; metrics are computed per
user and aggregated overall and per sensitive group by :func:`debiasrec.metrics.by_group`.

Sampled evaluation (``sampled_negatives=N``, as "uni100" in papers) ranks each test user's held-out
items among ``N`` distinct, uniformly drawn items per held-out item that the user never interacted
with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError, DataError
from debiasrec.metrics.registry import (
    METRICS,
    MetricInput,
    check_metric_names,
    compute_metrics,
)
from debiasrec.metrics.topk import DEFAULT_CHUNK, full_ranking_topk, pad_rows, topk_from_scores
from debiasrec.random import np_rng
from debiasrec.training.device import check_device_setting, resolve_device

if TYPE_CHECKING:
    from debiasrec.models.base import Recommender

RESULT_COLUMNS = ["method", "seed", "metric", "group", "value", "ci_low", "ci_high", "n"]


class EvalConfig(BaseModel):
    """What to measure and how."""

    model_config = ConfigDict(extra="forbid")

    ks: list[int] = Field(default_factory=lambda: [10, 20])
    metrics: list[str] | None = Field(
        None,
        description="registered metrics to compute (debiasrec.metrics.METRICS); default: every "
        "metric registered as a default whose inputs are available",
    )
    attrs: list[str] | None = None  # default: every sensitive attribute of the dataset
    intersections: list[str] = Field(default_factory=list)  # e.g. ["gender&age"]
    n_boot: int = Field(1000, ge=0)
    ci: float = Field(0.95, gt=0, lt=1)
    chunk: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="users per scoring block; 'auto': 2048 on the CPU, sized to the free "
        "memory on a GPU",
    )
    device: str | None = Field(
        None,
        description="where the leakage probes run ('auto', 'cpu', 'cuda', 'cuda:N'; None: "
        "'auto' or the experiment's [run] device); a model scores on its own device",
    )
    sampled_negatives: int | None = Field(None, ge=1)
    head_share: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _legacy_beyond(cls, data: Any) -> Any:
        """Configs written before metrics were registered: ``metrics`` listed ranking metrics,
        ``beyond`` the beyond-accuracy ones, and everything else was always computed."""
        if not isinstance(data, dict) or "beyond" not in data:
            return data
        data = dict(data)
        beyond = data.pop("beyond")
        if not isinstance(beyond, list):
            raise ValueError("beyond must be a list of metric names")
        ranking = data.get("metrics")
        if ranking is None:
            ranking = [m.name for m in METRICS.values() if m.family == "ranking"]
        rest = [
            m.name for m in METRICS.values() if m.default and m.family not in ("ranking", "beyond")
        ]
        data["metrics"] = [*ranking, *beyond, *rest]
        return data

    @field_validator("attrs", "intersections")
    @classmethod
    def _once(cls, v: list[str] | None, info: Any) -> list[str] | None:
        from debiasrec.data.loaders import attribute_names

        return None if v is None else attribute_names(v, f"eval.{info.field_name}")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        return None if v is None else check_device_setting(v)

    @field_validator("metrics")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else check_metric_names(v)

    @field_validator("ks")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError(f"must be positive integers, got {v}")
        return v


@dataclass
class Evaluation:
    """Per-user metric table (rows = evaluated users) and tidy aggregated results."""

    per_user: pd.DataFrame
    results: pd.DataFrame
    topk: np.ndarray
    users: np.ndarray
    scores: np.ndarray | None = None


def eval_users(test: Dataset) -> np.ndarray:
    """Codes of users with at least one held-out interaction."""
    return np.flatnonzero(test.user_counts() > 0)


def rank_full(
    score_fn: Callable[[np.ndarray], Any],
    users: np.ndarray,
    k: int,
    exclude: Sequence[sp.csr_matrix],
    *,
    chunk: int | Literal["auto"] = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Full-ranking top-``k`` item codes and scores for ``users`` with ``exclude`` masked
    (on the scores' device; see :func:`debiasrec.metrics.topk.full_ranking_topk`)."""
    return full_ranking_topk(score_fn, users, k, exclude, chunk=chunk)


def rank_sampled(
    score_fn: Callable[[np.ndarray], Any],
    users: np.ndarray,
    k: int,
    truth: sp.csr_matrix,
    seen: sp.csr_matrix,
    n_neg: int,
    *,
    rng: int | np.random.Generator | None = 0,
    chunk: int | Literal["auto"] = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` among each user's held-out items plus ``n_neg`` unseen items per held-out item.

    The negatives of a user are drawn uniformly *without replacement* among the items the user has
    neither seen (``seen``) nor held out (``truth``): exactly ``n_neg * |held-out|`` distinct items,
    or every such item when there are fewer. Everything else is masked before the top-``k``.
    """
    gen = np_rng(rng)
    chunk = DEFAULT_CHUNK if chunk == "auto" else int(chunk)  # keys are drawn on the host
    n_items = truth.shape[1]
    users = np.asarray(users, dtype=np.int64)
    out = np.empty((len(users), k), dtype=np.int64)
    out_s = np.empty((len(users), k), dtype=np.float32)
    for start in range(0, len(users), chunk):
        block = users[start : start + chunk]
        with torch.no_grad():
            scores = torch.as_tensor(score_fn(block), dtype=torch.float32).clone()
        n_pos = np.diff(truth.indptr)[block]
        allowed = np.zeros((len(block), n_items), dtype=bool)
        seen_dense = (seen[block] + truth[block]).toarray() > 0
        need = np.minimum(n_pos * n_neg, n_items - seen_dense.sum(axis=1))
        m = int(need.max()) if len(block) else 0
        # The ``need[r]`` smallest of i.i.d. uniform keys (seen items keyed +inf) are a uniform
        # sample without replacement of the row's unseen items. One key per (user, item) is drawn
        # whatever the chunk, so the sample does not depend on ``chunk``.
        keys = gen.random((len(block), n_items))
        keys[seen_dense] = np.inf
        if m > 0:
            if m < n_items:
                cand = np.argpartition(keys, m - 1, axis=1)[:, :m]
            else:
                cand = np.broadcast_to(np.arange(n_items), keys.shape)
            order = np.argsort(np.take_along_axis(keys, cand, axis=1), axis=1)
            cand = np.take_along_axis(cand, order, axis=1)
            take = np.arange(m)[None, :] < need[:, None]
            rows = np.repeat(np.arange(len(block)), take.sum(axis=1))
            allowed[rows, cand[take]] = True
        t = truth[block].tocoo()
        allowed[t.row, t.col] = True
        scores[torch.from_numpy(~allowed).to(scores.device)] = float("-inf")
        out[start : start + len(block)], out_s[start : start + len(block)] = topk_from_scores(
            scores, k, inplace=True
        )
    return out, out_s


def evaluate_topk(
    topk: np.ndarray,
    users: np.ndarray,
    train: Dataset,
    test: Dataset,
    *,
    config: EvalConfig | None = None,
    rng: int | np.random.Generator | None = 0,
    scores: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    with_history: bool = True,
    probe_seed: int = 0,
) -> Evaluation:
    """Metrics of ranked lists ``topk[r]`` for user codes ``users[r]`` against ``test``.

    Computes every selected metric of :data:`debiasrec.metrics.METRICS` whose inputs are
    available (see :func:`metric_input`). ``train`` gives item popularity and the users'
    histories, counted on ``test``'s users only when ``train`` has appended users (see
    :func:`original_users`). Sensitive attributes come from ``test``'s user table; they are read
    here, for evaluation only. ``embeddings`` (the model's user embeddings) feed the leakage
    probe on representations. ``with_history=False`` withholds ``train`` as the users'
    histories (it is not their training data, e.g. an audit without one): metrics needing a
    history (miscalibration) are then not computed. ``probe_seed`` seeds the leakage probes'
    folds (the same for every method, so identical lists give identical leakage).
    """
    cfg = config or EvalConfig()
    kmax = max(cfg.ks)
    if topk.shape[1] < kmax:
        raise ConfigError(f"lists have {topk.shape[1]} items but eval.ks asks for @{kmax}")
    inp = metric_input(topk, users, train, test, cfg, scores=scores, embeddings=embeddings)
    inp.probe_seed = probe_seed
    inp.device = resolve_device(cfg.device)
    if not with_history:
        inp.history = None
    per, results = compute_metrics(inp, cfg.metrics, n_boot=cfg.n_boot, rng=rng)
    per_user = pd.DataFrame(per)
    per_user.insert(0, "user", users)
    return Evaluation(per_user=per_user, results=results, topk=topk, users=users, scores=scores)


def metric_input(
    topk: np.ndarray,
    users: np.ndarray,
    train: Dataset,
    test: Dataset,
    cfg: EvalConfig,
    *,
    scores: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> MetricInput:
    """What the registered metrics may read about these lists (see :class:`MetricInput`)."""
    train = original_users(train, test)
    feats, names, col = None, None, None
    if test.schema.item_categories and test.schema.item_categories[0] in test.item_table.columns:
        col = test.schema.item_categories[0]
        feats, names = test.item_category_matrix(col)
    attrs = list(test.schema.sensitive_names if cfg.attrs is None else cfg.attrs)
    return MetricInput(
        topk=topk,
        users=users,
        n_items=train.n_items,
        ks=list(cfg.ks),
        truth=test.csr()[users],
        history=train.csr()[users],
        item_pop=train.item_counts(),
        n_pop_users=train.n_users,
        item_features=feats,
        feature_names=names,
        feature_column=col,
        groups=test.groups_of([*attrs, *cfg.intersections], users),
        attrs=attrs,
        user_groups={a: test.user_groups(a) for a in attrs},
        embeddings=embeddings,
        scores=scores,
        head_share=cfg.head_share,
        ci=cfg.ci,
    )


def original_users(train: Dataset, test: Dataset) -> Dataset:
    """``train`` restricted to the users of ``test``'s vocabulary when users were appended to it.

    A pre-processing transform may append users (synthetic, oversampled) after the original
    codes (:meth:`Dataset.append_users`); they exist for training only, so popularity-based
    metrics count the original users' interactions alone. Returns ``train`` itself otherwise.

    Raises:
        DataError: ``train``'s user vocabulary does not start with ``test``'s.
    """
    n = test.n_users
    if train.n_users == n:
        return train
    if train.n_users < n or not train.user_vocab[:n].equals(test.user_vocab):
        raise DataError(
            f"train ({train.n_users} users) and test ({n} users) do not share the user "
            "vocabulary; train may only extend test's users with appended ones"
        )
    real = train.subset(train.users < n)
    return Dataset(
        real.users,
        real.items,
        user_vocab=test.user_vocab,
        item_vocab=real.item_vocab,
        ratings=real.ratings,
        timestamps=real.timestamps,
        user_table=test.user_table,
        item_table=real.item_table,
        schema=real.schema,
        name=real.name,
        weights=real.weights,
    )


def evaluate_model(
    model: Recommender[Any] | Callable[[np.ndarray], Any],
    train: Dataset,
    valid: Dataset | None,
    test: Dataset,
    *,
    config: EvalConfig | None = None,
    rng: int | np.random.Generator | None = 0,
    embeddings: np.ndarray | None = None,
) -> Evaluation:
    """Rank with a fitted model (or any ``score_fn(user_codes)``) and evaluate on ``test``.

    Training items, and validation items when ``valid`` is given, are never ranked. A model
    that declares :class:`~debiasrec.models.capabilities.UserEmbeddings` also gets the leakage
    probe on its embeddings (or pass ``embeddings``).

    ``train`` may have more users than ``test`` (users appended by a pre-processing transform,
    e.g. synthetic ones, see :meth:`Dataset.append_users`): only ``test``'s users are evaluated,
    and item popularity for the beyond-accuracy metrics is counted on the original users only.
    """
    from debiasrec.models.base import Recommender
    from debiasrec.models.capabilities import UserEmbeddings

    cfg = config or EvalConfig()
    score_fn: Callable[[np.ndarray], Any]
    if isinstance(model, Recommender):
        score_fn = model.score_tensor
        if embeddings is None and UserEmbeddings in model.capabilities(model.config):
            embeddings = np.asarray(cast(UserEmbeddings, model).user_embeddings(), np.float64)
    else:
        score_fn = model
    users = eval_users(test)
    n_rows = max(train.n_users, test.n_users)
    exclude = [train.csr()] + ([valid.csr()] if valid is not None else [])
    exclude = [pad_rows(m, n_rows) for m in exclude]
    kmax = max(cfg.ks)
    if cfg.sampled_negatives:
        seen = exclude[0] if len(exclude) == 1 else (exclude[0] + exclude[1])
        topk, scores = rank_sampled(
            score_fn, users, kmax, test.csr(), seen, cfg.sampled_negatives, rng=rng, chunk=cfg.chunk
        )
    else:
        topk, scores = rank_full(score_fn, users, kmax, exclude, chunk=cfg.chunk)
    return evaluate_topk(
        topk, users, train, test, config=cfg, rng=rng, scores=scores, embeddings=embeddings
    )


__all__ = [
    "RESULT_COLUMNS",
    "EvalConfig",
    "Evaluation",
    "eval_users",
    "evaluate_model",
    "evaluate_topk",
    "metric_input",
    "original_users",
    "rank_full",
    "rank_sampled",
]
