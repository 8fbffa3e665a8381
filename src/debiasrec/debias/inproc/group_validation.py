"""Per-group validation accuracy for model selection, and validation-driven group reweighting.

:class:`GroupValidation` measures, at every validation of the one Trainer, the NDCG@k of each
user group on the validation interactions (full ranking, training items masked; groups: a
sensitive attribute's, or activity levels) and reports

* ``valid_ndcg@K_<grouping>=<group>``: each group's mean;
* ``valid_worst_ndcg@K_<grouping>``: the lowest group mean (groups with at least ``min_users``
  validation users);
* ``valid_gap_ndcg@K_<grouping>``: highest minus lowest group mean.

These are validation numbers like any other: ``TrainerConfig(select_metric=
"valid_worst_ndcg@10_gender")`` selects the epoch (and early-stops) on the worst group's accuracy
-- worst-group model selection, the selection rule Sagawa et al. (ICLR 2020) found necessary for
worst-group generalisation -- and ``select_constraint={"valid_gap_ndcg@10_gender": 0.02}`` selects
the most accurate epoch whose validation gap meets a bound.

With ``reweight_eta > 0`` the strategy also *raises the under-served groups during training*:
after each validation the loss weight of group ``g`` is updated multiplicatively from its
validation shortfall,

    w_g <- w_g * exp(reweight_eta * (m - m_g) / m),   m = mean over groups of m_g,

(the multiplicative-weights / Hedge update, Arora, Hazan & Kale, Theory of Computing 2012, driven
by held-out utility as in validation-based group reweighting; cf. the adversarially reweighted
learning of Lahoti et al., "Fairness without Demographics through Adversarially Reweighted
Learning", NeurIPS 2020, which reweights by training loss instead), clipped to
``[1 / max_weight, max_weight]`` and rescaled so that the mean weight over training interactions
is 1. Until the first validation all weights are 1. Every training row of a user in ``g`` is
multiplied by ``w_g`` (``batch["weight"]``, which BPR puts on its loss); the weights are logged as
``group_weight_<grouping>=<group>``. The attribute is used in training and validation only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.debias.inproc._groups import UserGroupsConfig, user_groups
from debiasrec.debias.inproc.base import STRATEGIES, InprocStrategy, StrategyConfig
from debiasrec.errors import ConfigError
from debiasrec.metrics.ranking import ranking_metrics
from debiasrec.metrics.topk import full_ranking_topk
from debiasrec.models.capabilities import WeightedTraining
from debiasrec.training.distributed import current as current_dist
from debiasrec.training.trainer import Trainable


class GroupValidationConfig(UserGroupsConfig):
    """Settings of :class:`GroupValidation` (see the module docstring)."""

    k: int = Field(10, ge=1, description="cut-off of the per-group validation NDCG")
    min_users: int = Field(5, ge=1, description="groups with fewer validation users are ignored")
    reweight_eta: float = Field(
        0.0, ge=0.0, description="step of the multiplicative group-weight update (0: report only)"
    )
    max_weight: float = Field(10.0, ge=1.0, description="weights are clipped to [1/max, max]")


def group_means(
    values: np.ndarray, codes: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the finite ``values`` per group code (NaN for an empty group) and the counts."""
    ok = np.isfinite(values) & (codes >= 0)
    cnt = np.bincount(codes[ok], minlength=n_groups)
    tot = np.bincount(codes[ok], weights=values[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan), cnt


def multiplicative_weights(
    weights: np.ndarray,
    utility: np.ndarray,
    eta: float,
    share: np.ndarray,
    max_weight: float,
) -> np.ndarray:
    """One update ``w_g * exp(eta * (m - m_g) / m)`` over groups with a finite utility ``m_g``
    (``m`` their mean), clipped to ``[1/max_weight, max_weight]`` and rescaled so that
    ``sum_g share_g * w_g = 1`` (``share``: the groups' shares of the training interactions)."""
    w = np.asarray(weights, dtype=np.float64).copy()
    u = np.asarray(utility, dtype=np.float64)
    ok = np.isfinite(u)
    if ok.sum() >= 2:
        m = float(u[ok].mean())
        if m > 0:
            w[ok] = w[ok] * np.exp(eta * (m - u[ok]) / m)
    w = np.clip(w, 1.0 / max_weight, max_weight)
    scale = float(np.sum(share * w))
    return w / scale if scale > 0 else w


@STRATEGIES.register
class GroupValidation(InprocStrategy[GroupValidationConfig]):
    """Per-group validation NDCG (for worst-group selection) and, with ``reweight_eta > 0``,
    validation-driven group loss weights; see the module docstring.

    Example::

        sel = {"select_metric": "valid_worst_ndcg@10_gender"}
        model = BPR(train=sel, strategies=[GroupValidation(attr="gender")])
    """

    name = "group_validation"
    Config = GroupValidationConfig
    sweep_key = "reweight_eta"

    @classmethod
    def requires(cls, config: StrategyConfig) -> tuple[type, ...]:
        """A model trained by the Trainer; one honouring row weights when reweighting."""
        need = super().requires(config)
        if isinstance(config, GroupValidationConfig) and config.reweight_eta > 0:
            need += (WeightedTraining,)
        return need

    @property
    def prefix(self) -> str:
        return f"ndcg@{self.config.k}_{self.config.grouping}"

    def setup(self, model: Trainable, train: Dataset, rng: np.random.Generator) -> None:
        self.check_model(model)
        cfg = self.config
        if cfg.reweight_eta > 0 and current_dist().active:
            raise ConfigError(
                "group_validation with reweight_eta > 0 updates weights from validation on one "
                "process; it does not support data-parallel training (torchrun)"
            )
        cat = user_groups(train, cfg)
        self.labels_ = [str(c) for c in cat.categories]
        self._codes = np.asarray(cat.codes, dtype=np.int64)
        self._codes_t = torch.from_numpy(self._codes)
        rows = self._codes[train.users]
        n = np.bincount(rows[rows >= 0], minlength=len(self.labels_)).astype(np.float64)
        self._share = n / max(n.sum(), 1.0)
        self.weights_ = np.ones(len(self.labels_))
        self._valid: tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray] | None = None
        self._observed: tuple[np.ndarray, np.ndarray] | None = None

    def setup_validation(self, model: Trainable, train: Dataset, valid: Dataset) -> None:
        truth = valid.csr()
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        self._valid = (train.csr(), truth[users], users)
        self._observed = None

    def observe_validation(self, per_user: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        # the Trainer's validation ranks the same users (those with validation items) with the
        # training items masked: when its metric is this one, reuse its per-user values
        self._observed = per_user.get(f"ndcg@{self.config.k}")

    def before_step(self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int) -> None:
        if self.config.reweight_eta <= 0 or "users" not in batch:
            return
        lab = self._codes_t[batch["users"]]
        w = torch.from_numpy(self.weights_.astype(np.float32))
        row = torch.where(lab >= 0, w[lab.clamp_min(0)], torch.ones(len(lab)))
        batch["weight"] = row if "weight" not in batch else batch["weight"] * row

    def validation_metrics(self, model: Trainable, valid_users: np.ndarray) -> dict[str, float]:
        cfg = self.config
        if self._valid is None:
            return {}
        history, truth, users = self._valid
        seen, self._observed = self._observed, None
        if seen is not None and np.array_equal(seen[0], users):
            nd = seen[1]
        else:
            items, _ = full_ranking_topk(model.score_block, users, cfg.k, [history])
            nd = ranking_metrics(items, truth, ks=(cfg.k,), metrics=("ndcg",))[f"ndcg@{cfg.k}"]
        means, cnt = group_means(nd, self._codes[users], len(self.labels_))
        big = np.where(cnt >= cfg.min_users, means, np.nan)
        out = {
            f"valid_{self.prefix}={g}": float(v) for g, v in zip(self.labels_, means, strict=True)
        }
        finite = big[np.isfinite(big)]
        out[f"valid_worst_{self.prefix}"] = float(finite.min()) if len(finite) else float("nan")
        out[f"valid_gap_{self.prefix}"] = (
            float(finite.max() - finite.min()) if len(finite) >= 2 else float("nan")
        )
        if cfg.reweight_eta > 0:
            self.weights_ = multiplicative_weights(
                self.weights_, big, cfg.reweight_eta, self._share, cfg.max_weight
            )
            for g, w in zip(self.labels_, self.weights_, strict=True):
                out[f"group_weight_{cfg.grouping}={g}"] = float(w)
        return out

    def checkpoint_state(self) -> dict[str, Any]:
        return {"weights": torch.from_numpy(self.weights_.copy())}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state:
            self.weights_ = state["weights"].numpy().astype(np.float64)


__all__ = [
    "GroupValidation",
    "GroupValidationConfig",
    "group_means",
    "multiplicative_weights",
]
