"""Leakage probe: hand-checked AUC (with ties), macro AUC, balanced accuracy, t-intervals; the
probe finds a planted signal, reports chance on noise, and works on recommendation lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from debiasrec.errors import ConfigError, DataError
from debiasrec.metrics import DegenerateMetricWarning
from debiasrec.metrics.leakage import (
    LEAKAGE_COLUMNS,
    auc,
    balanced_accuracy,
    leakage,
    leakage_frame,
    macro_auc,
    probe_recs,
    recs_representation,
    stratified_folds,
    t_interval,
)


def test_auc_hand_checked_with_ties():
    # positives {0.4, 0.8} vs negatives {0.1, 0.4}: 1 + 0.5 (tie) + 1 + 1 = 3.5 of 4 pairs
    assert auc(np.array([0.1, 0.4, 0.4, 0.8]), np.array([0, 1, 0, 1])) == pytest.approx(0.875)
    assert auc(np.array([1.0, 1.0, 1.0]), np.array([1, 0, 0])) == pytest.approx(0.5)
    assert auc(np.array([3.0, 2.0, 1.0]), np.array([0, 1, 1])) == pytest.approx(0.0)


def test_auc_single_class_is_nan_with_warning():
    with pytest.warns(DegenerateMetricWarning):
        assert np.isnan(auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_macro_auc_hand_checked():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],
            [0.3, 0.6, 0.1],
            [0.1, 0.1, 0.8],
            [0.5, 0.1, 0.4],
        ]
    )
    # class 0: pos {0.9, 0.2} vs neg {0.1, 0.3, 0.1, 0.5}: 4 + 2 = 6 of 8
    # class 1: pos {0.8, 0.6} vs neg {0.05, 0.7, 0.1, 0.1}: 4 + 3 = 7 of 8
    # class 2: pos {0.8, 0.4} vs neg {0.05, 0.1, 0.1, 0.1}: 8 of 8
    assert macro_auc(proba, y) == pytest.approx((6 / 8 + 7 / 8 + 1.0) / 3)


def test_balanced_accuracy_hand_checked():
    # recall of class 0: 2/3, class 1: 1/1 -> 5/6 (plain accuracy would be 3/4)
    assert balanced_accuracy(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])) == pytest.approx(5 / 6)
    assert balanced_accuracy(np.array([2, 2, 2]), np.array([0, 1, 2])) == pytest.approx(1 / 3)


def test_t_interval_hand_checked():
    m, lo, hi = t_interval(np.array([1.0, 2.0, 3.0]), 0.95)
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert (m, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))


def test_stratified_folds_balance_classes():
    y = np.array([0] * 50 + [1] * 20)
    f = stratified_folds(y, 5, np.random.default_rng(0))
    for k in range(5):
        assert (y[f == k] == 1).sum() == 4 and (y[f == k] == 0).sum() == 10


def _planted(n=600, d=16, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    lab = rng.choice(["M", "F"], size=n, p=[0.7, 0.3])
    x = rng.standard_normal((n, d))
    x[:, 0] += shift * (lab == "F")
    return x, pd.Categorical(lab)


@pytest.mark.parametrize("probe", ["logreg", "mlp"])
def test_random_embeddings_give_chance(probe):
    x, lab = _planted(shift=0.0, seed=3)
    res = leakage(x, lab, probe=probe, rng=0)
    assert res["auc_ci_low"] <= 0.5 <= res["auc_ci_high"]
    assert abs(res["auc"] - 0.5) < 0.07
    assert abs(res["bacc"] - 0.5) < 0.07


@pytest.mark.parametrize("probe", ["logreg", "mlp"])
def test_planted_signal_is_found(probe):
    x, lab = _planted(shift=2.0)
    res = leakage(x, lab, probe=probe, rng=0)
    assert res["auc"] > 0.8 and res["auc_ci_low"] > 0.7
    assert res["bacc"] > 0.7
    assert res["n"] == 600 and res["n_classes"] == 2 and len(res["auc_folds"]) == 5


def test_nonlinear_signal_needs_the_mlp():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((800, 2))
    lab = pd.Categorical(np.where(x[:, 0] * x[:, 1] > 0, "a", "b"))  # XOR: no linear signal
    assert leakage(x, lab, probe="logreg", rng=0)["auc"] < 0.6
    assert leakage(x, lab, probe="mlp", rng=0)["auc"] > 0.85


def test_multiclass_macro_auc_and_bacc():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, size=800)
    x = rng.standard_normal((800, 8))
    x[:, :4] += 2.0 * np.eye(4)[codes]
    res = leakage(x, pd.Categorical.from_codes(codes, ["a", "b", "c", "d"]), rng=0)
    assert res["n_classes"] == 4 and res["chance_bacc"] == pytest.approx(0.25)
    assert res["auc"] > 0.85 and res["bacc"] > 0.5
    noise = leakage(rng.standard_normal((800, 8)), pd.Categorical(codes), rng=0)
    assert abs(noise["auc"] - 0.5) < 0.05 and abs(noise["bacc"] - 0.25) < 0.06


def test_missing_labels_are_left_out_and_seed_is_deterministic():
    x, lab = _planted(shift=2.0)
    lab2 = pd.Categorical(lab.astype(object).tolist()[:500] + [None] * 100)
    a = leakage(x, lab2, rng=5)
    b = leakage(x, lab2, rng=5)
    assert a["n"] == 500 and a["auc"] == b["auc"] and a["auc_folds"] == b["auc_folds"]


def test_input_errors():
    x, lab = _planted()
    with pytest.raises(ConfigError):
        leakage(x, lab, probe="svm")  # type: ignore[arg-type]
    with pytest.raises(DataError):
        leakage(x[:10], lab)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError):
        leakage(bad, lab)


def test_leakage_frame_rows_match_results_contract():
    x, lab = _planted(shift=2.0)
    df = leakage_frame(x, {"gender": lab}, probes=("logreg", "mlp"), rng=0)
    assert tuple(df.columns) == LEAKAGE_COLUMNS
    assert df["metric"].tolist() == [
        "leakage_auc",
        "leakage_bacc",
        "leakage_auc_mlp",
        "leakage_bacc_mlp",
    ]
    assert (df["group"] == "gender").all() and (df["ci_low"] <= df["value"]).all()


def test_recs_representation_multi_hot_and_rank_weights():
    topk = np.array([[2, 0, -1], [1, 2, 3]])
    dense = recs_representation(topk, 4, svd_dim=None)
    np.testing.assert_array_equal(dense, [[1, 0, 1, 0], [0, 1, 1, 1]])
    ranked = recs_representation(topk, 4, svd_dim=None, weighting="rank")
    assert ranked[0, 2] == pytest.approx(1.0) and ranked[0, 0] == pytest.approx(1 / np.log2(3))
    red = recs_representation(np.tile(topk, (10, 1)), 4, svd_dim=2, rng=0)
    assert red.shape == (20, 2)


def test_probe_recs_finds_groups_from_lists_only():
    rng = np.random.default_rng(0)
    n, n_items = 400, 100
    lab = rng.choice(["F", "M"], size=n)
    # F users are recommended mostly from items 0..49, M users from 50..99
    topk = np.stack(
        [
            rng.choice(np.arange(0, 50) if g == "F" else np.arange(50, 100), 10, replace=False)
            if rng.random() < 0.7
            else rng.choice(n_items, 10, replace=False)
            for g in lab
        ]
    )
    res = probe_recs(topk, n_items, pd.Categorical(lab), svd_dim=16, rng=0)
    assert res["auc"] > 0.8
    shuffled = probe_recs(topk, n_items, pd.Categorical(rng.permutation(lab)), svd_dim=16, rng=0)
    assert abs(shuffled["auc"] - 0.5) < 0.08
