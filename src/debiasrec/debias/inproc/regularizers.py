"""Fairness regularizers (Strategies for the one Trainer), for comparison with adversaries.

:class:`FOCFRegularizer` -- the fairness objectives of Yao & Huang, "Beyond Parity: Fairness
Objectives for Collaborative Filtering" (NeurIPS 2017): value, absolute, under(estimation),
over(estimation) and non-parity unfairness between a disadvantaged user group ``g`` and the rest
(formulas in :mod:`debiasrec.metrics.yao`), added to the loss as ``weight * U``. Yao & Huang
train a rating model on observed ratings with the *smoothed* (squared) terms; for
implicit-feedback ranking models we adapt this as follows (as RecBole-FairRec does for FOCF on
0/1 data): the predictions are ``sigmoid(score)`` of the batch's pairs -- each positive
``(u, i)`` with target 1 and its sampled negative ``(u, j)`` with target 0 -- and the per-item
expectations are taken over the pairs of the batch in which the item occurs for both groups.
``smooth=True`` (default) uses squares instead of absolute values (differentiable at 0).

:class:`UtilityGapPenalty` -- a differentiable user-group utility gap: the BPR log-likelihood
``log sigmoid(s_ui - s_uj)`` of each batch pair, averaged per group of the pair's user, and the
mean squared difference of group means over all pairs of groups (for a binary attribute
``(m_a - m_b)^2``). It pushes the groups' training utility together, a smooth surrogate of the
group gap in ranking accuracy (cf. Li et al., "User-oriented Fairness in Recommendation",
WWW 2021, which constrains the NDCG gap by re-ranking instead).

Both need ``model.pair_scores(users, items)`` (BPR, LightGCN, MultVAE) and batches with
``users``, ``pos`` and ``neg`` (BPR, LightGCN).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import AliasChoices, Field

from debiasrec.data.dataset import Dataset
from debiasrec.debias.inproc.base import STRATEGIES, InprocStrategy, StrategyConfig
from debiasrec.errors import ConfigError
from debiasrec.models.capabilities import PairScorer, PairwiseTraining
from debiasrec.training.device import model_device
from debiasrec.training.trainer import Trainable

FOCF_KINDS: tuple[str, ...] = ("value", "absolute", "under", "over", "non_parity")


def focf_unfairness(
    pred: torch.Tensor,
    target: torch.Tensor,
    items: torch.Tensor,
    disadvantaged: torch.Tensor,
    n_items: int,
    kind: str,
    *,
    smooth: bool = True,
) -> torch.Tensor:
    """Differentiable Yao & Huang unfairness of aligned pairs (``smooth``: squares, not ``|.|``).

    With ``smooth=False`` the value equals :func:`debiasrec.metrics.yao.yao_unfairness`.
    Returns a zero (still differentiable) tensor when a group or a shared item is missing.
    """
    if kind not in FOCF_KINDS:
        raise ConfigError(f"unknown FOCF unfairness {kind!r}; available: {list(FOCF_KINDS)}")
    dist = (lambda x: x.pow(2)) if smooth else torch.abs
    g = disadvantaged.bool()
    if not g.any() or g.all():
        return pred.sum() * 0.0
    if kind == "non_parity":
        return dist(pred[g].mean() - pred[~g].mean())

    def means(vals: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(n_items, dtype=vals.dtype, device=vals.device)
        cnt = zeros.clone().index_add_(0, items[mask], torch.ones_like(vals[mask]))
        tot = zeros.index_add_(0, items[mask], vals[mask])
        return tot / cnt.clamp_min(1), cnt

    yg, cg = means(pred, g)
    yh, ch = means(pred, ~g)
    rg, _ = means(target.to(pred.dtype), g)
    rh, _ = means(target.to(pred.dtype), ~g)
    both = (cg > 0) & (ch > 0)
    if not both.any():
        return pred.sum() * 0.0
    dg, dh = (yg - rg)[both], (yh - rh)[both]
    if kind == "value":
        diff = dg - dh
    elif kind == "absolute":
        diff = dist(dg) - dist(dh) if smooth else dg.abs() - dh.abs()
    elif kind == "under":
        diff = F.relu(-dg) - F.relu(-dh)
    else:  # over
        diff = F.relu(dg) - F.relu(dh)
    return dist(diff).mean()


class _Host(Trainable, PairScorer, Protocol):
    """What the regularizers use of a model."""


class GroupRegularizerConfig(StrategyConfig):
    """Settings shared by the group regularizers."""

    attr: str = Field(description="sensitive attribute whose groups are compared")
    weight: float = Field(1.0, ge=0.0, description="multiplier of the loss term")


G = TypeVar("G", bound=GroupRegularizerConfig)


class _GroupStrategy(InprocStrategy[G]):
    """Shared setup: group labels of one sensitive attribute, checks on the model."""

    sweep_key = "weight"

    @classmethod
    def requires(cls, config: StrategyConfig) -> tuple[type, ...]:
        """Differentiable pair scores and pairwise (users/pos/neg) training batches."""
        return (*super().requires(config), PairScorer, PairwiseTraining)

    @property
    def attr(self) -> str:
        return self.config.attr

    @property
    def weight(self) -> float:
        return float(self.config.weight)

    def setup(self, model: Trainable, train: Dataset, rng: np.random.Generator) -> None:
        self.check_model(model)
        cat = train.user_groups(self.attr)
        self._cat = cat
        self._host_codes = np.asarray(cat.codes, dtype=np.int64)
        self._codes = torch.from_numpy(self._host_codes).to(model_device(model))
        self._n_items = train.n_items

    @staticmethod
    def _need(batch: dict[str, torch.Tensor]) -> None:
        missing = [k for k in ("users", "pos", "neg") if k not in batch]
        if missing:
            raise ConfigError(
                f"this regularizer needs pairwise batches with users/pos/neg; missing {missing} "
                "(use it with BPR or LightGCN)"
            )

    def _labelled(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch users with a group label, their labels, and their ``[pos; neg]`` items."""
        self._need(batch)
        users = batch["users"]
        lab = self._codes[users]
        keep = lab >= 0
        items = torch.cat([batch["pos"][keep], batch["neg"][keep]])
        return users[keep], lab[keep], items


