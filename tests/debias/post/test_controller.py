"""Self-calibration on planted-bias synthetic data; the test split is never read."""

from __future__ import annotations

import numpy as np
import pytest

from debiasrec.data import Split, random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.post import SelfCalibrationConfig, SelfCalibrator, Target
from debiasrec.errors import ConfigError
from debiasrec.models import ItemKNN


@pytest.fixture(scope="module")
def planted():
    # the minority group F has noisier histories -> lower NDCG (a planted utility gap)
    ds, _ = generate(
        SyntheticConfig(n_users=800, n_items=300, noise_share=(0.0, 0.5), mean_interactions=30),
        rng=0,
    )
    split = random_split(ds, rng=0)
    model = ItemKNN().fit(split.train)
    scores = model.score(np.arange(ds.n_users))
    users = np.flatnonzero(split.test.user_counts() > 0)
    exclude = [split.train.csr(), split.valid.csr()]
    return split, scores, users, exclude


def _run(planted, **cfg):
    split, scores, users, exclude = planted
    cal = SelfCalibrator(**cfg).fit(scores, split)
    base = cal.reranker_.with_strength(0.0).rerank(
        scores, cal.context_, users=users, exclude=exclude
    )
    out = cal.rerank(scores, users=users, exclude=exclude)
    return cal, cal.evaluate(base, split.test), cal.evaluate(out, split.test)


def test_meets_gender_gap_target_on_planted_bias(planted) -> None:
    cal, base, out = _run(
        planted, method="group_fair", target="gap_ndcg:gender <= 0.3x", params={"attr": "gender"}
    )
    assert cal.met_ and 0.0 < cal.strength_ <= 1.0
    assert base["target"] > 0.1  # the planted gap is there
    assert cal.validation_["target"] <= cal.threshold_
    # the smallest grid strength that meets the target was refined from below
    fr = cal.frontier_
    assert not fr[fr["strength"] < cal.strength_ - 0.05]["meets"].all()
    # on test, the gap shrinks by at least half (target: 70% on validation)
    assert out["target"] <= 0.5 * base["target"]


def test_meets_miscalibration_target_at_small_cost(planted) -> None:
    cal, base, out = _run(planted, method="calibrated", target="miscalibration <= 0.5x")
    assert cal.met_
    assert out["target"] <= 0.6 * base["target"]
    assert out["ndcg"] >= 0.95 * base["ndcg"]
    # least accuracy cost: no evaluated point that meets the target has higher validation NDCG
    feas = cal.frontier_[cal.frontier_["meets"]]
    assert cal.validation_["ndcg"] == pytest.approx(feas["ndcg"].max())


def test_long_tail_target_and_infeasible_target_reports_frontier(planted) -> None:
    cal, _, out = _run(planted, method="exposure", target="long_tail_share >= 0.3")
    assert cal.met_ and out["target"] >= 0.25
    with pytest.warns(UserWarning, match="no strength"):
        bad, _, _ = _run(planted, method="exposure", target="long_tail_share >= 1.5", grid=5)
    assert not bad.met_ and len(bad.frontier_) == 5 and not bad.frontier_["meets"].any()
    assert bad.strength_ == 1.0  # the closest point


class Forbidden:
    """Stands in for a split part that must never be read."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str):
        raise AssertionError(f"{self._what}.{name} was read")


def test_fit_never_reads_the_test_split(planted) -> None:
    split, scores, users, _ = planted
    guarded = Split(split.train, split.valid, Forbidden("test"))  # type: ignore[arg-type]
    for method, target, params in [
        ("group_fair", "gap_ndcg:gender <= 0.3x", {"attr": "gender"}),
        ("calibrated", "miscalibration <= 0.5x", {}),
    ]:
        cal = SelfCalibrator(method=method, target=target, params=params).fit(scores, guarded)
        cal.rerank(scores, users=users, exclude=[split.train.csr(), split.valid.csr()])
    # the guard bites, and validation *is* what the estimates come from
    with pytest.raises(AssertionError, match="valid"):
        SelfCalibrator(method="group_fair", target="gap_ndcg:gender <= 0.3x").fit(
            scores,
            Split(split.train, Forbidden("valid"), split.test),  # type: ignore[arg-type]
        )


def test_target_parsing_and_config_validation() -> None:
    t = Target.parse("gap_ndcg:gender <= 0.01")
    assert (t.metric, t.attr, t.op, t.value, t.relative) == (
        "gap_ndcg",
        "gender",
        "<=",
        0.01,
        False,
    )
    t = Target.parse("miscalibration <= 0.5x")
    assert t.relative and str(t) == "miscalibration <= 0.5x"
    assert Target.parse("long_tail_share >= 0.2").op == ">="
    with pytest.raises(ConfigError):
        Target.parse("gap_ndcg <= 0.01")  # attr missing
    with pytest.raises(ConfigError):
        Target.parse("ndcg == 0.3")
    with pytest.raises(ConfigError):
        SelfCalibrator(method="calibrated", target="miscalibration <= 0.1", tragte=1)
    with pytest.raises(ConfigError):
        SelfCalibrator(method="calibrated", target="miscalibration <= 0.1", params={"alpah": 0.1})
    with pytest.raises(ConfigError):
        SelfCalibrator(method="calibrated", target="miscalibration <= 0.1", params={"strength": 1})
    cfg = SelfCalibrationConfig(method="exposure", target={"metric": "exposure_gini", "value": 0.8})
    assert cfg.target.op == "<="
