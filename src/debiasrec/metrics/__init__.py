"""debiasrec.metrics: accuracy, beyond-accuracy and group-fairness metrics.

Every user-level metric is vectorised over all users and returns one float64 value per user (NaN
where undefined, with a :class:`DegenerateMetricWarning`); :func:`by_group` aggregates them
overall and per group with gaps, ratios and bootstrap confidence intervals.

Every metric that evaluation computes registers itself once in :data:`METRICS`
(:mod:`debiasrec.metrics.registry`): evaluation, the report and the stage cache read it.

This layer imports nothing of debiasrec but :mod:`debiasrec.errors`, :mod:`debiasrec.random` and
:mod:`debiasrec.registry`.
"""

from __future__ import annotations

from debiasrec.metrics._checks import DegenerateMetricWarning
from debiasrec.metrics.beyond import (
    HEAD,
    MID,
    TAIL,
    TIER_NAMES,
    average_popularity,
    exposure_counts,
    exposure_gini,
    gini,
    intra_list_diversity,
    item_coverage,
    long_tail_share,
    novelty,
    popularity_tiers,
)
from debiasrec.metrics.calibration import miscalibration
from debiasrec.metrics.fairness import (
    BY_GROUP_COLUMNS,
    CLASSIFIER_COLUMNS,
    by_group,
    classifier_by_group,
    item_group_exposure,
    paired_test,
)
from debiasrec.metrics.leakage import (
    LEAKAGE_COLUMNS,
    auc,
    balanced_accuracy,
    leakage,
    leakage_frame,
    macro_auc,
    probe_recs,
    recs_representation,
)
from debiasrec.metrics.ranking import (
    RANKING_METRICS,
    hit_matrix,
    ranking_metric_names,
    ranking_metrics,
    rating_metrics,
)
from debiasrec.metrics.registry import (
    FAMILIES,
    METRICS,
    Family,
    Metric,
    MetricInput,
    compute_metrics,
    default_metrics,
    register_family,
    register_metric,
)
from debiasrec.metrics.yao import YAO_METRICS, yao_unfairness

__all__ = [
    "FAMILIES",
    "METRICS",
    "Family",
    "Metric",
    "MetricInput",
    "compute_metrics",
    "default_metrics",
    "miscalibration",
    "register_family",
    "register_metric",
    "BY_GROUP_COLUMNS",
    "CLASSIFIER_COLUMNS",
    "LEAKAGE_COLUMNS",
    "YAO_METRICS",
    "auc",
    "balanced_accuracy",
    "leakage",
    "leakage_frame",
    "macro_auc",
    "probe_recs",
    "recs_representation",
    "yao_unfairness",
    "HEAD",
    "MID",
    "RANKING_METRICS",
    "TAIL",
    "TIER_NAMES",
    "DegenerateMetricWarning",
    "average_popularity",
    "by_group",
    "classifier_by_group",
    "exposure_counts",
    "exposure_gini",
    "gini",
    "hit_matrix",
    "intra_list_diversity",
    "item_coverage",
    "item_group_exposure",
    "long_tail_share",
    "novelty",
    "paired_test",
    "popularity_tiers",
    "ranking_metric_names",
    "ranking_metrics",
    "rating_metrics",
]