class FOCFConfig(GroupRegularizerConfig):
    """Settings of :class:`FOCFRegularizer`."""

    unfairness: Literal["value", "absolute", "under", "over", "non_parity"] = Field(
        "value",
        description="Yao & Huang's unfairness measure ('kind' in configs written before "
        "components were chosen by kind)",
        validation_alias=AliasChoices("unfairness", "kind"),
    )
    disadvantaged: str | None = Field(
        None, description="group label of g (default: the smaller group in training)"
    )
    smooth: bool = Field(True, description="squared instead of absolute differences")


@STRATEGIES.register
class FOCFRegularizer(_GroupStrategy[FOCFConfig]):
    """Yao & Huang (2017) fairness objective as a loss term ``focf_<kind>``.

    Config (:class:`FOCFConfig`):
        attr: sensitive attribute (binary, or any with ``disadvantaged`` naming one group).
        unfairness: ``value``, ``absolute``, ``under``, ``over`` or ``non_parity``.
        weight: multiplier of the term.
        disadvantaged: the group label of ``g`` (default: the smaller group in training).
        smooth: squared instead of absolute differences (as in Yao & Huang's training).
    """

    name = "focf"
    Config = FOCFConfig

    def __init__(self, config: FOCFConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.kind = self.config.unfairness
        self.disadvantaged = self.config.disadvantaged
        self.smooth = self.config.smooth

    def setup(self, model: Trainable, train: Dataset, rng: np.random.Generator) -> None:
        super().setup(model, train, rng)
        cats = [str(c) for c in self._cat.categories]
        if self.disadvantaged is None:
            if len(cats) != 2:
                raise ConfigError(
                    f"attribute {self.attr!r} has {len(cats)} groups {cats}; name the "
                    "disadvantaged one with disadvantaged=..."
                )
            codes = self._host_codes
            counts = np.bincount(codes[codes >= 0], minlength=2)
            self._g = int(np.argmin(counts))
        elif self.disadvantaged in cats:
            self._g = cats.index(self.disadvantaged)
        else:
            raise ConfigError(f"disadvantaged={self.disadvantaged!r} is not a group of {cats}")

    def loss_terms(
        self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor]:
        u, lab, items = self._labelled(batch)
        uu = torch.cat([u, u])
        pred = torch.sigmoid(cast(_Host, model).pair_scores(uu, items))
        target = torch.cat([torch.ones(len(u)), torch.zeros(len(u))]).to(u.device)
        g = torch.cat([lab, lab]) == self._g
        val = focf_unfairness(pred, target, items, g, self._n_items, self.kind, smooth=self.smooth)
        return {f"focf_{self.kind}": self.weight * val}


class UtilityGapConfig(GroupRegularizerConfig):
    """Settings of :class:`UtilityGapPenalty`."""


@STRATEGIES.register
class UtilityGapPenalty(_GroupStrategy[UtilityGapConfig]):
    """Squared gap between user groups' mean BPR log-likelihood on the batch (term ``util_gap``)."""

    name = "utility_gap"
    Config = UtilityGapConfig

    def loss_terms(
        self, model: Trainable, batch: dict[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor]:
        u, lab, items = self._labelled(batch)
        s = cast(_Host, model).pair_scores(torch.cat([u, u]), items)
        sp, sn = s.chunk(2)
        ll = F.logsigmoid(sp - sn)
        n_cls = len(self._cat.categories)
        zeros = torch.zeros(n_cls, dtype=ll.dtype, device=ll.device)
        cnt = zeros.clone().index_add_(0, lab, torch.ones_like(ll))
        tot = zeros.index_add_(0, lab, ll)
        present = cnt > 0
        if int(present.sum()) < 2:
            return {"util_gap": ll.sum() * 0.0}
        m = (tot / cnt.clamp_min(1))[present]
        gap = (m[:, None] - m[None, :]).pow(2)
        k = len(m)
        return {"util_gap": self.weight * gap.sum() / (k * (k - 1))}
