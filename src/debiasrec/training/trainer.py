"""The one training loop for every torch model.

A model plugs in through the :class:`Trainable` protocol (``module``, ``batches``, ``loss_terms``,
``param_groups``, ``score_block``); in-processing debiasing plugs in as a :class:`Strategy` that
adds named loss terms, its own modules and parameter groups, and hooks around each step
(including ``combine_terms``, which may rewrite the weighted terms before they are summed, and
``backward``, which may run the backward pass itself: learned loss weights, PCGrad). There
is no trainer subclass per model and no forked trainer per method.

Early stopping watches a validation ranking metric (default NDCG@10, full ranking with training
items masked), or any validation number a strategy reports (``TrainerConfig.select_metric``, e.g.
the worst user group's NDCG@10); the best weights are restored at the end. With
``TrainerConfig.select_constraint`` (upper bounds on other validation numbers, e.g. a strategy's
``leak_auc_gender``) the selected epoch is the best one *among the epochs meeting every bound*;
if none does, the epoch with the smallest violation, and ``TrainHistory.selection`` says so (see
:func:`selection_key`).

Scale-out and fault tolerance live in the same loop:

* **Data-parallel training** under ``torchrun`` (``TrainerConfig.distributed``, auto-detected from
  ``WORLD_SIZE``): each rank trains on a disjoint slice of every global batch, gradients of the
  model and of every strategy module are averaged, validation runs on rank 0 and its numbers are
  broadcast, so every rank makes the same early-stopping decision
  (:mod:`debiasrec.training.distributed`, ``docs/distributed.md``).
* **Checkpoints** (``TrainerConfig.checkpoint_dir``; written by rank 0 after every
  ``checkpoint_every`` epochs) hold the model, optimizer, scheduler, strategy modules and state,
  the NumPy generator state, the history and the best weights, in safetensors + JSON (no pickle).
  ``resume=True`` continues from the last one and ends with the same weights and history as an
  uninterrupted run with the same seed (:mod:`debiasrec.training.checkpoint`).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol, cast

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError
from debiasrec.metrics.topk import full_ranking_topk
from debiasrec.random import np_rng
from debiasrec.training import checkpoint as ckpt
from debiasrec.training import distributed as dist_
from debiasrec.training.device import (
    BatchRule,
    auto_batch,
    check_device_setting,
    model_device,
    precision_context,
)

_TORCH_VERSION = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])

#: ``row_sparse="auto"`` switches to row-sparse updates from this many embedding-table rows on.
#: Below it the fused dense Adam step is as fast or faster on CPU (measured: as fast at 61k
#: rows, 3.4x slower at 165k rows; benchmarks/RESULTS.md, "Scaling"), and the dense optimizer
#: is the one the models' defaults were tuned with.
ROW_SPARSE_AUTO_ROWS = 100_000


class TrainerConfig(BaseModel):
    """Optimisation and early-stopping settings shared by all torch models."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    lr_decay: float = Field(1.0, gt=0, le=1, description="multiply lr by this after every epoch")
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        2048,
        description="rows per step; 'auto': the model's CPU batch size on the CPU, larger on a "
        "GPU with the learning rate scaled (see debiasrec.training.device.auto_batch)",
    )
    patience: int = Field(10, ge=0, description="evaluations without improvement before stopping")
    eval_every: int = Field(1, ge=1)
    metric: str = "ndcg@10"
    max_seconds: float | None = Field(None, gt=0, description="wall-clock training budget")
    progress: bool = False
    loss_weights: dict[str, float] = Field(default_factory=dict)
    select_constraint: dict[str, float] = Field(
        default_factory=dict,
        description="upper bounds on validation numbers (row keys, e.g. 'leak_auc_gender': 0.55) "
        "that an epoch must meet to be selected; see selection_key",
    )
    select_metric: str | None = Field(
        None,
        description="validation row key to select the epoch by and early-stop on (higher is "
        "better) instead of valid_<metric>, e.g. a strategy's 'valid_worst_ndcg@10_gender'",
    )
    distributed: Literal["auto", "on", "off"] = Field(
        "auto",
        description="data-parallel training across processes: 'auto' when started by torchrun "
        "(WORLD_SIZE > 1) or a process group is initialised; see docs/distributed.md",
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto",
        description="process-group backend when the trainer creates it (auto: nccl when the "
        "device is a GPU, gloo on the CPU)",
    )
    device: str | None = Field(
        None,
        description="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'; None: 'auto', or "
        "the experiment's [run] device (see docs/gpu.md)",
    )
    precision: Literal["fp32", "tf32", "bf16"] | None = Field(
        None,
        description="'fp32' (None: fp32, or the experiment's [run] precision), 'tf32' (TF32 "
        "matmuls on CUDA) or 'bf16' (bfloat16 autocast) for training and scoring",
    )
    checkpoint_dir: str | None = Field(
        None, description="folder for the training checkpoint (rank 0 writes it)"
    )
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    resume: bool = Field(
        False,
        description="continue from checkpoint_dir's checkpoint when there is one (else start)",
    )
    row_sparse: Literal["auto", "on", "off"] = Field(
        "auto",
        description="row-sparse updates of the model's embedding tables (LazyAdam): 'auto' when "
        f"the tables hold >= {ROW_SPARSE_AUTO_ROWS} rows; see debiasrec.training.optim",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        return None if v is None else check_device_setting(v)

    @property
    def precision_or_default(self) -> str:
        """The precision to use (``fp32`` when unset)."""
        return self.precision or "fp32"


def selection_key(
    row: dict[str, float], metric_key: str, constraints: dict[str, float]
) -> tuple[int, float]:
    """Sort key of a validated epoch for model selection (larger is better).

    Rule: an epoch meeting every bound ``row[name] <= bound`` of ``constraints`` ranks above
    every epoch that does not; feasible epochs rank by ``row[metric_key]`` (higher is better);
    infeasible ones by their worst violation ``max(row[name] - bound)`` (lower is better). So the
    selected epoch is "best metric subject to the constraints, else the least-violating epoch".
    A NaN constrained value counts as an infinite violation; a NaN metric as minus infinity.

    Raises:
        ConfigError: a constraint names a key that the row does not have.
    """
    missing = sorted(set(constraints) - set(row))
    if missing:
        have = sorted(k for k in row if not k.startswith("loss_"))
        raise ConfigError(
            f"select_constraint names {missing}, but the validation row has no such value; "
            f"available: {have} (a strategy's validation_metrics provides them)"
        )
    value = row.get(metric_key, float("nan"))
    value = value if math.isfinite(value) else -math.inf
    if not constraints:
        return 1, value
    worst = -math.inf
    for name, bound in constraints.items():
        v = row[name]
        worst = max(worst, v - bound if math.isfinite(v) else math.inf)
    if worst <= 0:
        return 1, value
    return 0, -worst


class Trainable(Protocol):
    """What the Trainer needs from a model.

    The Trainer trains on the device of ``module`` (a :class:`TorchRecommender` places it by
    ``train.device``); batches must hold tensors on that device. Optional: ``batch_rule`` (a
    :class:`~debiasrec.training.device.BatchRule` for ``batch_size = "auto"``) and
    ``train_rows(train) -> int`` (rows per epoch, default ``train.n_interactions``).
    """

    module: torch.nn.Module

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]: ...

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def param_groups(self) -> list[dict[str, Any]]: ...

    def score_block(self, users: np.ndarray) -> torch.Tensor: ...


