"""Group distributionally robust training over user groups (Group DRO).

Sagawa, Koh, Hashimoto & Liang, "Distributionally Robust Neural Networks for Group Shifts: On
the Importance of Regularization for Worst-Case Generalization", ICLR 2020 (Algorithm 1), applied
to the users of a recommender: the model minimises the worst group's expected loss
``max_g E[l | g]`` through its online dual. With group weights ``q`` on the simplex, each
training step

1. measures the mean pairwise loss of each user group in the batch,
   ``l_g = mean_{(u, i, j) in batch, u in g} -log sigmoid(s_ui - s_uj)`` (plus Sagawa's
   generalisation adjustment ``C / sqrt(n_g)``, ``n_g`` the group's training interactions);
2. takes an exponentiated-gradient step ``q_g <- q_g * exp(eta * l_g)``, renormalised over the
   groups in the batch (groups absent from the batch keep their weight);
3. trains on ``sum_g q_g E[l | g]`` by importance weighting: every row of a user in group ``g``
   gets the weight ``w_r = q_g / p_g`` on the model's own weighted loss (``batch["weight"]``,
   which BPR puts on its BPR and L2 terms), times any weight already there, where ``p_g`` is the
   group's share of the labelled training interactions; so the batch loss is an unbiased
   estimate of ``sum_g q_g E[l | g]`` (the mean over a batch drawn with shares ``p_g``). Rows of
   users without a group label keep weight 1.

``q`` starts at the groups' shares of the training interactions (``init = "proportional"``:
``w = 1``, so ``eta = 0`` is ordinary training) or uniform (``"uniform"``: group-balanced from the start, as in
the paper). The groups are a sensitive attribute's (used in training only: the trained model
scores every user the same way, without the attribute) or activity levels (``activity = true``:
no sensitive attribute). ``q`` is logged at every validation as ``dro_q_<group>``.

Needs a model that scores pairs (``pair_scores``), trains on pairwise batches and honours
per-row weights (BPR).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.debias.inproc._groups import UserGroupsConfig, user_groups
from debiasrec.debias.inproc.base import STRATEGIES, InprocStrategy, StrategyConfig
from debiasrec.errors import ConfigError
from debiasrec.models.capabilities import PairScorer, PairwiseTraining, WeightedTraining
from debiasrec.training.distributed import all_sum
from debiasrec.training.distributed import current as current_dist
from debiasrec.training.trainer import Trainable


class _Host(Trainable, PairScorer, Protocol):
    """What Group DRO uses of a model."""


class GroupDROConfig(UserGroupsConfig):
    """Settings of :class:`GroupDRO` (see the module docstring)."""

    eta: float = Field(0.01, ge=0.0, description="step size of the exponentiated-gradient update")
    adjustment: float = Field(
        0.0, ge=0.0, description="C of the generalisation adjustment C / sqrt(n_g)"
    )
    init: Literal["proportional", "uniform"] = Field(
        "proportional", description="initial q: interaction shares (eta=0: plain training) or 1/G"
    )


def dro_update(
    q: torch.Tensor, losses: torch.Tensor, present: torch.Tensor, eta: float
) -> torch.Tensor:
    """One exponentiated-gradient step of Group DRO: ``q_g * exp(eta * l_g)`` for the groups
    ``present`` in the batch, renormalised so that the present groups keep their total mass."""
    out = q.clone()
    if not bool(present.any()):
        return out
    mass = q[present].sum()
    step = q[present] * torch.exp(eta * (losses[present] - losses[present].max()))
    out[present] = step / step.sum() * mass
    return out


def dro_row_weights(q: torch.Tensor, labels: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """Per-row importance weights ``q_g / p_g`` (``share[g] = p_g``, the group's share of the
    labelled training interactions); unlabelled rows (``-1``) and groups without training rows
    get 1."""
    ratio = torch.where(share > 0, q / share.clamp_min(1e-30), torch.ones_like(q))
    safe = labels.clamp_min(0)
    return torch.where(labels >= 0, ratio[safe], torch.ones_like(ratio[safe]))


@STRATEGIES.register
class GroupDRO(InprocStrategy[GroupDROConfig]):
    """Online Group DRO over user groups (Sagawa et al., ICLR 2020); see the module docstring.

    Example::

        model = BPR(strategies=[GroupDRO(attr="gender", eta=0.01)]).fit(train, valid=valid)
        model.history_.epochs[-1]["dro_q_F"]
    """

    name = "group_dro"
    Config = GroupDROConfig
    sweep_key = "eta"

    @classmethod
    def requires(cls, config: StrategyConfig) -> tuple[type, ...]:
        """Pair scores, pairwise batches and per-row loss weights."""
        return (*super().requires(config), PairScorer, PairwiseTraining, WeightedTraining)

    def setup(self, model: Trainable, train: Dataset, rng: np.random.Generator) -> None:
        self.check_model(model)
        cfg = self.config
        cat = user_groups(train, cfg)
        self.labels_ = [str(c) for c in cat.categories]
        codes = np.asarray(cat.codes, dtype=np.int64)
        self._codes = torch.from_numpy(codes)
        n_g = np.bincount(codes[train.users][codes[train.users] >= 0], minlength=len(self.labels_))
        n_g = n_g.astype(np.float64)
        self._adjust = torch.tensor(
            np.where(n_g > 0, cfg.adjustment / np.sqrt(np.maximum(n_g, 1.0)), 0.0),
            dtype=torch.float64,
        )
        share = n_g / max(n_g.sum(), 1.0)
        self._share = torch.tensor(share, dtype=torch.float64)
        q = (n_g > 0) / max((n_g > 0).sum(), 1) if cfg.init == "uniform" else share
        self.q = torch.tensor(q, dtype=torch.float64)

    def before_step(self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int) -> None:
        missing = [k for k in ("users", "pos", "neg") if k not in batch]
        if missing:
            raise ConfigError(
                f"group_dro needs pairwise batches with users/pos/neg; missing {missing}"
            )
        users = batch["users"]
        lab = self._codes[users]
        w0 = batch.get("weight")
        base = torch.ones(len(users), dtype=torch.float64) if w0 is None else w0.double()
        keep = lab >= 0
        n_cls = len(self.labels_)
        with torch.no_grad():
            s = cast(_Host, model).pair_scores(
                torch.cat([users, users]), torch.cat([batch["pos"], batch["neg"]])
            )
            sp_, sn_ = s.chunk(2)
            loss = F.softplus(-(sp_ - sn_)).double()
        cnt = torch.zeros(n_cls, dtype=torch.float64).index_add_(0, lab[keep], base[keep])
        tot = torch.zeros(n_cls, dtype=torch.float64).index_add_(0, lab[keep], (base * loss)[keep])
        ctx = current_dist()
        if ctx.active:  # every rank takes the same step on the global batch's group losses
            summed = all_sum(
                {**{f"c{g}": float(cnt[g]) for g in range(n_cls)},
                 **{f"t{g}": float(tot[g]) for g in range(n_cls)}},
                ctx,
            )  # fmt: skip
            cnt = torch.tensor([summed[f"c{g}"] for g in range(n_cls)], dtype=torch.float64)
            tot = torch.tensor([summed[f"t{g}"] for g in range(n_cls)], dtype=torch.float64)
        present = cnt > 0
        group_loss = tot / cnt.clamp_min(1e-30) + self._adjust
        self.q = dro_update(self.q, group_loss, present, self.config.eta)
        w = dro_row_weights(self.q, lab, self._share)
        if w0 is None and bool((w == 1.0).all()):
            return  # nothing to reweight: leave the batch (and the model's loss path) as is
        batch["weight"] = (base * w).to(torch.float32)

    def validation_metrics(self, model: Trainable, valid_users: np.ndarray) -> dict[str, float]:
        """The current group weights ``q`` (``dro_q_<group>``)."""
        return {f"dro_q_{g}": float(v) for g, v in zip(self.labels_, self.q, strict=True)}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"q": self.q.clone()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state:
            self.q = state["q"].to(torch.float64)


__all__ = ["GroupDRO", "GroupDROConfig", "dro_row_weights", "dro_update"]
