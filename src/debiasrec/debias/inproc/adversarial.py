"""Adversarial removal of sensitive attributes from user representations.

A :class:`Strategy` for the one :class:`~debiasrec.training.trainer.Trainer`: discriminators
``D_k`` try to predict each sensitive attribute ``k`` from the user representation
``z_u = model.user_repr(u)``; the recommender (the "generator") is trained to keep its ranking
loss low while making the discriminators fail:

    min_theta  L_rec(theta) - lambda(t) * sum_k CE(D_k(z_u), a_{u,k})
    min_D      sum_k CE(D_k(z_u), a_{u,k})

(Goodfellow et al., NeurIPS 2014; applied to representations by Edwards & Storkey, ICLR 2016,
and to recommender embeddings by Beutel et al., FAT/ML 2017, and Bose & Hamilton, ICML 2019).

Two update schemes:

* ``mode="grl"`` -- gradient reversal (Ganin & Lempitsky, ICML 2015): one backward pass through
  ``D(GRL_lambda(z))``; the layer is the identity forward and multiplies gradients by
  ``-lambda`` backward, so the discriminator descends its loss while the model ascends it.
* ``mode="alternating"`` -- the model takes a step on ``L_rec + lambda * L_gen(D(z))`` with the
  discriminators fixed, then the discriminators take ``adv_steps`` steps on the *updated*,
  detached representations. ``L_gen`` is ``-CE`` (``generator_loss="neg_ce"``) or the
  cross-entropy to the output of an uninformative discriminator (``"prior"``: uniform with the
  class-balanced loss, else the class prior), which is bounded and asks for uninformative
  rather than inverted predictions (``-CE`` is maximised by *inverting* the discriminator, which
  keeps the attribute recoverable by a fresh probe).

Options: an adversary strength schedule (``start_epoch``; linear ``warmup_epochs``), several
independently initialised adversaries per attribute (``n_adversaries``: the model must fool the
ensemble mean loss), class-balanced discriminator losses, and multi-attribute removal with
**compositional filters** (``filters=True``; Bose & Hamilton 2019): one filter per attribute is
installed on the model's user representation (:mod:`debiasrec.models.filters`); each batch trains
a random non-empty subset ``S`` of filters, composed by averaging, against the discriminators of
the attributes in ``S``. At inference any subset of filters can be applied
(``model.user_filter.use(["gender"])``) without knowing anyone's attributes.

Labels come from ``train.user_groups(attr)``; users with a missing label are left out of that
attribute's adversarial loss. Attributes are used in training only.

Model selection: :meth:`Adversarial.validation_metrics` reports ``leak_auc_<attr>`` -- the
cross-validated AUC (macro one-vs-rest AUC for multi-class attributes) of a *fresh* probe from
:func:`debiasrec.metrics.leakage.leakage` on the current, frozen representations of all users --
so ``TrainerConfig(select_constraint={"leak_auc_gender": 0.55})`` selects the best validation
NDCG among epochs whose leakage meets the bound (see
:func:`debiasrec.training.trainer.selection_key`). The probe sees the same users whose leakage
is reported at the end, so a selected model's final leakage is slightly optimistic; report it on
a probe with a different seed (as ``benchmarks/adversarial_ml100k.py`` does).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from debiasrec.data.dataset import Dataset
from debiasrec.debias.inproc.base import STRATEGIES, InprocStrategy, StrategyConfig
from debiasrec.errors import ConfigError
from debiasrec.metrics.leakage import leakage
from debiasrec.models.capabilities import UserFilterHost, UserRepresentation
from debiasrec.random import derive_seed, np_rng
from debiasrec.training.distributed import current as current_dist
from debiasrec.training.distributed import sync_grads
from debiasrec.training.trainer import Trainable


class _Host(Trainable, UserRepresentation, Protocol):
    """What the adversary uses of a model (checked by ``InprocStrategy.check_model``)."""


class _FilterHost(_Host, UserFilterHost, Protocol):
    pass


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = float(lam)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Gradient reversal layer: identity forward, gradient times ``-lam`` backward."""
    return _GradReverse.apply(x, lam)


