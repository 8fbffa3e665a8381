"""Levelling-down analysis: who paid for a smaller group gap (hand-made numbers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from debiasrec.experiment.analysis import (
    LEVELLING_COLUMNS,
    change_status,
    levelling_down,
    levelling_verdict,
)
from debiasrec.experiment.evaluate import Evaluation

# users 0-5 are F (worse off), 6-13 are M; user 14 has no label
GENDER = pd.Categorical.from_codes([0] * 6 + [1] * 8 + [-1], categories=["F", "M"])
BASE_F = np.array([0.20, 0.22, 0.18, 0.21, 0.19, 0.20])
BASE_M = np.array([0.40, 0.42, 0.38, 0.41, 0.39, 0.40, 0.43, 0.37])


def _ev(f: np.ndarray, m: np.ndarray, extra: float = 0.3) -> Evaluation:
    vals = np.concatenate([f, m, [extra]])
    per_user = pd.DataFrame({"user": np.arange(15), "ndcg@10": vals})
    return Evaluation(
        per_user=per_user, results=pd.DataFrame(), topk=np.zeros((15, 1)), users=np.arange(15)
    )


def _one(method_f: np.ndarray, method_m: np.ndarray) -> pd.Series:
    evals = {("base", 0): _ev(BASE_F, BASE_M), ("m", 0): _ev(method_f, method_m)}
    out = levelling_down(evals, {"m": "base"}, {"gender": GENDER}, "ndcg@10", n_boot=500)
    assert list(out.columns) == LEVELLING_COLUMNS and len(out) == 1
    return out.iloc[0]


def test_change_status_from_the_ci() -> None:
    assert change_status(0.001, 0.02) == "gained"
    assert change_status(-0.02, -0.001) == "lost"
    assert change_status(-0.01, 0.01) == "stayed"
    assert change_status(0.0, 0.0) == "stayed"
    assert change_status(float("nan"), 0.1) == "unknown"


@pytest.mark.parametrize(
    ("gap", "worse", "better", "verdict"),
    [
        (-0.01, "gained", "stayed", "levelling up"),
        (-0.01, "gained", "gained", "levelling up"),
        (-0.01, "gained", "lost", "levelling up and down"),
        (-0.01, "stayed", "lost", "levelling down"),
        (-0.01, "lost", "lost", "levelling down"),
        (-0.01, "stayed", "stayed", "gap reduced, no significant group change"),
        (0.0, "gained", "gained", "gap not reduced"),
        (0.02, "stayed", "lost", "gap not reduced"),
        (float("nan"), "gained", "lost", "n/a"),
    ],
)
def test_levelling_verdict(gap: float, worse: str, better: str, verdict: str) -> None:
    assert levelling_verdict(gap, worse, better) == verdict


def test_women_unchanged_men_lowered_is_levelling_down() -> None:
    # the quick demo's group-fair re-ranker: F exactly as before, M 0.05 lower
    r = _one(BASE_F, BASE_M - 0.05)
    assert (r.worse_group, r.better_group) == ("F", "M")
    assert r.base_worse == pytest.approx(BASE_F.mean()) and r.base_better == pytest.approx(
        BASE_M.mean()
    )
    assert r.worse_change == pytest.approx(0.0) and r.worse_status == "stayed"
    assert r.better_change == pytest.approx(-0.05) and r.better_status == "lost"
    assert r.better_ci_high < 0 and r.n_worse == 6 and r.n_better == 8
    assert r.gap_change == pytest.approx(-0.05) and r.verdict == "levelling down"
    # every bootstrap replicate lowers the gap by 0.05: the CI is that point, p tiny
    assert r.gap_ci_low == pytest.approx(-0.05) and r.gap_ci_high == pytest.approx(-0.05)
    assert r.gap_p_value < 0.01


def test_women_raised_is_levelling_up() -> None:
    r = _one(BASE_F + np.array([0.03, 0.05, 0.04, 0.04, 0.05, 0.03]), BASE_M)
    assert r.worse_change == pytest.approx(0.04) and r.worse_status == "gained"
    assert r.worse_ci_low > 0 and r.better_status == "stayed"
    assert r.gap_change == pytest.approx(-0.04) and r.verdict == "levelling up"


def test_both_moved_is_up_and_down_and_a_wider_gap_is_not_reduced() -> None:
    r = _one(BASE_F + 0.02, BASE_M - 0.02)
    assert r.verdict == "levelling up and down" and r.gap_change == pytest.approx(-0.04)
    r = _one(BASE_F - 0.02, BASE_M)
    assert r.worse_status == "lost" and r.verdict == "gap not reduced"
    assert r.gap_change == pytest.approx(0.02)


def test_per_user_values_are_averaged_over_seeds_before_the_paired_test() -> None:
    # seed 0: F +0.04, seed 1: F 0.0 -> mean change +0.02 per F user; M unchanged
    evals = {
        ("base", 0): _ev(BASE_F, BASE_M),
        ("base", 1): _ev(BASE_F + 0.01, BASE_M),
        ("m", 0): _ev(BASE_F + 0.04, BASE_M),
        ("m", 1): _ev(BASE_F + 0.01, BASE_M),
        ("m", 2): _ev(BASE_F + 0.5, BASE_M),  # no base run for seed 2: not used
    }
    out = levelling_down(evals, {"m": "base"}, {"gender": GENDER}, "ndcg@10", n_boot=200)
    r = out.iloc[0]
    assert r.n_seeds == 2 and r.worse_change == pytest.approx(0.02)
    assert r.base_worse == pytest.approx(BASE_F.mean() + 0.005)


def test_multi_group_attribute_uses_lowest_and_highest_base_groups() -> None:
    age = pd.Categorical.from_codes([0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2, 0, 1, 2, 0], ["a", "b", "c"])
    evals = {("base", 0): _ev(BASE_F, BASE_M), ("m", 0): _ev(BASE_F, BASE_M)}
    r = levelling_down(evals, {"m": "base"}, {"age": age}, "ndcg@10", n_boot=0).iloc[0]
    vals = np.concatenate([BASE_F, BASE_M, [0.3]])
    means = {g: vals[np.asarray(age.codes) == i].mean() for i, g in enumerate("abc")}
    assert r.worse_group == min(means, key=means.get)
    assert r.better_group == max(means, key=means.get)
    assert r.worse_status == "unknown" and r.verdict == "gap not reduced"  # no CI without n_boot