class Strategy:
    """In-processing plug-in. Override what you need; the defaults do nothing."""

    name: ClassVar[str] = "strategy"

    def setup(self, model: Trainable, train: Dataset, rng: np.random.Generator) -> None:
        """Called once before training (build discriminators, read group labels, ...)."""

    def modules(self) -> list[torch.nn.Module]:
        """Modules owned by the strategy (their parameters are registered and checkpointed)."""
        return []

    def param_groups(self) -> list[dict[str, Any]]:
        """Extra optimizer parameter groups for the main optimizer."""
        return []

    def loss_terms(
        self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor]:
        """Named loss terms added to the model's (weighted by ``TrainerConfig.loss_weights``)."""
        return {}

    def before_step(self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int) -> None:
        """Called before the model's loss of each batch (e.g. to pick the active filters)."""

    def combine_terms(
        self, weighted: dict[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor]:
        """Rewrite the batch's weighted loss terms before they are summed (default: unchanged).

        ``weighted[k]`` is ``loss_weights.get(k, 1) * term_k`` over the terms of the model and of
        every strategy; strategies are applied in order. Used by learned loss weighting (e.g.
        uncertainty weighting, :mod:`debiasrec.debias.inproc.multitask`). The history still logs
        the raw terms.
        """
        return weighted

    def backward(
        self, weighted: dict[str, torch.Tensor], params: Sequence[torch.nn.Parameter]
    ) -> bool:
        """Optionally run the backward pass of the batch's terms in place of ``sum().backward()``.

        Return ``True`` after filling ``p.grad`` of ``params`` (every trained parameter: the
        model's, the strategies' parameter groups and modules), e.g. with per-task gradients
        combined by PCGrad; ``False`` (default) leaves it to the Trainer. The first strategy that
        returns ``True`` wins.
        """
        return False

    def after_step(self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int) -> None:
        """Called after each optimizer step (e.g. an adversary's own update)."""

    def setup_validation(self, model: Trainable, train: Dataset, valid: Dataset) -> None:
        """Called once after :meth:`setup` when the run validates, with the validation data
        (for strategies whose validation numbers need held-out interactions, e.g. per-group
        accuracy)."""

    def observe_validation(self, per_user: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Called before :meth:`validation_metrics` with the Trainer's own validation metric per
        user (``{metric: (user codes, values)}``; may be empty), so that a strategy needing the
        same numbers per group does not rank every validation user again."""

    def validation_metrics(self, model: Trainable, valid_users: np.ndarray) -> dict[str, float]:
        """Extra validation numbers to log (and to use in a selection rule)."""
        return {}

    def checkpoint_state(self) -> dict[str, Any]:
        """State outside :meth:`modules` needed to resume exactly (own optimizers, generators).

        Nested dicts/lists of tensors, numbers and strings (saved without pickle).
        """
        return {}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint_state` (called after :meth:`setup` when resuming)."""


@dataclass
class TrainHistory:
    """Per-epoch losses and validation metrics; the epoch whose weights were kept.

    ``selection`` says how that epoch was chosen: ``"metric"`` (best validation metric),
    ``"constrained"`` (best metric among epochs meeting ``select_constraint``), ``"fallback: ..."``
    (no epoch met the constraints: the least-violating one) or ``"last"`` (no validation).
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_value: float = float("nan")
    stopped_early: bool = False
    seconds: float = 0.0
    selection: str = "last"
    row_sparse: bool = False  # embedding tables were trained with row-sparse updates
    device: str = "cpu"  # where training ran
    batch_size: int = 0  # rows per step actually used (batch_size = "auto" resolved)
    lr: float = float("nan")  # the learning rate actually used
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "selection": self.selection,
            "row_sparse": self.row_sparse,
            "device": self.device,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "precision": self.precision,
        }


def _optimizer(
    cfg: TrainerConfig,
    groups: list[dict[str, Any]],
    row_sparse: bool = False,
    lr: float | None = None,
) -> torch.optim.Optimizer:
    kw: dict[str, Any] = {"lr": cfg.lr if lr is None else lr, "weight_decay": cfg.weight_decay}
    if row_sparse and cfg.optimizer in ("adam", "adamw"):
        from debiasrec.training.optim import LazyAdam

        return LazyAdam(groups, **kw, decoupled=cfg.optimizer == "adamw")
    # SGD (without momentum) and Adagrad take sparse gradients natively.
    # Fused Adam runs on CPU from torch 2.4 on and is ~1.5x faster for embedding tables.
    fused = True if _TORCH_VERSION >= (2, 4) else None
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, **kw, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, **kw, fused=fused)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, **kw)
    return torch.optim.SGD(groups, **kw)


def resolve_batch(
    cfg: TrainerConfig, model: Any, train: Dataset, device: torch.device
) -> tuple[int, float]:
    """``(batch_size, lr)`` the Trainer uses: ``cfg``'s, or ``"auto"`` resolved by the model's
    ``batch_rule`` on ``device`` (:func:`debiasrec.training.device.auto_batch`; without a rule
    2048 and ``cfg.lr`` on every device)."""
    if cfg.batch_size != "auto":
        return int(cfg.batch_size), cfg.lr
    rule = getattr(model, "batch_rule", None)
    if not isinstance(rule, BatchRule):
        return 2048, cfg.lr
    rows_fn = getattr(model, "train_rows", None)
    rows = int(rows_fn(train)) if callable(rows_fn) else int(train.n_interactions)
    return auto_batch(rule, cfg.lr, device, rows)


def validation_score(
    score_fn: Callable[[np.ndarray], Any],
    train: Dataset,
    valid: Dataset,
    metric: str = "ndcg@10",
    per_user: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> float:
    """Mean of a ranking metric on ``valid`` users (full ranking, training items masked).

    ``score_fn`` may return tensors on any device; masking and top-k run there. With
    ``per_user`` (a dict), ``per_user[metric]`` is set to ``(users, values)``: the evaluated
    user codes and each one's value, for callers that also need them per user.
    """
    from debiasrec.metrics.ranking import ranking_metrics

    name, _, k_str = metric.partition("@")
    if not k_str.isdigit():
        raise ConfigError(f"validation metric must look like 'ndcg@10', got {metric!r}")
    k = int(k_str)
    truth = valid.csr()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if len(users) == 0:
        return float("nan")
    items, _ = full_ranking_topk(score_fn, users, k, [train.csr()])
    vals = ranking_metrics(items, truth[users], ks=(k,), metrics=(name,))[metric]
    if per_user is not None:
        per_user[metric] = (users, vals)
    return float(np.nanmean(vals))


def row_sparse_tables(model: Any, cfg: TrainerConfig) -> list[torch.nn.Embedding]:
    """The embedding tables the Trainer gives row-sparse gradients and updates, per ``cfg``.

    A model opts in by returning its lookup tables from ``sparse_tables()`` (tables used only
    through ``nn.Embedding`` lookups during training; BPR's user and item tables). With
    ``row_sparse="auto"`` they are used on the CPU when they hold at least
    :data:`ROW_SPARSE_AUTO_ROWS` rows in total (never on a GPU, where the fused dense step reads
    whole tables at memory bandwidth); ``"on"`` always, ``"off"`` never.

    A strategy that replaces the backward pass (PCGrad) projects these gradients as dense
    vectors; the optimizer then updates the whole table for that step, as a dense one would.

    Raises:
        ConfigError: ``row_sparse="on"`` with a model that has no such tables.
    """
    if cfg.row_sparse == "off":
        return []
    fn = getattr(model, "sparse_tables", None)
    tables = list(fn()) if callable(fn) else []
    if cfg.row_sparse == "on" and not tables:
        raise ConfigError(
            f"train.row_sparse='on' but {type(model).__name__} has no embedding tables that "
            "support row-sparse updates; use 'auto' or 'off'"
        )
    rows = sum(int(t.num_embeddings) for t in tables)
    if cfg.row_sparse == "auto" and rows < ROW_SPARSE_AUTO_ROWS:
        return []
    if cfg.row_sparse == "auto" and any(t.weight.device.type != "cpu" for t in tables):
        return []  # on a GPU the fused dense Adam step is cheap at any table size
    return tables


class Trainer:
    """Minimises the model's (and strategies') weighted named loss terms with early stopping."""

    def __init__(self, config: TrainerConfig | None = None, strategies: Sequence[Strategy] = ()):
        self.config = config or TrainerConfig()
        self.strategies = list(strategies)

    def fit(
        self,
        model: Trainable,
        train: Dataset,
        valid: Dataset | None = None,
        *,
        rng: int | np.random.Generator | None = None,
        log: Callable[[dict[str, float]], None] | None = None,
    ) -> TrainHistory:
        """Train ``model`` in place; returns the history. Best validation weights are restored.

        Under ``torchrun`` every rank calls ``fit`` with the same seed and data; ``log`` and the
        progress bar run on rank 0 only.
        """
        device = model_device(model)
        ctx = dist_.setup(self.config.distributed, self.config.backend, device)
        tables = row_sparse_tables(model, self.config)
        for emb in tables:
            emb.sparse = True
        try:
            with dist_.active_context(ctx):
                return self._fit(
                    model, train, valid, rng=rng, log=log, ctx=ctx, row_sparse=bool(tables)
                )
        finally:
            for emb in tables:  # inference and later fits see ordinary dense-gradient tables
                emb.sparse = False

    def _fit(
        self,
        model: Trainable,
        train: Dataset,
        valid: Dataset | None,
        *,
        rng: int | np.random.Generator | None,
        log: Callable[[dict[str, float]], None] | None,
        ctx: dist_.DistContext,
        row_sparse: bool = False,
    ) -> TrainHistory:
        cfg = self.config
        gen = np_rng(rng)
        device = model_device(model)
        for s in self.strategies:
            s.setup(model, train, gen)
            for m in s.modules():  # strategies build on the model's device; make sure
                m.to(device)
        batch_size, lr = resolve_batch(cfg, model, train, device)
        precision = cfg.precision_or_default
        on_host = device.type == "cpu"
        if ctx.active:
            # Every rank must build the same epochs (shuffle, negatives): use rank 0's stream.
            gen.bit_generator.state = dist_.broadcast_object(gen.bit_generator.state, ctx)
        groups = list(model.param_groups())
        for s in self.strategies:
            groups.extend(s.param_groups())
        opt = _optimizer(cfg, groups, row_sparse, lr)
        sched = (
            torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
            if cfg.lr_decay < 1.0
            else None
        )
        st = _LoopState()
        metric_key = f"valid_{cfg.metric}"
        select_key = cfg.select_metric or metric_key
        if cfg.resume and cfg.checkpoint_dir and ckpt.exists(cfg.checkpoint_dir):
            st = _load_checkpoint(cfg.checkpoint_dir, model, self.strategies, opt, sched, gen)
        modules = [model.module, *(m for s in self.strategies for m in s.modules())]
        dist_.broadcast_modules(modules, ctx)
        sync_params = dist_.unique_params(
            [g["params"] for g in groups] + [m.parameters() for m in modules]
        )
        hist = st.hist
        hist.row_sparse = row_sparse
        hist.device, hist.batch_size, hist.lr, hist.precision = (
            str(device),
            batch_size,
            lr,
            precision,
        )
        t0 = time.perf_counter() - st.elapsed
        use_valid = valid is not None and valid.n_interactions > 0
        if use_valid:
            assert valid is not None
            for s in self.strategies:
                s.setup_validation(model, train, valid)
        bar = None
        if cfg.progress and ctx.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, initial=st.next_epoch, desc="train", leave=False)
        for epoch in range(st.next_epoch, cfg.epochs if not st.done else st.next_epoch):
            model.module.train()
            sums: dict[str, Any] = {}  # floats on the CPU; float64 device tensors on a GPU
            n_batches = 0
            for global_batch in model.batches(train, batch_size, gen):
                if ctx.active and dist_.batch_size_of(global_batch) < ctx.world:
                    continue  # too small to give every rank a row; all ranks skip it alike
                batch, weight = dist_.shard_batch(global_batch, ctx)
                for s in self.strategies:
                    s.before_step(model, batch, epoch)
                with precision_context(device, precision):
                    terms = dict(model.loss_terms(batch))
                    for s in self.strategies:
                        extra = s.loss_terms(model, batch, epoch)
                        clash = sorted(set(extra) & set(terms))
                        if clash:  # update() would silently drop the earlier term
                            raise ConfigError(
                                f"strategy {s.name!r} returns loss term(s) {clash} that another "
                                "part of the model already returns; give its terms unique names"
                            )
                        terms.update(extra)
                st.produced.update(terms)
                weighted = {k: cfg.loss_weights.get(k, 1.0) * v for k, v in terms.items()}
                for s in self.strategies:
                    weighted = s.combine_terms(weighted, epoch)
                opt.zero_grad(set_to_none=True)
                if weight != 1.0:
                    weighted = {k: v * weight for k, v in weighted.items()}
                if not any(s.backward(weighted, sync_params) for s in self.strategies):
                    total = sum(weighted.values())
                    cast(torch.Tensor, total).backward()
                dist_.sync_grads(sync_params, ctx)
                opt.step()
                for s in self.strategies:
                    s.after_step(model, batch, epoch)
                share = weight / ctx.world  # this rank's rows / global rows
                if on_host:
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) * share
                else:  # no device-to-host sync per step: the same float64 sums, added on device
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + v.detach().double() * share
                n_batches += 1
            if not on_host:
                sums = {k: float(v) for k, v in sums.items()}
            sums = dist_.all_sum(sums, ctx)
            if sched is not None:
                sched.step()
            row = {"epoch": float(epoch)}
            row.update({f"loss_{k}": v / max(n_batches, 1) for k, v in sums.items()})
            if not all(math.isfinite(v) for v in row.values()):
                warnings.warn(f"non-finite loss at epoch {epoch}; stopping", stacklevel=3)
                hist.epochs.append(row)
                break
            if use_valid and (epoch + 1) % cfg.eval_every == 0:
                assert valid is not None
                model.module.eval()
                vrow: dict[str, float] | None = None
                if ctx.is_main:
                    per_user: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                    with precision_context(device, precision):
                        value = validation_score(
                            model.score_block, train, valid, cfg.metric, per_user=per_user
                        )
                    vrow = {metric_key: value}
                    for s in self.strategies:
                        s.observe_validation(per_user)
                        vrow.update(s.validation_metrics(model, np.arange(valid.n_users)))
                vrow = dist_.broadcast_object(vrow, ctx)
                assert vrow is not None
                row.update(vrow)
                if select_key not in vrow:
                    have = sorted(k for k in vrow if not k.startswith("loss_"))
                    raise ConfigError(
                        f"select_metric {select_key!r} is not a validation number; available: "
                        f"{have} (a strategy's validation_metrics provides them)"
                    )
                value = vrow[select_key]
                key = selection_key(row, select_key, cfg.select_constraint)
                # Patience runs out only when neither the selected epoch nor the raw metric
                # improves: under a constraint, early (barely trained) epochs are often the
                # feasible ones, and training must go on while accuracy still rises.
                raw_better = math.isfinite(value) and value > st.best_raw
                st.best_raw = max(st.best_raw, value) if math.isfinite(value) else st.best_raw
                if st.best_key is None or key > st.best_key:
                    st.best_key = key
                    hist.best_value, hist.best_epoch = value, epoch
                    st.best_state = _snapshot(model, self.strategies)
                    st.bad = 0
                elif raw_better:
                    st.bad = 0
                else:
                    st.bad += 1
            row["seconds"] = time.perf_counter() - t0
            hist.epochs.append(row)
            stop = use_valid and st.bad > cfg.patience
            if not stop and cfg.max_seconds is not None:
                stop = bool(dist_.broadcast_object(row["seconds"] > cfg.max_seconds, ctx))
            hist.stopped_early = hist.stopped_early or stop
            last = stop or epoch + 1 == cfg.epochs
            if (
                cfg.checkpoint_dir
                and ctx.is_main
                and (last or (epoch + 1) % cfg.checkpoint_every == 0)
            ):
                st.next_epoch, st.done = epoch + 1, last
                st.elapsed = time.perf_counter() - t0
                _save_checkpoint(cfg.checkpoint_dir, st, model, self.strategies, opt, sched, gen)
            if log is not None and ctx.is_main:
                log(row)
            if bar is not None:
                bar.update(1)
                shown = {k: f"{v:.4f}" for k, v in row.items() if k.startswith(("valid_", "loss"))}
                bar.set_postfix(shown, refresh=False)
            if stop:
                break
        if bar is not None:
            bar.close()
        unused = sorted(set(cfg.loss_weights) - st.produced)
        if unused and st.produced:
            warnings.warn(
                f"train.loss_weights names {unused}, but no loss term has that name (a typo?); "
                f"the terms were {sorted(st.produced)}",
                stacklevel=3,
            )
        if st.best_state is not None:
            _restore(model, self.strategies, st.best_state)
            assert st.best_key is not None
            if not cfg.select_constraint:
                hist.selection = "metric"
            elif st.best_key[0] == 1:
                hist.selection = "constrained"
            else:
                bounds = ", ".join(f"{k} <= {v:g}" for k, v in cfg.select_constraint.items())
                hist.selection = (
                    f"fallback: no validated epoch met {bounds}; kept the least-violating epoch "
                    f"{hist.best_epoch} (worst excess {-st.best_key[1]:.4f})"
                )
                warnings.warn(f"model selection {hist.selection}", stacklevel=3)
        elif hist.epochs:
            hist.best_epoch = int(hist.epochs[-1]["epoch"])
        model.module.eval()
        hist.seconds = time.perf_counter() - t0
        return hist


@dataclass
class _LoopState:
    """Everything the epoch loop carries from one epoch to the next (what a checkpoint holds)."""

    hist: TrainHistory = field(default_factory=TrainHistory)
    best_state: dict[str, Any] | None = None
    best_key: tuple[int, float] | None = None
    best_raw: float = -math.inf
    bad: int = 0
    produced: set[str] = field(default_factory=set)
    next_epoch: int = 0
    done: bool = False
    elapsed: float = 0.0


def _extra_state(obj: Any) -> dict[str, Any]:
    fn = getattr(obj, "checkpoint_state", None)
    return fn() if callable(fn) else {}


def _save_checkpoint(
    folder: str,
    st: _LoopState,
    model: Trainable,
    strategies: Sequence[Strategy],
    opt: torch.optim.Optimizer,
    sched: Any,
    gen: np.random.Generator,
) -> None:
    state = {
        "next_epoch": st.next_epoch,
        "done": st.done,
        "elapsed": st.elapsed,
        "model": model.module.state_dict(),
        "model_extra": _extra_state(model),
        "optimizer": opt.state_dict(),
        "scheduler": None if sched is None else sched.state_dict(),
        "strategies": [
            {"modules": [m.state_dict() for m in s.modules()], "extra": s.checkpoint_state()}
            for s in strategies
        ],
        "rng": gen.bit_generator.state,
        "history": st.hist.to_dict(),
        "best_state": st.best_state,
        "best_key": None if st.best_key is None else list(st.best_key),
        "best_raw": st.best_raw,
        "bad": st.bad,
        "produced": sorted(st.produced),
    }
    ckpt.save(folder, state, st.next_epoch)


def _load_checkpoint(
    folder: str,
    model: Trainable,
    strategies: Sequence[Strategy],
    opt: torch.optim.Optimizer,
    sched: Any,
    gen: np.random.Generator,
) -> _LoopState:
    state = ckpt.load(folder)
    saved = state["strategies"]
    if len(saved) != len(strategies):
        raise ConfigError(
            f"checkpoint in {folder} was written with {len(saved)} strategies, this run has "
            f"{len(strategies)}; resume with the same model and strategies"
        )
    model.module.load_state_dict(state["model"])
    load_extra = getattr(model, "load_checkpoint_state", None)
    if callable(load_extra):
        load_extra(state["model_extra"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state["scheduler"] is not None:
        sched.load_state_dict(state["scheduler"])
    for s, sv in zip(strategies, saved, strict=True):
        for m, sd in zip(s.modules(), sv["modules"], strict=True):
            m.load_state_dict(sd)
        s.load_checkpoint_state(sv["extra"])
    gen.bit_generator.state = state["rng"]
    h = state["history"]
    hist = TrainHistory(
        epochs=[dict(r) for r in h["epochs"]],
        best_epoch=int(h["best_epoch"]),
        best_value=float(h["best_value"]),
        stopped_early=bool(h["stopped_early"]),
        seconds=float(h["seconds"]),
        selection=str(h["selection"]),
    )
    bk = state["best_key"]
    return _LoopState(
        hist=hist,
        best_state=state["best_state"],
        best_key=None if bk is None else (int(bk[0]), float(bk[1])),
        best_raw=float(state["best_raw"]),
        bad=int(state["bad"]),
        produced=set(state["produced"]),
        next_epoch=int(state["next_epoch"]),
        done=bool(state["done"]),
        elapsed=float(state["elapsed"]),
    )


def _snapshot(model: Trainable, strategies: Sequence[Strategy]) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(model.module.state_dict()),
        "strategies": [[copy.deepcopy(m.state_dict()) for m in s.modules()] for s in strategies],
    }


def _restore(model: Trainable, strategies: Sequence[Strategy], state: dict[str, Any]) -> None:
    model.module.load_state_dict(state["model"])
    for s, states in zip(strategies, state["strategies"], strict=True):
        for m, st in zip(s.modules(), states, strict=True):
            m.load_state_dict(st)
