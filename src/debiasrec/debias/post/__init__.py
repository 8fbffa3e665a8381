"""debiasrec.debias.post: post-processing re-rankers and self-calibration.

Post-processing is ``(scores or Recs, context) -> Recs`` and works on the scores of any model,
imported ones included. Every re-ranker is a greedy selection vectorised over all users:

- :class:`CalibratedReranker` (Steck, RecSys 2018): genre calibration, ``C_KL``;
- :class:`CalibratedDCGReranker`: the same ``C_KL`` against expected DCG, one trade-off for all
  users, swap local search or exact MILP, lists in score order;
- :class:`PopularityCalibrationReranker` (Abdollahpouri et al., UMAP 2021): head/mid/tail profile;
- :class:`GroupFairReranker` (after UGF, Li et al., WWW 2021): user-group utility gap, estimated
  on validation data;
- :class:`ExposureReranker` (FA*IR, Zehlike et al. CIKM 2017; DetGreedy, Geyik et al. KDD 2019):
  minimum shares of protected item groups;
- :class:`MMRReranker` (Carbonell & Goldstein, SIGIR 1998): diversity.

:class:`SelfCalibrator` tunes a re-ranker's strength on validation data to meet a target;
:class:`OnlineController` adjusts it from a feedback stream. See ``docs/reranking.md``.
"""

from debiasrec.debias.post.base import (
    RerankConfig,
    RerankContext,
    Reranker,
    candidates,
)
from debiasrec.debias.post.calibrated import CalibratedConfig, CalibratedReranker
from debiasrec.debias.post.calibrated_dcg import CalibratedDCGConfig, CalibratedDCGReranker
from debiasrec.debias.post.controller import (
    RERANKERS,
    SelfCalibrationConfig,
    SelfCalibrator,
    Target,
    measure,
)
from debiasrec.debias.post.diversity import DiversityConfig, MMRReranker
from debiasrec.debias.post.exposure import ExposureConfig, ExposureReranker
from debiasrec.debias.post.group_fair import GroupFairConfig, GroupFairReranker
from debiasrec.debias.post.online import OnlineConfig, OnlineController
from debiasrec.debias.post.popularity import (
    PopularityCalibrationConfig,
    PopularityCalibrationReranker,
)

__all__ = [
    "RERANKERS",
    "CalibratedConfig",
    "CalibratedDCGConfig",
    "CalibratedDCGReranker",
    "CalibratedReranker",
    "DiversityConfig",
    "ExposureConfig",
    "ExposureReranker",
    "GroupFairConfig",
    "GroupFairReranker",
    "MMRReranker",
    "OnlineConfig",
    "OnlineController",
    "PopularityCalibrationConfig",
    "PopularityCalibrationReranker",
    "RerankConfig",
    "RerankContext",
    "Reranker",
    "SelfCalibrationConfig",
    "SelfCalibrator",
    "Target",
    "candidates",
    "measure",
]
