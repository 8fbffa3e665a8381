"""Per-group validation NDCG: worst-group model selection and validation-driven reweighting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from debiasrec.data import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.inproc import STRATEGIES, GroupValidation
from debiasrec.debias.inproc.group_validation import group_means, multiplicative_weights
from debiasrec.errors import ConfigError
from debiasrec.experiment.evaluate import EvalConfig, evaluate_model
from debiasrec.models import BPR


def test_group_means_by_hand() -> None:
    means, cnt = group_means(np.array([0.1, 0.3, np.nan, 0.5, 0.7]), np.array([0, 0, 0, 1, -1]), 3)
    np.testing.assert_allclose(means[:2], [0.2, 0.5])
    assert math.isnan(means[2]) and list(cnt) == [2, 1, 0]


def test_multiplicative_weights_by_hand() -> None:
    share = np.array([0.25, 0.75])
    w = multiplicative_weights(np.ones(2), np.array([0.2, 0.4]), 1.0, share, 10.0)
    # m = 0.3: raw w = exp(1/3), exp(-1/3); rescaled so that 0.25 w_0 + 0.75 w_1 = 1
    raw = np.exp([1 / 3, -1 / 3])
    np.testing.assert_allclose(w, raw / (share @ raw))
    assert share @ w == pytest.approx(1.0)
    # clipping to [1/max, max] before the rescale; NaN utility leaves a group's weight alone
    w = multiplicative_weights(np.ones(2), np.array([0.0, 1.0]), 50.0, share, 2.0)
    np.testing.assert_allclose(w, np.array([2.0, 0.5]) / (share @ np.array([2.0, 0.5])))
    w = multiplicative_weights(np.array([1.0, 3.0]), np.array([np.nan, 0.5]), 1.0, share, 10.0)
    np.testing.assert_allclose(w, np.array([1.0, 3.0]) / (share @ np.array([1.0, 3.0])))


PLANTED = SyntheticConfig(n_users=500, n_items=150, minority_share=0.15, genre_bias=10.0,
                          mean_interactions=20)  # fmt: skip
TRAIN = {"epochs": 30, "lr": 0.03, "batch_size": 512, "eval_every": 2, "patience": 4}


@pytest.fixture(scope="module")
def planted():
    ds, _ = generate(PLANTED, rng=0)
    return random_split(ds, rng=0)


def _fit(split, seed, strategies, **train):
    return BPR(dim=2, reg=0.01, train={**TRAIN, **train}, strategies=strategies).fit(
        split.train, valid=split.valid, rng=seed
    )


def _f_m(model, split) -> tuple[float, float]:
    ev = evaluate_model(
        model, split.train, split.valid, split.test,
        config=EvalConfig(ks=[10], metrics=["ndcg"], attrs=["gender"], n_boot=0),
    )  # fmt: skip
    r = ev.results.set_index(["metric", "group"])["value"]
    return r[("ndcg@10", "gender=F")], r[("ndcg@10", "gender=M")]


def test_reports_group_numbers_and_worst_group_selection_follows_them(planted) -> None:
    key = "valid_worst_ndcg@10_gender"
    model = _fit(planted, 0, [GroupValidation(attr="gender")], select_metric=key)
    rows = [e for e in model.history_.epochs if key in e]
    assert rows
    for e in rows:
        f, m = e["valid_ndcg@10_gender=F"], e["valid_ndcg@10_gender=M"]
        assert e[key] == pytest.approx(min(f, m))
        assert e["valid_gap_ndcg@10_gender"] == pytest.approx(abs(f - m))
    best = max(rows, key=lambda e: e[key])
    assert model.history_.best_epoch == int(best["epoch"])  # selected by the worst group
    assert model.history_.best_value == pytest.approx(best[key])


def test_validation_reweighting_raises_the_under_served_group(planted) -> None:
    base = [_f_m(_fit(planted, s, []), planted) for s in (0, 1)]
    rew = [
        _f_m(_fit(planted, s, [GroupValidation(attr="gender", reweight_eta=1.0)]), planted)
        for s in (0, 1)
    ]
    f0, m0 = np.mean(base, axis=0)
    f1, m1 = np.mean(rew, axis=0)
    assert f1 >= f0 + 0.02 and (m1 - f1) <= 0.8 * (m0 - f0)
    model = _fit(planted, 0, [GroupValidation(attr="gender", reweight_eta=1.0)])
    last = [e for e in model.history_.epochs if "group_weight_gender=F" in e][-1]
    assert last["group_weight_gender=F"] > 1.0 > last["group_weight_gender=M"]


def test_activity_groups_and_config_errors(planted) -> None:
    assert STRATEGIES.lookup("group_validation") is GroupValidation
    model = _fit(planted, 0, [GroupValidation(activity=True, k=5)], epochs=2, eval_every=1)
    row = model.history_.epochs[-1]
    assert {"valid_ndcg@5_activity=cold", "valid_worst_ndcg@5_activity"} <= set(row)
    with pytest.raises(ConfigError, match="exactly one"):
        GroupValidation()
    with pytest.raises(ConfigError, match="max_weight"):
        GroupValidation(attr="gender", max_weight=0.5)


def test_group_ndcg_reuses_the_trainers_validation_ranking(planted, monkeypatch) -> None:
    """With the Trainer's metric at the strategy's k, the per-group NDCG comes from the
    Trainer's own per-user validation values (no second full ranking) and equals what the
    strategy computes by itself at that k."""
    from debiasrec.debias.inproc import group_validation as gv

    calls = []
    real = gv.full_ranking_topk

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(gv, "full_ranking_topk", counted)
    reused = _fit(planted, 0, [GroupValidation(attr="gender", k=10)], epochs=4)
    assert calls == []
    own = _fit(planted, 0, [GroupValidation(attr="gender", k=10)], epochs=4, metric="recall@10")
    assert len(calls) == 2  # epochs 2 and 4
    key = "valid_ndcg@10_gender=F"
    a = [r[key] for r in reused.history_.epochs if key in r]
    b = [r[key] for r in own.history_.epochs if key in r]
    assert len(a) == 2 and a == b