def _mlp(dim: int, hidden: int, layers: int, n_out: int) -> torch.nn.Module:
    mods: list[torch.nn.Module] = []
    width = dim
    for _ in range(layers):
        mods += [torch.nn.Linear(width, hidden), torch.nn.LeakyReLU(0.2)]
        width = hidden
    mods.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*mods)


class AdversarialConfig(StrategyConfig):
    """Settings of :class:`Adversarial` (see the module docstring)."""

    attrs: list[str] = Field(min_length=1, description="sensitive attributes to remove")
    strength: float = Field(0.1, ge=0.0, description="lambda: weight of the adversarial term")
    mode: Literal["grl", "alternating"] = "alternating"
    generator_loss: Literal["neg_ce", "prior"] = "prior"
    n_adversaries: int = Field(1, ge=1, description="independent discriminators per attribute")
    hidden: int = Field(64, ge=1)
    layers: int = Field(0, ge=0, description="hidden layers of a discriminator (0 = linear)")
    adv_lr: float = Field(1e-2, gt=0)
    adv_steps: int = Field(5, ge=1, description="discriminator updates per batch")
    balanced: bool = Field(True, description="class-balanced discriminator cross-entropy")
    start_epoch: int = Field(0, ge=0, description="model ignores the adversary before this epoch")
    warmup_epochs: int = Field(0, ge=0, description="linear ramp of lambda after start_epoch")
    filters: bool = Field(False, description="compositional per-attribute filters")
    filter_hidden: int = Field(64, ge=1)
    sample_subsets: bool = Field(True, description="random filter subsets per batch (filters)")
    users: Literal["batch", "uniform"] = "batch"
    batch_users: int = Field(1024, ge=1, description="users per step with users='uniform'")
    validate_leakage: bool = Field(True, description="report leak_auc_<attr> at validation")
    validate_probe: Literal["logreg", "mlp"] = "logreg"
    validate_folds: int = Field(3, ge=2)

    @field_validator("attrs")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"attrs must be distinct, got {v}")
        return v


