"""Multi-task learning: auxiliary tasks on a recommender's representation, as a Trainer Strategy.

The recommender keeps its own loss (e.g. BPR) on its user/item embeddings ``p_u``, ``q_i``;
:class:`MultiTask` adds auxiliary tasks whose heads read those embeddings, so their gradients
shape the shared representation (hard parameter sharing of the embeddings; Caruana, "Multitask
Learning", 1997). Inference is unchanged: the recommender still scores ``<p_u, q_i>``.

Tasks (:class:`TaskSpec`, loss term ``mt_<name>``, logged per epoch as ``loss_mt_<name>``):

* ``genre`` -- entity/attribute prediction: multi-label genres of item ``i`` from ``q_i``,
  binary cross-entropy averaged over genres. Items: the batch's distinct positives and
  negatives (a random subset of at most ``item_batch``).
* ``like`` -- sentiment of a user-item pair: ``P(rating >= like_threshold)`` from
  ``x_ui = [p_u, q_i, p_u * q_i]``, binary cross-entropy. Pairs: the batch's positive pairs
  (every one is a rated training interaction; a random subset of at most ``pair_batch``).
* ``rating`` -- rating regression from ``x_ui``: squared error to ``r_ui - mean(r)``.
* ``text`` -- sentiment of real review text through the shared text encoder: frozen
  sentence-encoder features (:class:`debiasrec.lm.encoder.SentenceEncoder`) -> trainable
  :class:`~debiasrec.models.heads.TextAdapter` -> classifier, binary cross-entropy. Its data
  (:class:`TextTaskData`) is independent of the interactions; each step samples
  ``text_batch`` examples.

Architectures above the embeddings (``architecture``): each task first maps its input to width
``hidden`` (a linear projection, or the text adapter), then

* ``separate`` -- a task-specific ReLU and tower (only the embeddings are shared);
* ``shared_bottom`` -- one shared MLP ``f`` then the task tower: ``y_k = t_k(f(x_k))``;
* ``mmoe`` -- multi-gate mixture of experts (Ma et al., KDD 2018):
  ``y_k = t_k(sum_e softmax(W_k x_k)_e f_e(x_k))``.

Loss weighting (``weighting``) over task groups -- ``rec`` (every term of the model itself, e.g.
``bpr`` and ``reg``), each auxiliary task, and ``adversarial`` (``adv_*`` terms of an
:class:`~debiasrec.debias.inproc.adversarial.Adversarial` strategy, so the adversary is one more
task):

* ``fixed`` -- ``L = sum_k w_k L_k`` with ``w_k = TaskSpec.weight`` (times
  ``TrainerConfig.loss_weights``, which also weights the model's own terms);
* ``uncertainty`` -- homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, "Multi-Task
  Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR 2018):
  ``L = sum_k exp(-s_k) w_k L_k + s_k`` with learned log-variances ``s_k = log sigma_k^2``
  (Kendall's Eq. 7 with the constant factors 1/2 dropped, as in most implementations); the
  minimiser ``s_k = log(w_k L_k)`` lowers the weight of tasks with a large loss. Tasks with
  ``weight = 0`` are left out.

Gradient combination (``gradient``):

* ``sum`` -- one backward pass of the summed loss;
* ``pcgrad`` -- projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task
  Learning", NeurIPS 2020): per-group gradients ``g_k`` of the shared parameters (those with a
  gradient from at least two groups); for each ``k`` and every other group ``j`` in random order,
  if ``g_k . g_j < 0`` then ``g_k <- g_k - (g_k . g_j) / ||g_j||^2 g_j``; the update is
  ``sum_k g_k`` (:func:`pcgrad_project`). Parameters of one group only keep their plain
  gradient. Costs one backward pass per group.

Randomness: the strategy's generator is *spawned* from the Trainer's (``Generator.spawn``, which
does not advance the parent stream), and heads are built on the meta device and initialised from
that generator, so adding the strategy leaves the recommender's batches and initialisation
untouched: with every task weight 0 (and ``weighting="fixed"``, ``gradient="sum"``) training
reproduces the single-task model exactly.

Example::

    from debiasrec.models import BPR
    from debiasrec.debias.inproc.multitask import MultiTask

    mt = MultiTask(tasks=[{"kind": "genre"}, {"kind": "like"}], architecture="mmoe",
                   weighting="uncertainty")
    model = BPR(strategies=[mt]).fit(train, valid=valid, rng=0)
    model.history_.epochs[-1]["loss_mt_genre"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from debiasrec.data.dataset import Dataset
from debiasrec.debias.inproc.base import STRATEGIES, InprocStrategy, StrategyConfig
from debiasrec.errors import ConfigError, DataError
from debiasrec.models.capabilities import ItemRepresentation, UserRepresentation
from debiasrec.models.heads import MLP, MMoE, SharedBottom, TextAdapter, init_parameters
from debiasrec.random import derive_seed, torch_generator
from debiasrec.training.trainer import Trainable


class _Host(Trainable, UserRepresentation, ItemRepresentation, Protocol):
    """What the task heads use of a model (checked by ``InprocStrategy.check_model``)."""

TASK_KINDS: tuple[str, ...] = ("genre", "like", "rating", "text")
#: Prefix of every loss term a MultiTask strategy returns.
TERM_PREFIX = "mt_"


class TaskSpec(BaseModel):
    """One auxiliary task (see the module docstring for the kinds)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["genre", "like", "rating", "text"]
    name: str | None = Field(None, description="task name (default: kind); term mt_<name>")
    weight: float = Field(1.0, ge=0.0, description="fixed weight w_k of the task's loss")
    tower: list[int] = Field(default_factory=lambda: [32], description="tower hidden widths")
    category: str = Field("genres", description="genre: item category column")
    like_threshold: float = Field(4.0, description="like: rating >= this counts as a like")
    text_batch: int = Field(256, ge=1, description="text: examples per step")

    @property
    def task(self) -> str:
        """The task's name (``name`` or ``kind``)."""
        return self.name or self.kind


