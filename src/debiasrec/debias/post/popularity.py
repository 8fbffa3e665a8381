"""Popularity calibration (Abdollahpouri et al., "User-centered Evaluation of Popularity Bias in
Recommender Systems", UMAP 2021, the "calibrated popularity" re-ranker).

Items are split into popularity tiers head / mid / tail by training popularity
(:func:`debiasrec.metrics.popularity_tiers`, by share of interactions, 20% / 20% by default). A
user's profile ``p(.|u)`` is the tier distribution of their training history and ``q(.|L)`` that of
the list; the list maximises, greedily and for all users at once,

    (1 - lambda) * sum_{i in L} s(u, i)  -  lambda * D(p(.|u), q~(.|L)),

with ``D`` the Jensen-Shannon divergence (default, bounded by ``log 2``) or KL, and
``q~ = (1 - alpha) q + alpha p``. This is the calibrated greedy of
:mod:`debiasrec.debias.post.calibrated` with categories = tiers. The achieved popularity
miscalibration is :func:`debiasrec.metrics.calibration.miscalibration` with
``item_features = tier_features(tiers)`` and ``kind="js"``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from debiasrec.debias.post.base import RERANKERS, RerankContext
from debiasrec.debias.post.calibrated import CalibratedConfig, CalibratedReranker
from debiasrec.metrics.beyond import popularity_tiers
from debiasrec.metrics.calibration import tier_features


class PopularityCalibrationConfig(CalibratedConfig):
    """Options of :class:`PopularityCalibrationReranker`."""

    divergence: Literal["kl", "js"] = "js"
    head_share: float = Field(0.2, gt=0.0, lt=1.0, description="interaction share of the head")
    tail_share: float = Field(0.2, gt=0.0, lt=1.0, description="interaction share of the tail")


def popularity_tier_features(
    item_pop: np.ndarray, head_share: float = 0.2, tail_share: float = 0.2
) -> sp.csr_matrix:
    """One-hot ``[n_items, 3]`` head/mid/tail matrix of training popularity."""
    return tier_features(popularity_tiers(item_pop, head_share, tail_share), 3)


@RERANKERS.register
class PopularityCalibrationReranker(CalibratedReranker[PopularityCalibrationConfig]):
    """Match each user's head/mid/tail profile; ``strength`` is ``lambda``."""

    name = "popularity"
    Config = PopularityCalibrationConfig

    def _features(self, context: RerankContext) -> sp.csr_matrix:
        cfg = self.config
        return popularity_tier_features(context.item_pop, cfg.head_share, cfg.tail_share)


__all__ = [
    "PopularityCalibrationConfig",
    "PopularityCalibrationReranker",
    "popularity_tier_features",
]
