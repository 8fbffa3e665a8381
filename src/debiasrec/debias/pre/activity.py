"""Activity reweighting: every user, not every interaction, counts (no sensitive attribute).

Interaction-level losses (BPR's mean over training pairs, iALS's sum over observed cells) give a
user weight proportional to their activity ``n_u``, while accuracy is reported as a mean over
*users*: the many light users -- the disadvantaged group of user-oriented fairness studies (Li et
al., "User-oriented Fairness in Recommendation", WWW 2021; Rahmani et al., "The Unfairness of
Active Users and Popularity Bias in Point-of-Interest Recommendation", BIAS@ECIR 2022) -- carry
little of the loss. :class:`ActivityReweight` sets the weight of each interaction of user ``u`` to

    w_u = n_u ** (-beta),   normalised to mean 1 over the interactions,

so ``beta = 0`` changes nothing and ``beta = 1`` gives every user the same total weight (the loss
becomes a mean over users of each user's mean loss). Weights already present are multiplied.
The transform uses no sensitive attribute; it helps any group that is less active on average
(on ML-100K women have 76 training interactions on average, men 90).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.debias.pre.base import PreConfig, PreTransform, register
from debiasrec.debias.pre.reweight import _combine
from debiasrec.errors import DataError
from debiasrec.random import np_rng


class ActivityReweightConfig(PreConfig):
    """Settings of :class:`ActivityReweight`."""

    beta: float = Field(0.5, ge=0.0, le=1.0, description="weight n_u ** -beta (1: users equal)")


@register
class ActivityReweight(PreTransform[ActivityReweightConfig]):
    """Interaction weights ``n_u ** -beta`` (module docstring); deterministic."""

    name = "activity_reweight"
    Config = ActivityReweightConfig
    sets_weights = True
    sweep_key = "beta"

    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        """Return ``train`` with activity weights (``rng`` unused)."""
        np_rng(rng)  # accepted for the common signature; the transform is deterministic
        if train.n_interactions == 0:
            raise DataError(f"training data {train.name!r} is empty; nothing to reweight")
        counts = train.user_counts().astype(np.float64)
        w = counts[train.users] ** (-self.config.beta)
        out = _combine(train, w)
        per_user = np.bincount(train.users, weights=out, minlength=train.n_users)
        active = counts > 0
        self.report_ = {
            "method": self.name,
            "beta": self.config.beta,
            "user_weight_min": float(per_user[active].min()),
            "user_weight_max": float(per_user[active].max()),
            "max_weight": float(out.max()),
            "min_weight": float(out.min()),
        }
        return train.with_weights(out, name=f"{train.name}+{self.name}")


__all__ = ["ActivityReweight", "ActivityReweightConfig"]