class MultiTaskConfig(StrategyConfig):
    """Settings of :class:`MultiTask` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskSpec] = Field(min_length=1)
    architecture: Literal["separate", "shared_bottom", "mmoe"] = "shared_bottom"
    hidden: int = Field(64, ge=1, description="width of every task input and of the bottom")
    bottom: list[int] = Field(default_factory=list, description="hidden widths of f / experts")
    n_experts: int = Field(4, ge=1, description="mmoe: number of experts")
    weighting: Literal["fixed", "uncertainty"] = "fixed"
    uncertainty_groups: list[str] = Field(
        default_factory=lambda: ["rec"],
        description="uncertainty: non-task term groups that get a learned s_g too "
        "('rec': the model's own terms; add 'adversarial' with an Adversarial strategy)",
    )
    init_log_var: float = Field(0.0, description="uncertainty: initial s_k")
    gradient: Literal["sum", "pcgrad"] = "sum"
    head_lr: float | None = Field(None, gt=0, description="lr of heads (default: Trainer lr)")
    item_batch: int = Field(
        1024, ge=1, description="genre: at most this many items per step (a random subset)"
    )
    pair_batch: int = Field(
        1024, ge=1, description="like/rating: at most this many pairs per step (a random subset)"
    )
    groups: dict[str, str] = Field(
        default_factory=dict, description="term name -> task group (overrides the default rule)"
    )

    @model_validator(mode="after")
    def _unique(self) -> MultiTaskConfig:
        names = [t.task for t in self.tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"task names must be distinct; repeated: {dup} (set tasks[i].name)")
        reserved = {"rec", "adversarial"} & set(names)
        if reserved:
            raise ValueError(f"task names {sorted(reserved)} are reserved for term groups")
        return self


@dataclass(frozen=True)
class TextTaskData:
    """Training (and optional validation) examples of a ``text`` task.

    Attributes:
        features: float32 ``[n, d]`` frozen sentence-encoder features.
        labels: ``[n]`` binary labels (1 = positive sentiment).
        valid_features: optional ``[m, d]`` held-out features (accuracy logged at validation as
            ``mt_<task>_acc``).
        valid_labels: optional ``[m]`` held-out labels.
    """

    features: np.ndarray
    labels: np.ndarray
    valid_features: np.ndarray | None = None
    valid_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        f = np.asarray(self.features)
        y = np.asarray(self.labels)
        if f.ndim != 2 or len(f) == 0:
            raise DataError(f"text features must be a non-empty [n, d] array, got {f.shape}")
        if y.shape != (len(f),):
            raise DataError(f"text labels have shape {y.shape}, expected ({len(f)},)")
        if not np.isin(y, (0, 1)).all():
            raise DataError("text labels must be 0/1")
        if (self.valid_features is None) != (self.valid_labels is None):
            raise DataError("give both valid_features and valid_labels, or neither")
        if self.valid_features is not None:
            vf = np.asarray(self.valid_features)
            if vf.ndim != 2 or vf.shape[1] != f.shape[1]:
                raise DataError(f"valid_features must be [m, {f.shape[1]}], got {vf.shape}")
            if np.asarray(self.valid_labels).shape != (len(vf),):
                raise DataError("valid_labels must have one label per valid_features row")


def pcgrad_project(grads: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
    """PCGrad projection of per-task gradients (Yu et al., NeurIPS 2020, Algorithm 1).

    For each task ``i`` (rows of ``grads``), starting from ``g_i' = g_i`` and visiting the other
    tasks ``j`` in random order (fixed order without ``rng``):
    ``if g_i' . g_j < 0: g_i' <- g_i' - (g_i' . g_j / ||g_j||^2) g_j`` (``g_j`` the original
    gradients). Zero gradients are never projected on.

    Args:
        grads: ``[T, P]`` one flattened gradient per task.
        rng: generator for the visiting order (only used with more than two tasks).

    Returns:
        ``[T, P]`` the projected per-task gradients; their sum is the PCGrad update.
    """
    if grads.dim() != 2:
        raise DataError(f"grads must be [tasks, params], got shape {tuple(grads.shape)}")
    n = grads.shape[0]
    norms2 = (grads * grads).sum(1)
    out = grads.clone()
    for i in range(n):
        others = [j for j in range(n) if j != i]
        if rng is not None and len(others) > 1:
            others = [others[k] for k in rng.permutation(len(others))]
        g = out[i]
        for j in others:
            if norms2[j] <= 0:
                continue
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g = g - (dot / norms2[j]) * grads[j]
        out[i] = g
    return out


def _or_zeros(grad: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor:
    return grad if grad is not None else torch.zeros_like(param)


class _Net(torch.nn.Module):
    """All trainable parts of a MultiTask strategy (one module: registered and checkpointed)."""

    def __init__(
        self,
        cfg: MultiTaskConfig,
        dim: int,
        out_dims: dict[str, int],
        text_dims: dict[str, int],
        groups: Sequence[str],
    ) -> None:
        super().__init__()
        h = cfg.hidden
        tasks = [t.task for t in cfg.tasks]
        inputs: dict[str, torch.nn.Module] = {}
        for t in cfg.tasks:
            if t.kind == "text":
                inputs[t.task] = TextAdapter(text_dims[t.task], h)
            else:
                width = dim if t.kind == "genre" else 3 * dim
                inputs[t.task] = MLP(width, h)
        self.inputs = torch.nn.ModuleDict(inputs)
        self.shared: torch.nn.Module | None
        if cfg.architecture == "shared_bottom":
            self.shared = SharedBottom(h, h, tasks, cfg.bottom)
        elif cfg.architecture == "mmoe":
            self.shared = MMoE(h, h, tasks, cfg.n_experts, cfg.bottom)
        else:
            self.shared = None
        self.towers = torch.nn.ModuleDict(
            {t.task: MLP(h, out_dims[t.task], t.tower) for t in cfg.tasks}
        )
        self.log_vars = torch.nn.ParameterDict(
            {g: torch.nn.Parameter(torch.tensor(float(cfg.init_log_var))) for g in groups}
        )

    def represent(self, task: str, x: torch.Tensor) -> torch.Tensor:
        """Task input -> shared block -> representation fed to the task's tower."""
        z = self.inputs[task](x)
        if self.shared is None:
            return torch.relu(z)
        return self.shared(z, task)

    def forward(self, task: str, x: torch.Tensor) -> torch.Tensor:
        return self.towers[task](self.represent(task, x))