@STRATEGIES.register
class Adversarial(InprocStrategy[AdversarialConfig]):
    """Adversarial removal of sensitive attributes from user representations.

    Example::

        from debiasrec.models import BPR
        from debiasrec.debias.inproc import Adversarial

        model = BPR(strategies=[Adversarial(attrs=["gender"], strength=1.0)])
        model.fit(train, valid=valid, rng=0)
    """

    name = "adversarial"
    Config = AdversarialConfig
    sweep_key = "strength"

    def __init__(self, config: AdversarialConfig | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.discriminators = torch.nn.ModuleDict()

    @classmethod
    def requires(cls, config: StrategyConfig) -> tuple[type, ...]:
        """User representations; a user-filter host too with ``filters = true``."""
        need = (*super().requires(config), UserRepresentation)
        if isinstance(config, AdversarialConfig) and config.filters:
            need += (UserFilterHost,)
        return need

    # ------------------------------------------------------------------ setup
    def setup(self, model: Trainable, train: Dataset, rng: np.random.Generator) -> None:
        cfg = self.config
        self.check_model(model)
        host = cast(_FilterHost, model)
        self._rng = np.random.default_rng(derive_seed(rng))
        self._labels: dict[str, torch.Tensor] = {}
        self._cats: dict[str, Any] = {}
        self._weights: dict[str, torch.Tensor | None] = {}
        self._prior: dict[str, torch.Tensor] = {}
        for attr in cfg.attrs:
            cat = train.user_groups(attr)  # DataError lists the known attributes
            codes = np.asarray(cat.codes, dtype=np.int64)
            n_cls = len(cat.categories)
            counts = np.bincount(codes[codes >= 0], minlength=n_cls).astype(np.float64)
            if (counts > 0).sum() < 2:
                raise ConfigError(
                    f"attribute {attr!r} has fewer than two groups with labelled users; "
                    "nothing to remove"
                )
            self._labels[attr] = torch.from_numpy(codes)
            self._cats[attr] = cat
            w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / (counts > 0).sum(), 0)
            self._weights[attr] = torch.tensor(w, dtype=torch.float32) if cfg.balanced else None
            # What an uninformative discriminator outputs: uniform under the balanced loss,
            # the class prior otherwise (the target of generator_loss="prior").
            target = (counts > 0) / (counts > 0).sum() if cfg.balanced else counts / counts.sum()
            self._prior[attr] = torch.tensor(target, dtype=torch.float32)
        labelled = np.zeros(train.n_users, dtype=bool)
        for t in self._labels.values():
            labelled |= t.numpy() >= 0
        self._labelled = np.flatnonzero(labelled)
        self._n_users = train.n_users

        with torch.no_grad():
            was = model.module.training
            model.module.eval()
            if getattr(model, "user_filter", None) is not None:
                host.set_user_filter(None)
            dim = int(host.user_repr(torch.arange(1)).shape[1])
            model.module.train(was)
        self._filter = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(rng))
            if cfg.filters:
                from debiasrec.models.filters import CompositionalFilter

                self._filter = CompositionalFilter(cfg.attrs, dim, cfg.filter_hidden)
                host.set_user_filter(self._filter)
            self.discriminators = torch.nn.ModuleDict(
                {
                    attr: torch.nn.ModuleList(
                        _mlp(dim, cfg.hidden, cfg.layers, len(self._cats[attr].categories))
                        for _ in range(cfg.n_adversaries)
                    )
                    for attr in cfg.attrs
                }
            )
        self._opt = torch.optim.Adam(self.discriminators.parameters(), lr=cfg.adv_lr)
        self._active: tuple[str, ...] = tuple(cfg.attrs)
        self._cache: tuple[torch.Tensor, tuple[str, ...]] | None = None

    def modules(self) -> list[torch.nn.Module]:
        return [self.discriminators]

    # ------------------------------------------------------------------ schedule
    def strength_at(self, epoch: int) -> float:
        """``lambda(epoch)``: 0 before ``start_epoch``, then a linear ramp over ``warmup_epochs``."""
        cfg = self.config
        if epoch < cfg.start_epoch:
            return 0.0
        if cfg.warmup_epochs == 0:
            return cfg.strength
        return cfg.strength * min(1.0, (epoch - cfg.start_epoch + 1) / cfg.warmup_epochs)

    # ------------------------------------------------------------------ per step
    def before_step(self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int) -> None:
        cfg = self.config
        active = tuple(cfg.attrs)
        if self._filter is not None and cfg.sample_subsets and len(cfg.attrs) > 1:
            while True:  # each attribute with probability 1/2, non-empty (Bose & Hamilton)
                pick = self._rng.random(len(cfg.attrs)) < 0.5
                if pick.any():
                    break
            active = tuple(a for a, p in zip(cfg.attrs, pick, strict=True) if p)
            self._filter.set_active(active)
        self._active = active

    def _step_users(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.config.users == "batch" and "users" in batch:
            users = torch.unique(batch["users"])
            keep = np.isin(users.numpy(), self._labelled)
            return users[torch.from_numpy(keep)]
        n = min(self.config.batch_users, len(self._labelled))
        return torch.from_numpy(self._rng.choice(self._labelled, size=n, replace=False))

    def _disc_loss(self, attr: str, z: torch.Tensor, users: torch.Tensor) -> torch.Tensor | None:
        y = self._labels[attr][users]
        mask = y >= 0
        if int(mask.sum()) < 2:
            return None
        zk, yk = z[mask], y[mask]
        losses = [
            F.cross_entropy(d(zk), yk, weight=self._weights[attr])
            for d in cast(torch.nn.ModuleList, self.discriminators[attr])
        ]
        return torch.stack(losses).mean()

    def _gen_loss(self, attr: str, z: torch.Tensor, users: torch.Tensor) -> torch.Tensor | None:
        if self.config.generator_loss == "neg_ce":
            loss = self._disc_loss(attr, z, users)
            return None if loss is None else -loss
        y = self._labels[attr][users]
        mask = y >= 0
        if int(mask.sum()) < 2:
            return None
        prior = self._prior[attr]
        losses = [
            -(F.log_softmax(d(z[mask]), dim=1) * prior).sum(1).mean()
            for d in cast(torch.nn.ModuleList, self.discriminators[attr])
        ]
        return torch.stack(losses).mean()

    def loss_terms(
        self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        users = self._step_users(batch)
        if len(users) < 2:
            self._cache = None
            return {}
        z = cast(_Host, model).user_repr(users)
        self._cache = (users, self._active)
        lam = self.strength_at(epoch)
        terms: dict[str, torch.Tensor] = {}
        for attr in self._active:
            if cfg.mode == "grl":
                loss = self._disc_loss(attr, grad_reverse(z, lam), users)
            else:
                if lam == 0.0:
                    continue
                loss = self._gen_loss(attr, z, users)
                loss = None if loss is None else lam * loss
            if loss is not None:
                terms[f"adv_{attr}"] = loss
        return terms

    def after_step(self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int) -> None:
        cfg = self.config
        steps = cfg.adv_steps
        # Under torchrun every rank takes the same discriminator steps, even one whose shard of
        # the batch had too few labelled users; gradients are averaged over ranks first.
        distributed = current_dist().active
        run = self._cache is not None or distributed
        if cfg.mode == "grl" and run:
            # The joint backward already gave the discriminators their (un-reversed) gradients
            # (averaged over ranks by the Trainer).
            if any(p.grad is not None for p in self.discriminators.parameters()):
                self._opt.step()
            steps -= 1
        self._opt.zero_grad(set_to_none=True)
        if run and steps > 0:
            z = None
            if self._cache is not None:
                users, active = self._cache
                with torch.no_grad():
                    z = cast(_Host, model).user_repr(users)
            for _ in range(steps):
                self._opt.zero_grad(set_to_none=True)
                if z is not None:
                    losses = [self._disc_loss(a, z, users) for a in active]
                    total = sum(v for v in losses if v is not None)
                    if isinstance(total, torch.Tensor):
                        total.backward()
                sync_grads(self.discriminators.parameters())
                if any(p.grad is not None for p in self.discriminators.parameters()):
                    self._opt.step()
            self._opt.zero_grad(set_to_none=True)
        self._cache = None
        if self._filter is not None:
            self._filter.set_active(None)  # between steps (validation, inference): all filters
        self._active = tuple(cfg.attrs)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        """The discriminators' optimizer and the subset/user sampler's generator state."""
        return {"opt": self._opt.state_dict(), "rng": self._rng.bit_generator.state}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state:
            self._opt.load_state_dict(state["opt"])
            self._rng.bit_generator.state = state["rng"]

    # ------------------------------------------------------------------ validation
    def validation_metrics(self, model: Trainable, valid_users: np.ndarray) -> dict[str, float]:
        cfg = self.config
        if not cfg.validate_leakage:
            return {}
        with torch.no_grad():
            z = cast(_Host, model).user_repr(torch.arange(self._n_users)).numpy()
        out: dict[str, float] = {}
        for i, attr in enumerate(cfg.attrs):
            res = leakage(
                z,
                self._cats[attr],
                probe=cfg.validate_probe,
                folds=cfg.validate_folds,
                rng=np_rng(1000 + i),
            )
            out[f"leak_auc_{attr}"] = float(res["auc"])
        return out
