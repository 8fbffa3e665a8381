"""Every shipped re-ranker passes the shipped contract (debiasrec.testing.RerankerContract)."""

from __future__ import annotations

from debiasrec.debias.post import (
    CalibratedReranker,
    ExposureReranker,
    GroupFairReranker,
    MMRReranker,
    PopularityCalibrationReranker,
)
from debiasrec.testing import RerankerContract


class TestCalibrated(RerankerContract):
    component = CalibratedReranker


class TestPopularityCalibration(RerankerContract):
    component = PopularityCalibrationReranker


class TestGroupFair(RerankerContract):
    component = GroupFairReranker
    params = {"strength": 0.5, "attr": "gender", "min_group_users": 2}


class TestExposure(RerankerContract):
    component = ExposureReranker


class TestMMR(RerankerContract):
    component = MMRReranker
