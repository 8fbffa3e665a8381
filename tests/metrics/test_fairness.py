"""Tests for debiasrec.metrics.fairness: by_group, paired_test, item_group_exposure."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.errors import DataError
from debiasrec.metrics import (
    BY_GROUP_COLUMNS,
    TIER_NAMES,
    DegenerateMetricWarning,
    by_group,
    item_group_exposure,
    paired_test,
    popularity_tiers,
)

# ----------------------------------------------------------------------------- by_group

VALUES = np.array([1.0, 0.0, 0.2, 0.4, np.nan, 0.9])
GENDER = pd.Categorical(["F", "F", "M", "M", "M", None], categories=["F", "M", "X"])


def _row(frame: pd.DataFrame, metric: str, group: str) -> pd.Series:
    sel = frame[(frame["metric"] == metric) & (frame["group"] == group)]
    assert len(sel) == 1, (metric, group)
    return sel.iloc[0]


def test_by_group_hand_example() -> None:
    with pytest.warns(DegenerateMetricWarning, match="'X'"):
        frame = by_group({"ndcg@10": VALUES}, {"gender": GENDER}, n_boot=200)
    assert list(frame.columns) == list(BY_GROUP_COLUMNS)
    assert list(frame.columns) == ["metric", "group", "value", "ci_low", "ci_high", "n"]
    assert frame["group"].tolist() == [
        "all",
        "gender=F",
        "gender=M",
        "gender=X",
        "gender",
        "gender",
        "gender",
    ]
    assert frame["metric"].tolist()[-3:] == ["gap_ndcg@10", "ratio_ndcg@10", "std_ndcg@10"]
    # all: users 0,1,2,3,5 (user 4 is NaN, user 5 has no label but counts) = 2.5 / 5
    assert _row(frame, "ndcg@10", "all")["value"] == pytest.approx(0.5)
    assert _row(frame, "ndcg@10", "all")["n"] == 5
    # F: (1 + 0) / 2 = 0.5 ; M: (0.2 + 0.4) / 2 = 0.3 (user 4 is NaN: excluded, not counted)
    assert _row(frame, "ndcg@10", "gender=F")["value"] == pytest.approx(0.5)
    assert _row(frame, "ndcg@10", "gender=M")["value"] == pytest.approx(0.3)
    assert _row(frame, "ndcg@10", "gender=M")["n"] == 2
    # empty category -> NaN row with n = 0
    x = _row(frame, "ndcg@10", "gender=X")
    assert math.isnan(x["value"]) and math.isnan(x["ci_low"]) and x["n"] == 0
    # gap = 0.5 - 0.3; ratio = 0.3 / 0.5; std of (0.5, 0.3) (population) = 0.1
    assert _row(frame, "gap_ndcg@10", "gender")["value"] == pytest.approx(0.2)
    assert _row(frame, "ratio_ndcg@10", "gender")["value"] == pytest.approx(0.6)
    assert _row(frame, "std_ndcg@10", "gender")["value"] == pytest.approx(0.1)
    assert _row(frame, "gap_ndcg@10", "gender")["n"] == 4
    assert frame["n"].dtype == np.int64
    assert frame["value"].dtype == np.float64


def test_by_group_bare_inputs_and_several_metrics() -> None:
    frame = by_group(np.array([1.0, 0.0, 1.0]), pd.Categorical(["a", "b", "b"]), metric="hit@5")
    assert set(frame["metric"]) == {"hit@5", "gap_hit@5", "ratio_hit@5", "std_hit@5"}
    assert _row(frame, "hit@5", "group=b")["value"] == pytest.approx(0.5)
    assert _row(frame, "gap_hit@5", "group")["value"] == pytest.approx(0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame2 = by_group(
            {"m1": np.array([1.0, 2.0, 3.0]), "m2": np.array([np.nan, 1.0, 1.0])},
            {"g": np.array(["x", "y", "y"]), "h": np.array([1, 1, 2])},
            n_boot=50,
        )
    messages = [str(w.message) for w in caught if w.category is DegenerateMetricWarning]
    # m2 has no evaluated user with g = x, so g has only one usable group for m2
    assert any("['x'] of attribute 'g' have no user evaluated on m2" in m for m in messages)
    assert any("'g' has 1 non-empty group(s) for m2" in m for m in messages)
    assert len(messages) == 2
    # per metric: all + 2 + 2 group rows + 3 * 2 summary rows = 11
    assert len(frame2) == 22
    assert _row(frame2, "m1", "g=y")["value"] == pytest.approx(2.5)
    assert _row(frame2, "m2", "h=1")["value"] == pytest.approx(1.0)
    assert _row(frame2, "m2", "h=1")["n"] == 1
    only_all = by_group({"m1": np.array([1.0, 2.0])}, None, n_boot=0)
    assert only_all["group"].tolist() == ["all"]
    assert only_all["value"].tolist() == [1.5]


def test_by_group_bad_input() -> None:
    with pytest.raises(DataError, match="metric="):
        by_group(np.ones(3), pd.Categorical(["a", "b", "a"]))
    with pytest.raises(DataError, match="length"):
        by_group({"m": np.ones(3)}, {"g": np.array(["a", "b"])})
    with pytest.raises(DataError, match="length"):
        by_group({"m": np.ones(3), "n": np.ones(2)}, None)
    with pytest.raises(DataError, match="ci"):
        by_group({"m": np.ones(3)}, None, ci=95)
    with pytest.raises(DataError, match="n_boot"):
        by_group({"m": np.ones(3)}, None, n_boot=-1)


def _random_case(seed: int, n: int = 300) -> tuple[np.ndarray, pd.Categorical]:
    rng = np.random.default_rng(seed)
    labels = pd.Categorical(rng.choice(["F", "M"], size=n, p=[0.3, 0.7]))
    vals = rng.random(n) * np.where(labels == "F", 0.8, 1.0)
    return vals, labels


def test_bootstrap_determinism_and_rng_sensitivity() -> None:
    vals, labels = _random_case(1)
    f1 = by_group({"m": vals}, {"gender": labels}, n_boot=300, rng=7)
    f2 = by_group({"m": vals}, {"gender": labels}, n_boot=300, rng=7)
    pd.testing.assert_frame_equal(f1, f2)
    f3 = by_group({"m": vals}, {"gender": labels}, n_boot=300, rng=np.random.default_rng(8))
    assert not np.allclose(f1["ci_low"], f3["ci_low"])
    pd.testing.assert_series_equal(f1["value"], f3["value"])  # point estimates do not depend on rng


def test_bootstrap_ci_contains_point_estimate_and_has_right_width() -> None:
    vals, labels = _random_case(2, n=400)
    frame = by_group({"m": vals}, {"gender": labels}, n_boot=1000, rng=0)
    for _, row in frame[frame["metric"] == "m"].iterrows():
        assert row["ci_low"] < row["value"] < row["ci_high"]
    # a 95% CI of a mean is about 2 * 1.96 * sd / sqrt(n) wide
    all_row = _row(frame, "m", "all")
    expected = 2 * 1.96 * vals.std() / math.sqrt(len(vals))
    assert all_row["ci_high"] - all_row["ci_low"] == pytest.approx(expected, rel=0.15)
    none = by_group({"m": vals}, {"gender": labels}, n_boot=0)
    assert none["ci_low"].isna().all() and none["ci_high"].isna().all()
    assert not none["value"].isna().any()


def test_stratified_bootstrap_constant_groups_are_degenerate() -> None:
    # F is constant 0.7 -> its CI is [0.7, 0.7]; with F = 1 and M = 0 constant the gap CI is
    # exactly [1, 1] because group sizes are fixed in a stratified bootstrap (an unstratified
    # one would vary the mix and the "all" CI would not be degenerate).
    labels = pd.Categorical(["F"] * 10 + ["M"] * 30)
    vals = np.r_[np.full(10, 0.7), np.linspace(0, 1, 30)]
    frame = by_group({"m": vals}, {"g": labels}, n_boot=200)
    f = _row(frame, "m", "g=F")
    assert f["ci_low"] == f["ci_high"] == pytest.approx(0.7)
    m = _row(frame, "m", "g=M")
    assert m["ci_low"] < m["ci_high"]
    vals2 = np.r_[np.ones(10), np.zeros(30)]
    frame2 = by_group({"m": vals2}, {"g": labels}, n_boot=200)
    gap = _row(frame2, "gap_m", "g")
    assert gap["value"] == gap["ci_low"] == gap["ci_high"] == 1.0
    assert _row(frame2, "m", "all")["ci_low"] < _row(frame2, "m", "all")["ci_high"]


def test_ratio_with_zero_max_is_nan_with_warning() -> None:
    labels = pd.Categorical(["a", "a", "b"])
    with pytest.warns(DegenerateMetricWarning, match="ratio"):
        frame = by_group({"m": np.zeros(3)}, {"g": labels}, n_boot=20)
    assert math.isnan(_row(frame, "ratio_m", "g")["value"])
    assert _row(frame, "gap_m", "g")["value"] == 0.0


def test_single_nonempty_group_gives_nan_summaries() -> None:
    labels = pd.Categorical(["a", "a", None], categories=["a", "b"])
    with pytest.warns(DegenerateMetricWarning):
        frame = by_group({"m": np.array([1.0, 2.0, 3.0])}, {"g": labels}, n_boot=20)
    assert frame[frame["group"] == "g"]["value"].isna().all()
    assert _row(frame, "m", "all")["n"] == 3  # the unlabelled user still counts in "all"


def test_group_with_only_nan_values_is_nan_with_warning() -> None:
    labels = pd.Categorical(["a", "a", "b", "b", "c"])
    vals = np.array([1.0, 0.0, np.nan, np.nan, 0.5])
    with pytest.warns(DegenerateMetricWarning, match="'b'"):
        frame = by_group({"m": vals}, {"g": labels}, n_boot=20)
    assert math.isnan(_row(frame, "m", "g=b")["value"])
    assert _row(frame, "gap_m", "g")["value"] == pytest.approx(0.0)  # a: 0.5, c: 0.5


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=30),
    st.integers(0, 2**31 - 1),
)
def test_by_group_properties(vals: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.array(vals)
    labels = pd.Categorical(rng.choice(["a", "b", "c"], size=len(x)), categories=["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateMetricWarning)
        frame = by_group({"m": x}, {"g": labels}, n_boot=30, rng=seed)
    groups = frame[frame["metric"] == "m"]
    means = groups[groups["group"].str.startswith("g=")]["value"].dropna()
    assert _row(frame, "m", "all")["value"] == pytest.approx(x.mean())
    finite = frame.dropna(subset=["ci_low"])
    assert (finite["ci_low"] <= finite["ci_high"] + 1e-12).all()
    if len(means) >= 2:
        assert _row(frame, "gap_m", "g")["value"] == pytest.approx(means.max() - means.min())
        assert 0 <= _row(frame, "gap_m", "g")["value"] <= 1


def test_bootstrap_memory_chunking_large_population() -> None:
    rng = np.random.default_rng(0)
    n = 60_000
    labels = pd.Categorical(rng.choice(["F", "M"], size=n))
    frame = by_group({"m": rng.random(n)}, {"gender": labels}, n_boot=100, rng=0)
    assert frame["ci_low"].notna().all()
    assert _row(frame, "m", "all")["ci_high"] - _row(frame, "m", "all")["ci_low"] < 0.01


# ----------------------------------------------------------------------------- paired_test


def test_paired_test_detects_planted_difference() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.1, 300)
    b = a + 0.02 + rng.normal(0, 0.05, 300)
    res = paired_test(a, b, n_boot=2000)
    assert set(res) == {
        "statistic",
        "estimate",
        "ci_low",
        "ci_high",
        "p_value",
        "p_value_ttest",
        "n",
    }
    assert res["statistic"] == "mean"
    assert res["estimate"] == pytest.approx(np.mean(b - a))
    assert res["p_value"] < 0.01
    assert res["p_value_ttest"] < 0.01
    assert 0 < res["ci_low"] < res["estimate"] < res["ci_high"]
    assert res["n"] == 300


def test_paired_test_null() -> None:
    a = np.random.default_rng(1).random(200)
    same = paired_test(a, a + 0.0)
    assert same["estimate"] == 0.0
    assert same["p_value"] == 1.0 and same["p_value_ttest"] == 1.0
    # symmetric noise with exactly zero mean difference -> no evidence of a difference
    z = np.random.default_rng(2).normal(0, 0.1, 100)
    res = paired_test(a, a + np.r_[z, -z], n_boot=2000, rng=3)
    assert res["estimate"] == pytest.approx(0.0, abs=1e-12)
    assert res["p_value"] > 0.05 and res["p_value_ttest"] > 0.05
    assert res["ci_low"] < 0 < res["ci_high"]


def test_paired_test_drops_nan_pairs_and_is_deterministic() -> None:
    a = np.array([0.1, np.nan, 0.3, 0.5, 0.2])
    b = np.array([0.2, 0.4, np.nan, 0.9, 0.2])
    res = paired_test(a, b, n_boot=500, rng=5)
    assert res["n"] == 3
    assert res["estimate"] == pytest.approx((0.1 + 0.4 + 0.0) / 3)
    assert res == paired_test(a, b, n_boot=500, rng=5)
    # with 3 pairs there are only 2^3 sign patterns: p is large
    assert res["p_value"] > 0.2


def test_paired_test_gap() -> None:
    rng = np.random.default_rng(4)
    n = 400
    labels = pd.Categorical(rng.choice(["F", "M"], size=n))
    is_f = np.asarray(labels == "F")
    a = 0.5 + rng.normal(0, 0.05, n)  # no gap
    b = a + np.where(is_f, 0.1, -0.1)  # gap of about 0.2 planted
    res = paired_test(a, b, groups=labels, statistic="gap", n_boot=1000)
    gap_a = abs(a[is_f].mean() - a[~is_f].mean())
    gap_b = abs(b[is_f].mean() - b[~is_f].mean())
    assert res["estimate"] == pytest.approx(gap_b - gap_a)
    assert res["p_value"] < 0.01
    assert res["ci_low"] < res["estimate"] < res["ci_high"]
    assert math.isnan(res["p_value_ttest"])
    # identical methods: gap difference exactly 0 in every replicate -> p = 1
    same = paired_test(a, a.copy(), groups=labels, statistic="gap", n_boot=200)
    assert same["estimate"] == same["ci_low"] == same["ci_high"] == 0.0
    assert same["p_value"] == 1.0


def test_paired_test_p_values_are_calibrated() -> None:
    # A borderline planted effect: the two-sided bootstrap p-value must agree with whether the
    # 95% percentile CI covers 0 (p < 0.05 <=> 0 outside the CI), and the sign-flip permutation
    # p-value must agree with the paired t-test on a large sample.
    rng = np.random.default_rng(4)
    n = 400
    labels = pd.Categorical(rng.choice(["F", "M"], size=n))
    is_f = np.asarray(labels == "F")
    a = 0.5 + rng.normal(0, 0.05, n)
    b = a + np.where(is_f, 0.01, -0.01) + rng.normal(0, 0.05, n)
    res = paired_test(a, b, groups=labels, statistic="gap", n_boot=2000)
    covers_zero = res["ci_low"] <= 0 <= res["ci_high"]
    assert 0.01 < res["p_value"] < 0.5
    assert covers_zero == (res["p_value"] >= 0.05)
    c = a + 0.005 + rng.normal(0, 0.05, n)
    mean = paired_test(a, c, n_boot=4000)
    assert 0.01 < mean["p_value"] < 0.9
    assert mean["p_value"] == pytest.approx(mean["p_value_ttest"], abs=0.03)


def test_paired_test_bad_input() -> None:
    with pytest.raises(DataError, match="groups"):
        paired_test(np.ones(3), np.ones(3), statistic="gap")
    with pytest.raises(DataError, match="length"):
        paired_test(np.ones(3), np.ones(4))
    with pytest.raises(DataError, match="statistic"):
        paired_test(np.ones(3), np.ones(3), statistic="median")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- item exposure


def test_item_group_exposure_hand_values() -> None:
    topk = np.array([[0, 1], [0, 2]])
    groups = np.array([0, 0, 1, -1])  # item 3 belongs to no group
    counts = np.array([6.0, 2.0, 1.0, 1.0])  # total 10
    frame = item_group_exposure(topk, groups, ["a", "b"], counts, k=2, position_weighted=False)
    assert list(frame.columns) == ["item_group", "exposure_share", "interaction_share", "ratio"]
    assert frame["item_group"].tolist() == ["a", "b"]
    # exposure: item0 = 2, item1 = 1, item2 = 1 (total 4) -> a = 3/4, b = 1/4
    np.testing.assert_allclose(frame["exposure_share"], [0.75, 0.25])
    # interactions: a = (6 + 2)/10, b = 1/10 -> ratio a = 0.75/0.8, b = 0.25/0.1
    np.testing.assert_allclose(frame["interaction_share"], [0.8, 0.1])
    np.testing.assert_allclose(frame["ratio"], [0.9375, 2.5])
    # position weighted: item0 = 1 + 1, item1 = item2 = 1/log2(3) = c
    c = 1 / math.log2(3)
    weighted = item_group_exposure(topk, groups, ["a", "b"], counts, k=2)
    np.testing.assert_allclose(weighted["exposure_share"], [(2 + c) / (2 + 2 * c), c / (2 + 2 * c)])


def test_item_group_exposure_multi_valued_membership() -> None:
    # item 0 is in genres a and b (counts half for each), item 1 only in b
    member = sp.csr_matrix(np.array([[1, 1], [0, 1], [0, 0]]))
    frame = item_group_exposure(
        np.array([[0], [1]]), member, ["a", "b"], np.array([2.0, 2.0, 0.0]), k=1
    )
    np.testing.assert_allclose(frame["exposure_share"], [0.25, 0.75])
    np.testing.assert_allclose(frame["interaction_share"], [0.25, 0.75])
    np.testing.assert_allclose(frame["ratio"], [1.0, 1.0])


def test_item_group_exposure_with_popularity_tiers_and_zero_share() -> None:
    pop = np.array([50.0, 30.0, 10.0, 5.0, 5.0, 0.0])
    tiers = popularity_tiers(pop)  # head {0}, mid {1}, tail {2, 3, 4, 5}
    frame = item_group_exposure(
        np.array([[0, 1], [5, 2]]), tiers, list(TIER_NAMES), pop, k=2, position_weighted=False
    )
    np.testing.assert_allclose(frame["exposure_share"], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(frame["interaction_share"], [0.5, 0.3, 0.2])
    with pytest.warns(DegenerateMetricWarning, match="no training interactions"):
        z = item_group_exposure(
            np.array([[0]]), np.array([0, 1]), ["x", "y"], np.array([1.0, 0]), 1
        )
    assert math.isnan(z["ratio"][1]) and z["ratio"][0] == 1.0


def test_item_group_exposure_bad_input() -> None:
    with pytest.raises(DataError, match="group_names"):
        item_group_exposure(np.array([[0]]), np.array([0, 2]), ["a", "b"], np.ones(2), 1)
    with pytest.raises(DataError, match="length n_items"):
        item_group_exposure(np.array([[0]]), np.array([0]), ["a"], np.ones(2), 1)
    with pytest.raises(DataError, match="shape"):
        item_group_exposure(np.array([[0]]), sp.csr_matrix(np.ones((2, 3))), ["a"], np.ones(2), 1)
