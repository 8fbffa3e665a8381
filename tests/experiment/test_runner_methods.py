"""The runner with debiasing methods: every level runs, stages are cached by content hash, seeds
are aggregated, methods are tested against their base model and explained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _pre_helpers import DropShare, registered

from debiasrec.experiment.runner import ExperimentConfig, prepare_data, run_experiment
from debiasrec.models import BPR


def _config(data, *, post_strength: float = 0.5, seeds=(0, 1)) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "name": "methods-test",
            "data": {
                "source": str(data.interactions),
                "users": str(data.users),
                "items": str(data.items),
                "sensitive": ["gender", "age"],
            },
            "models": [
                {"model": "pop"},
                {"model": "bpr", "params": {"dim": 8, "train": {"epochs": 2}}},
            ],
            "methods": [
                {
                    "name": "bpr-adv",
                    "model": "bpr",
                    "params": {"dim": 4},
                    "inproc": [
                        {
                            "strategy": "adversarial",
                            "attrs": ["gender"],
                            "strength": 0.5,
                            "validate_leakage": False,
                        }
                    ],
                },
                {
                    "name": "bpr-drop",
                    "model": "bpr",
                    "pre": [{"method": "test_drop", "strength": 0.2}],
                },
                {
                    "name": "bpr-cal",
                    "model": "bpr",
                    "post": [{"method": "calibrated", "strength": post_strength}],
                },
                {
                    "name": "bpr-exp",
                    "model": "bpr",
                    "post": [
                        {
                            "method": "exposure",
                            "self_calibrate": {
                                "target": "long_tail_share >= 0.3",
                                "grid": 3,
                                "refine": 1,
                            },
                        }
                    ],
                },
            ],
            "eval": {"ks": [5], "n_boot": 20},
            "seeds": list(seeds),
            "explain_users": 3,
        }
    )


@pytest.fixture(scope="module")
def transforms():
    with registered():
        yield


@pytest.fixture(scope="module")
def first_run(tiny_parquet, transforms, tmp_path_factory):
    out = tmp_path_factory.mktemp("methods") / "run"
    return run_experiment(_config(tiny_parquet), out), out


def _counts(summary_path: Path) -> dict[str, dict[str, int]]:
    return json.loads(summary_path.read_text())["stage_totals"]


def test_every_level_gives_results(first_run) -> None:
    result, out = first_run
    methods = set(result.results["method"])
    assert methods == {"pop", "bpr", "bpr-adv", "bpr-drop", "bpr-cal", "bpr-exp"}
    assert set(result.results["seed"]) == {0, 1}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["baselines"] == {m: "bpr" for m in methods - {"pop", "bpr"}}
    info = summary["methods"]
    assert info["bpr-adv"]["levels"] == ["inproc"] and info["bpr-cal"]["levels"] == ["post"]
    assert info["bpr-drop"]["pre_reports"][0]["kind"] == "test_drop"
    assert info["bpr-drop"]["pre_reports"][0]["dropped"] > 0
    assert set(info["bpr-exp"]["self_calibration"]) == {"0", "1"}
    # post-processed lists are re-ranked from the trained BPR, not retrained
    assert summary["stage_totals"]["fit"] == {"computed": 2 * 4, "cached": 0}
    assert summary["stage_totals"]["post"] == {"computed": 2 * 2, "cached": 0}
    # calibration and leakage are measured for every method
    res = result.results
    for m in methods:
        sub = res[res.method == m]
        assert {"miscalibration@5", "leakage_auc@5", "gap_miscalibration@5"} <= set(sub.metric), m
    emb = res[res.metric == "leakage_auc_emb"]
    assert set(emb.method) == {"bpr", "bpr-adv", "bpr-drop"}  # models with user embeddings


def test_method_params_override_the_base_model(first_run) -> None:
    result, _ = first_run
    assert result.models[("bpr-adv", 0)].config.dim == 4  # the method's override
    assert result.models[("bpr-adv", 0)].config.train.epochs == 2  # the rest from the base
    assert result.models[("bpr", 0)].config.dim == 8


def test_pre_transform_changes_the_training_data(first_run) -> None:
    result, _ = first_run
    drop = result.models[("bpr-drop", 0)]
    base = result.models[("bpr", 0)]
    assert drop.train_csr_.nnz < base.train_csr_.nnz  # trained on the transformed split
    assert drop.train_csr_.nnz == pytest.approx(0.8 * base.train_csr_.nnz, rel=0.15)


def test_rerun_of_unchanged_config_recomputes_nothing(first_run, tiny_parquet, monkeypatch) -> None:
    _, out = first_run
    fits: list[str] = []
    original = BPR._fit
    monkeypatch.setattr(
        BPR, "_fit", lambda self, *a, **kw: (fits.append("bpr"), original(self, *a, **kw))[1]
    )
    calls = DropShare.calls
    before = pd.read_parquet(out / "results.parquet")
    again = run_experiment(_config(tiny_parquet), out)
    assert fits == [] and DropShare.calls == calls  # nothing trained or transformed
    totals = _counts(out / "summary.json")
    for stage in ("split", "pre", "fit", "eval", "post"):
        assert totals[stage]["computed"] == 0, (stage, totals)
        assert totals[stage]["cached"] > 0, (stage, totals)
    pd.testing.assert_frame_equal(again.results.reset_index(drop=True), before)


def test_changed_post_strength_reruns_only_post(first_run, tiny_parquet, tmp_path, monkeypatch):
    _, out = first_run
    fits: list[str] = []
    original = BPR._fit
    monkeypatch.setattr(
        BPR, "_fit", lambda self, *a, **kw: (fits.append("bpr"), original(self, *a, **kw))[1]
    )
    new_out = tmp_path / "changed"
    result = run_experiment(_config(tiny_parquet, post_strength=0.9), new_out, cache=out / "cache")
    assert fits == []
    log = result.stages
    assert log.count("fit") == 0 and log.count("eval") == 0 and log.count("pre") == 0
    changed = [r for r in log.records if r.stage == "post" and r.status == "computed"]
    assert len(changed) == 2
    assert {r.label for r in changed} == {"bpr-cal"}  # two seeds; bpr-exp is cached
    assert log.count("post", "cached") == 2


def test_cache_key_depends_on_the_seed_and_model_config(tiny_parquet, transforms, tmp_path):
    cfg = _config(tiny_parquet, seeds=(0,))
    prepared = prepare_data(cfg)
    cache = tmp_path / "cache"
    run_experiment(cfg, prepared=prepared, cache=cache)
    data = cfg.model_dump(mode="json")
    data["models"][1]["params"] = {"dim": 4, "train": {"epochs": 2}}
    cfg2 = ExperimentConfig.model_validate(data)
    log = run_experiment(cfg2, prepared=prepared, cache=cache).stages
    # pop, and bpr-adv, whose own params override sets dim = 4 either way
    assert log.count("fit", "cached") == 2
    assert log.count("fit") == 2  # bpr and bpr-drop depend on the base model's dim


def test_seed_aggregate_tests_and_frontier(first_run) -> None:
    result, out = first_run
    agg = pd.read_parquet(out / "aggregate.parquet")
    row = agg[(agg.method == "bpr") & (agg.metric == "ndcg@5") & (agg.group == "all")].iloc[0]
    vals = result.results.query("method == 'bpr' and metric == 'ndcg@5' and group == 'all'")
    assert row["n_seeds"] == 2 and row["mean"] == pytest.approx(vals["value"].mean())
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    tests = pd.read_parquet(out / "tests.parquet")
    assert set(tests.method) == {"bpr-adv", "bpr-drop", "bpr-cal", "bpr-exp"}
    assert set(tests.baseline) == {"bpr"} and set(tests.seed) == {0, 1}
    assert set(tests.statistic) == {"mean", "gap"} and set(tests.group) == {"all", "gender", "age"}
    assert tests.p_value.between(0, 1).all()
    assert (tests.significant == (tests.p_value < 0.05)).all()
    frontier = pd.read_parquet(out / "frontier.parquet")
    assert {"gap_ndcg@5", "leakage_auc@5", "miscalibration@5", "gini@5"} <= set(
        frontier.fairness_metric
    )
    for _, sub in frontier.groupby(["fairness_metric", "group"]):
        assert sub.on_frontier.any()
        best = sub.loc[sub.accuracy.idxmax()]
        assert best.on_frontier or (sub[sub.accuracy == best.accuracy].on_frontier.any())
        front = sub[sub.on_frontier]
        for r in sub[~sub.on_frontier].itertuples():  # each dominated point is dominated
            assert ((front.accuracy >= r.accuracy) & (front.fairness <= r.fairness)).any()


def test_explanations_and_changes(first_run) -> None:
    _, out = first_run
    ex = pd.read_parquet(out / "explanations.parquet")
    assert ex.user_id.nunique() == 3
    assert set(ex.method) >= {"bpr", "bpr-cal", "pop"}
    shown = ex[ex.status != "removed"]
    assert shown.groupby(["method", "user_id"]).size().max() <= 5
    assert (shown.because != "").all()
    assert set(ex[ex.method == "bpr"].source) == {"item embeddings"}
    assert set(ex[ex.method == "pop"].source) == {"co-occurrence"}
    recs = pd.read_parquet(out / "recs" / "bpr-cal.parquet").query("seed == 0")
    base = pd.read_parquet(out / "recs" / "bpr.parquet").query("seed == 0")
    for user, sub in ex[ex.method == "bpr-cal"].groupby("user_id"):
        mine = set(recs[recs.user_id.astype(str) == user].item_id.astype(str))
        theirs = set(base[base.user_id.astype(str) == user].item_id.astype(str))
        assert set(sub[sub.status == "added"].item_id) == mine - theirs
        assert set(sub[sub.status == "removed"].item_id) == theirs - mine
    cal = pd.read_parquet(out / "calibration.parquet")
    for (_, _), sub in cal.groupby(["method", "user_id"]):
        assert sub.history.sum() == pytest.approx(1.0)
        assert sub.recommended.sum() == pytest.approx(1.0)


def test_in_memory_run_caches_nothing(tiny_parquet, transforms, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = _config(tiny_parquet, seeds=(0,))
    result = run_experiment(cfg)
    assert list(tmp_path.iterdir()) == []
    assert result.stages.count("fit", "cached") == 0
    assert np.isfinite(result.analysis["aggregate"]["mean"]).any()


@pytest.mark.parametrize(
    "method",
    [
        {
            "name": "m",
            "model": "bpr",
            "post": [{"method": "group_fair", "attr": "race", "strength": 0.5}],
        },
        {
            "name": "m",
            "model": "bpr",
            "post": [{"method": "exposure", "self_calibrate": {"target": "gap_ndcg:race<=0.01"}}],
        },
        {"name": "m", "model": "bpr", "inproc": [{"strategy": "adversarial", "attrs": ["race"]}]},
    ],
    ids=["post-attr", "target-attr", "inproc-attr"],
)
def test_unknown_attribute_in_a_method_fails_before_training(
    tiny_parquet, transforms, tmp_path, monkeypatch, method
) -> None:
    from debiasrec.errors import DataError

    fits: list[str] = []
    monkeypatch.setattr(BPR, "_fit", lambda *a, **kw: fits.append("bpr"))
    cfg = _config(tiny_parquet, seeds=(0,)).model_copy(update={"methods": []})
    cfg = ExperimentConfig.model_validate({**cfg.model_dump(), "methods": [method]})
    with pytest.raises(DataError, match="race"):
        run_experiment(cfg, tmp_path / "out")
    assert fits == [] and not (tmp_path / "out").exists()


def test_levelling_down_table_for_every_method_and_attribute(first_run) -> None:
    result, out = first_run
    lev = pd.read_parquet(out / "levelling.parquet")
    assert set(lev.method) == {"bpr-adv", "bpr-drop", "bpr-cal", "bpr-exp"}
    assert set(lev.attr) == {"gender", "age"} and (lev.n_seeds == 2).all()
    agg = result.analysis["aggregate"]
    for r in lev.itertuples():
        base = agg[(agg.method == r.baseline) & (agg.metric == "ndcg@5")].set_index("group")
        # the worse-off group is the base model's lowest group mean (seed means of group means
        # and the mean of seed-averaged users agree: the same users every seed)
        means = base["mean"][[g for g in base.index if g.startswith(f"{r.attr}=")]]
        assert means.idxmin() == f"{r.attr}={r.worse_group}"
        assert r.worse_ci_low <= r.worse_change <= r.worse_ci_high
        assert r.verdict in {
            "levelling up", "levelling up and down", "levelling down",
            "gap reduced, no significant group change", "gap not reduced",
        }  # fmt: skip
