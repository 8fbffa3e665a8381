"""Reweighting: per-interaction training weights for sensitive groups or item popularity.

Both transforms keep the interactions and set ``Dataset.weights`` (multiplying weights already
present), which the torch models put on each positive pair's loss (see
:class:`debiasrec.data.Dataset`). Weights are normalised to mean 1 over the interactions, so the
overall loss scale (and thus the learning rate) is unchanged.

* :class:`GroupReweight` -- group-balanced weights (Kamiran & Calders, "Data preprocessing
  techniques for classification without discrimination", KAIS 2012, in the recommendation form
  of e.g. Rastegarpanah et al. / Li et al. "User-oriented fairness in recommendation", WWW 2021):
  an interaction of a user in group ``g`` gets ``w_g = (N / (G * N_g))^alpha``, where ``N_g`` is
  the group's number of interactions (``balance="interactions"``) or users
  (``balance="users"``, then ``w_g`` is divided by the user's own count so that every user of a
  group carries the same total weight), ``G`` the number of groups present and ``alpha`` in
  ``[0, 1]`` interpolates between no reweighting and full balance. Explicit ``group_weights``
  override the formula.
* :class:`PopularityIPS` -- inverse-propensity weights for item popularity. Estimator: the
  relative-popularity propensity of Saito et al. ("Unbiased Recommender Learning from
  Missing-Not-At-Random Implicit Feedback", WSDM 2020, Sect. 5), ``p_i = (n_i / max_j n_j)^eta``
  with ``eta = 0.5`` by default, floored at ``clip`` (propensity clipping, their Eq. 9), and
  weight ``w_ui = 1 / p_i``, then normalised to mean 1 (the self-normalised SNIPS form of
  Schnabel et al., "Recommendations as Treatments", ICML 2016).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.debias.pre._groups import group_codes
from debiasrec.debias.pre.base import PreConfig, PreTransform, register
from debiasrec.errors import ConfigError, DataError
from debiasrec.random import np_rng


def _combine(train: Dataset, w: np.ndarray) -> np.ndarray:
    """``w`` times any existing weights, normalised to mean 1 over the interactions."""
    if train.weights is not None:
        w = w * train.weights
    mean = float(w.mean()) if len(w) else 1.0
    if not np.isfinite(mean) or mean <= 0:
        raise DataError("every interaction weight is 0; nothing would be trained")
    return (w / mean).astype(np.float32)


class GroupReweightConfig(PreConfig):
    """Settings of :class:`GroupReweight`."""

    attr: str = Field("gender", description="sensitive attribute (or intersection 'a&b')")
    balance: Literal["interactions", "users"] = Field(
        "interactions", description="equalise the groups' total interactions or total users"
    )
    alpha: float = Field(1.0, ge=0.0, le=1.0, description="0: no change, 1: full balance")
    group_weights: dict[str, float] | None = Field(
        None, description="explicit weight per group label (overrides the formula)"
    )
    max_weight: float = Field(
        20.0, gt=0, description="clip each raw group weight at this multiple of the smallest"
    )


@register
class GroupReweight(PreTransform[GroupReweightConfig]):
    """Group-balanced interaction weights for one sensitive attribute (see module docstring)."""

    name = "group_reweight"
    Config = GroupReweightConfig
    sets_weights = True
    sweep_key = "alpha"

    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        """Return ``train`` with group-balanced ``weights`` (deterministic; ``rng`` unused)."""
        cfg = self.config
        codes, labels = group_codes(train, cfg.attr)
        ucode = codes[train.users]
        n_groups = len(labels)
        if cfg.group_weights is not None:
            unknown = sorted(set(cfg.group_weights) - set(labels))
            if unknown:
                raise ConfigError(
                    f"group_weights: unknown group(s) {unknown} of {cfg.attr!r}; groups: {labels}"
                )
            if any(not np.isfinite(v) or v < 0 for v in cfg.group_weights.values()):
                raise ConfigError("group_weights: weights must be finite and >= 0")
            gw = np.array([cfg.group_weights.get(g, 1.0) for g in labels], dtype=np.float64)
            w = np.where(ucode >= 0, gw[np.maximum(ucode, 0)], 1.0)
        else:
            known = ucode >= 0
            if cfg.balance == "interactions":
                size = np.bincount(ucode[known], minlength=n_groups).astype(np.float64)
            else:
                active = train.user_counts() > 0
                size = np.bincount(codes[active & (codes >= 0)], minlength=n_groups).astype(
                    np.float64
                )
            present = size > 0
            total = size[present].sum()
            gw = np.ones(n_groups)
            gw[present] = (total / (present.sum() * size[present])) ** cfg.alpha
            gw = np.minimum(gw, cfg.max_weight * gw[present].min())
            w = np.where(known, gw[np.maximum(ucode, 0)], 1.0)
            if cfg.balance == "users":
                # Every user of a group carries the same total weight: divide by own activity,
                # times the mean activity so that an average user keeps weight ~1.
                counts = train.user_counts().astype(np.float64)
                w = w * counts[counts > 0].mean() / counts[train.users]
        out = _combine(train, np.asarray(w, dtype=np.float64))
        per_group = {
            g: float(out[ucode == k].sum() / max(out.sum(), 1e-12)) for k, g in enumerate(labels)
        }
        self.report_ = {
            "method": self.name,
            "attr": cfg.attr,
            "group_weight": {g: float(gw[k]) for k, g in enumerate(labels)},
            "weight_share": per_group,
            "interaction_share": {
                g: float((ucode == k).mean()) if len(ucode) else float("nan")
                for k, g in enumerate(labels)
            },
            "missing_group_interactions": int((ucode < 0).sum()),
        }
        return train.with_weights(out, name=f"{train.name}+{self.name}")


class PopularityIPSConfig(PreConfig):
    """Settings of :class:`PopularityIPS`."""

    eta: float = Field(0.5, gt=0.0, description="propensity exponent p_i = (n_i / n_max)^eta")
    clip: float = Field(
        0.05, gt=0.0, le=1.0, description="propensity floor (caps weights at 1 / clip)"
    )


@register
class PopularityIPS(PreTransform[PopularityIPSConfig]):
    """Inverse-propensity weights against item-popularity exposure bias (module docstring)."""

    name = "ips"
    Config = PopularityIPSConfig
    sets_weights = True
    sweep_key = "eta"

    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        """Return ``train`` with IPS ``weights`` (deterministic; ``rng`` unused)."""
        cfg = self.config
        np_rng(rng)  # accepted for the common signature; the transform is deterministic
        if train.n_interactions == 0:
            raise DataError(f"training data {train.name!r} is empty; nothing to reweight")
        n_i = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
        prop = (n_i / n_i.max()) ** cfg.eta
        prop = np.maximum(prop, cfg.clip)
        w_item = 1.0 / prop
        out = _combine(train, w_item[train.items])
        self.report_ = {
            "method": self.name,
            "estimator": "relative popularity (Saito et al. 2020), clipped, self-normalised",
            "eta": cfg.eta,
            "clip": cfg.clip,
            "clipped_items": int(((n_i / n_i.max()) ** cfg.eta < cfg.clip)[n_i > 0].sum()),
            "max_weight": float(out.max()),
            "min_weight": float(out.min()),
        }
        return train.with_weights(out, name=f"{train.name}+{self.name}")