@STRATEGIES.register
class MultiTask(InprocStrategy[MultiTaskConfig]):
    """Auxiliary tasks on the recommender's embeddings, with shared-bottom or MMoE sharing,
    fixed or uncertainty loss weighting, and optional PCGrad (see the module docstring).

    Args:
        config: a :class:`MultiTaskConfig` or dict; or give its fields as keyword arguments.
        text_data: ``{task name: TextTaskData}`` for every ``text`` task.

    Raises:
        ConfigError: an invalid config (the message names the field), a text task without data.
    """

    name = "multitask"
    Config = MultiTaskConfig

    def __init__(
        self,
        config: MultiTaskConfig | dict[str, Any] | None = None,
        *,
        text_data: dict[str, TextTaskData] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self.text_data = dict(text_data or {})
        text_tasks = [t.task for t in self.config.tasks if t.kind == "text"]
        for i, t in enumerate(self.config.tasks):
            if t.kind == "text" and t.task not in self.text_data:
                raise ConfigError(
                    f"tasks.{i} (text task {t.task!r}) has no data: pass "
                    f"text_data={{{t.task!r}: TextTaskData(features, labels)}}"
                )
        extra = sorted(set(self.text_data) - set(text_tasks))
        if extra:
            raise ConfigError(f"text_data names {extra}, which are not text tasks {text_tasks}")
        self.net: _Net | None = None

    @classmethod
    def experiment_errors(cls, config: StrategyConfig) -> list[str]:
        """Text tasks need review data passed from Python."""
        if isinstance(config, MultiTaskConfig) and any(t.kind == "text" for t in config.tasks):
            return [
                "text tasks need review data passed from Python (MultiTask(text_data=...)); "
                "in a config use genre, like or rating tasks"
            ]
        return []

    @classmethod
    def requires(cls, config: StrategyConfig) -> tuple[type, ...]:
        """User representations; item representations too for genre, like and rating tasks."""
        need = (*super().requires(config), UserRepresentation)
        kinds = {t.kind for t in config.tasks} if isinstance(config, MultiTaskConfig) else set()
        if kinds & {"genre", "like", "rating"}:
            need += (ItemRepresentation,)
        return need

    # ------------------------------------------------------------------ setup
    def setup(self, model: Trainable, train: Dataset, rng: np.random.Generator) -> None:
        cfg = self.config
        self.check_model(model)
        kinds = {t.kind for t in cfg.tasks}
        # Spawning does not advance the Trainer's stream (its batches stay the same).
        try:
            self._rng = rng.spawn(1)[0]
        except (AttributeError, TypeError):  # a Generator without a seed sequence
            self._rng = np.random.default_rng(derive_seed(rng))
        with torch.no_grad():
            was = model.module.training
            model.module.eval()
            dim = int(cast(_Host, model).user_repr(torch.arange(1)).shape[1])
            model.module.train(was)
        self._n_items = train.n_items
        self._n_users = train.n_users
        out_dims: dict[str, int] = {}
        text_dims: dict[str, int] = {}
        self._genres: dict[str, torch.Tensor] = {}
        for i, t in enumerate(cfg.tasks):
            if t.kind == "genre":
                mat, names = train.item_category_matrix(t.category)  # DataError names columns
                if len(names) < 1:
                    raise DataError(f"tasks.{i}: item column {t.category!r} has no categories")
                self._genres[t.task] = torch.from_numpy(mat.toarray().astype(np.float32))
                out_dims[t.task] = len(names)
            elif t.kind in ("like", "rating"):
                if train.ratings is None:
                    raise DataError(
                        f"tasks.{i} ({t.kind}) needs ratings, but dataset {train.name!r} has none"
                    )
                out_dims[t.task] = 1
            else:
                text_dims[t.task] = int(np.asarray(self.text_data[t.task].features).shape[1])
                out_dims[t.task] = 1
        if kinds & {"like", "rating"}:
            assert train.ratings is not None
            keys = train.users.astype(np.int64) * train.n_items + train.items.astype(np.int64)
            order = np.argsort(keys, kind="stable")
            self._rkeys = keys[order]
            self._ratings = train.ratings[order].astype(np.float32)
            self._rmean = float(train.ratings.mean())
            self._pair_users = train.users.astype(np.int64)
            self._pair_items = train.items.astype(np.int64)
        self._text = {
            k: (
                torch.as_tensor(np.asarray(v.features, dtype=np.float32)),
                torch.as_tensor(np.asarray(v.labels, dtype=np.float32)),
            )
            for k, v in self.text_data.items()
        }
        self._groups = self._uncertain_groups()
        self.net = _Net(cfg, dim, out_dims, text_dims, self._groups)
        init_parameters(self.net, torch_generator(self._rng))
        with torch.no_grad():
            for p in self.net.log_vars.values():
                p.fill_(cfg.init_log_var)

    def _uncertain_groups(self) -> list[str]:
        cfg = self.config
        if cfg.weighting != "uncertainty":
            return []
        tasks = [t.task for t in cfg.tasks if t.weight > 0]
        return [*dict.fromkeys(g for g in cfg.uncertainty_groups if g not in tasks), *tasks]

    def modules(self) -> list[torch.nn.Module]:
        return [] if self.net is None else [self.net]

    def param_groups(self) -> list[dict[str, Any]]:
        if self.net is None:
            return []
        group: dict[str, Any] = {"params": [p for p in self.net.parameters() if p.requires_grad]}
        if self.config.head_lr is not None:
            group["lr"] = self.config.head_lr
        return [group]

    # ------------------------------------------------------------------ grouping
    def group_of(self, term: str) -> str:
        """Task group of a loss term: ``groups`` override, own ``mt_<task>``, ``adv_*``, else rec."""
        if term in self.config.groups:
            return self.config.groups[term]
        if self._owns(term):
            return term[len(TERM_PREFIX) :]
        if term.startswith("adv_"):
            return "adversarial"
        return "rec"

    def _owns(self, term: str) -> bool:
        return term.startswith(TERM_PREFIX) and term[len(TERM_PREFIX) :] in self._spec

    @property
    def _spec(self) -> dict[str, TaskSpec]:
        return {t.task: t for t in self.config.tasks}

    # ------------------------------------------------------------------ per step
    def _net(self) -> _Net:
        if self.net is None:
            raise ConfigError("MultiTask is used before setup(); pass it to a model's strategies")
        return self.net

    def _items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cap = self.config.item_batch
        if "pos" in batch:
            parts = [batch["pos"], batch["neg"]] if "neg" in batch else [batch["pos"]]
            items = torch.unique(torch.cat(parts))
            if len(items) > cap:
                items = items[torch.from_numpy(self._rng.choice(len(items), cap, replace=False))]
            return items
        n = min(cap, self._n_items)
        return torch.from_numpy(self._rng.choice(self._n_items, size=n, replace=False))

    def _pairs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cap = self.config.pair_batch
        if "users" in batch and "pos" in batch:
            users, items = batch["users"].long(), batch["pos"].long()
            if len(users) > cap:
                keep = torch.from_numpy(self._rng.choice(len(users), cap, replace=False))
                users, items = users[keep], items[keep]
            return users, items
        idx = self._rng.integers(0, len(self._pair_users), size=cap)
        return torch.from_numpy(self._pair_users[idx]), torch.from_numpy(self._pair_items[idx])

    def _lookup_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users.numpy().astype(np.int64) * self._n_items + items.numpy().astype(np.int64)
        pos = np.searchsorted(self._rkeys, keys)
        pos = np.minimum(pos, len(self._rkeys) - 1)
        if not np.array_equal(self._rkeys[pos], keys):
            raise DataError("like/rating task: a batch pair is not a rated training interaction")
        return torch.from_numpy(self._ratings[pos])

    def loss_terms(
        self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor]:
        net = self._net()
        terms: dict[str, torch.Tensor] = {}
        pair_x: torch.Tensor | None = None
        ratings: torch.Tensor | None = None
        for t in self.config.tasks:
            if t.kind == "genre":
                items = self._items(batch)
                q = cast(_Host, model).item_repr(items)
                logits = net(t.task, q)
                loss = F.binary_cross_entropy_with_logits(logits, self._genres[t.task][items])
            elif t.kind in ("like", "rating"):
                if pair_x is None:
                    users, items = self._pairs(batch)
                    u = cast(_Host, model).user_repr(users)
                    q = cast(_Host, model).item_repr(items)
                    pair_x = torch.cat([u, q, u * q], dim=1)
                    ratings = self._lookup_ratings(users, items)
                assert ratings is not None
                out = net(t.task, pair_x).squeeze(1)
                if t.kind == "like":
                    target = (ratings >= t.like_threshold).float()
                    loss = F.binary_cross_entropy_with_logits(out, target)
                else:
                    loss = F.mse_loss(out, ratings - self._rmean)
            else:
                feats, labels = self._text[t.task]
                n = min(t.text_batch, len(labels))
                idx = torch.from_numpy(self._rng.choice(len(labels), size=n, replace=False))
                out = net(t.task, feats[idx]).squeeze(1)
                loss = F.binary_cross_entropy_with_logits(out, labels[idx])
            terms[TERM_PREFIX + t.task] = loss
        return terms

    def combine_terms(
        self, weighted: dict[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor]:
        """Apply the task weights ``w_k`` and, with uncertainty weighting, ``exp(-s_g) L_g + s_g``."""
        spec = self._spec
        out = {
            k: v * spec[k[len(TERM_PREFIX) :]].weight if self._owns(k) else v
            for k, v in weighted.items()
        }
        if self.config.weighting != "uncertainty":
            return out
        net = self._net()
        seen: set[str] = set()
        for k in list(out):
            g = self.group_of(k)
            if g not in net.log_vars:
                continue
            s = net.log_vars[g]
            out[k] = torch.exp(-s) * out[k]
            if g not in seen:  # the regulariser s_g once per group
                out[k] = out[k] + s
                seen.add(g)
        return out

    def log_variances(self) -> dict[str, float]:
        """Current learned log-variances ``s_g`` (uncertainty weighting), by task group."""
        if self.net is None:
            return {}
        return {g: float(p.detach()) for g, p in self.net.log_vars.items()}

    def backward(
        self, weighted: dict[str, torch.Tensor], params: Sequence[torch.nn.Parameter]
    ) -> bool:
        """PCGrad backward over task groups (``gradient="pcgrad"``); else leave it to the Trainer."""
        if self.config.gradient != "pcgrad":
            return False
        by_group: dict[str, torch.Tensor] = {}
        for k, v in weighted.items():
            g = self.group_of(k)
            by_group[g] = by_group[g] + v if g in by_group else v
        params = list(params)
        names = list(by_group)
        per: list[tuple[torch.Tensor | None, ...]] = []
        for i, g in enumerate(names):
            loss = by_group[g]
            if not loss.requires_grad:
                per.append((None,) * len(params))
                continue
            grads: tuple[torch.Tensor | None, ...] = torch.autograd.grad(
                loss, params, retain_graph=i < len(names) - 1, allow_unused=True
            )
            # Row-sparse table gradients (train.row_sparse) are projected as dense vectors.
            per.append(tuple(g.to_dense() if g is not None and g.is_sparse else g for g in grads))
        shared = [j for j in range(len(params)) if sum(p[j] is not None for p in per) >= 2]
        for j in range(len(params)):
            if j in shared:
                continue
            present = [t for p in per if (t := p[j]) is not None]
            params[j].grad = None if not present else torch.stack(present).sum(0)
        if shared:
            flat = torch.stack(
                [
                    torch.cat(
                        [
                            _or_zeros(p[j], params[j]).reshape(-1)
                            for j in shared
                        ]
                    )
                    for p in per
                ]
            )
            update = pcgrad_project(flat, self._rng).sum(0)
            pos = 0
            for j in shared:
                n = params[j].numel()
                params[j].grad = update[pos : pos + n].view_as(params[j]).clone()
                pos += n
        return True

    # ------------------------------------------------------------------ inference helpers
    def predict_text(self, task: str, features: np.ndarray) -> np.ndarray:
        """Positive-sentiment probabilities of a text task's head for encoder ``features``."""
        net = self._net()
        if task not in self.text_data:
            raise ConfigError(f"{task!r} is not a text task; text tasks: {sorted(self.text_data)}")
        was = net.training
        net.eval()
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(features, dtype=np.float32))
            p = torch.sigmoid(net(task, x).squeeze(1)).numpy()
        net.train(was)
        return p.astype(np.float64)

    def gate_weights(self, task: str, x: torch.Tensor) -> torch.Tensor:
        """MMoE gate weights ``g_task(x)`` ``[n, E]`` for task inputs ``x`` (rows sum to 1)."""
        net = self._net()
        if not isinstance(net.shared, MMoE):
            raise ConfigError("gate_weights needs architecture='mmoe'")
        with torch.no_grad():
            return net.shared.gate(net.inputs[task](x), task)

    # ------------------------------------------------------------------ validation, checkpoints
    def validation_metrics(self, model: Trainable, valid_users: np.ndarray) -> dict[str, float]:
        out = {f"mt_logvar_{g}": v for g, v in self.log_variances().items()}
        for task, data in self.text_data.items():
            if data.valid_features is not None and data.valid_labels is not None:
                p = self.predict_text(task, data.valid_features)
                acc = float(np.mean((p >= 0.5) == (np.asarray(data.valid_labels) == 1)))
                out[f"mt_{task}_acc"] = acc
        return out

    def checkpoint_state(self) -> dict[str, Any]:
        """The sampler's generator state (heads are in :meth:`modules`)."""
        return {"rng": self._rng.bit_generator.state}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state:
            self._rng.bit_generator.state = state["rng"]
