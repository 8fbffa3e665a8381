"""The experiment runner through its Python API (``run_experiment``) on a 60-user dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debiasrec.errors import DataError
from debiasrec.experiment.evaluate import RESULT_COLUMNS
from debiasrec.experiment.runner import (
    ExperimentConfig,
    ExperimentResult,
    prepare_data,
    run_experiment,
)


def _config(data, *, seeds=(0,), models=None, **eval_kw) -> ExperimentConfig:
    models = models or [
        {"model": "pop"},
        {"model": "bpr", "params": {"dim": 8, "train": {"epochs": 2}}},
    ]
    return ExperimentConfig.model_validate(
        {
            "name": "runner-test",
            "data": {
                "source": str(data.interactions),
                "users": str(data.users),
                "items": str(data.items),
                "sensitive": ["gender", "age"],
            },
            "models": models,
            "eval": {"ks": [5], "n_boot": 20, **eval_kw},
            "seeds": list(seeds),
        }
    )


@pytest.fixture(scope="module")
def prepared(tiny_parquet):
    return prepare_data(_config(tiny_parquet))


@pytest.fixture(scope="module")
def two_seeds(tiny_parquet, prepared) -> ExperimentResult:
    return run_experiment(_config(tiny_parquet, seeds=(0, 1)), prepared=prepared)


def test_in_memory_run_writes_nothing(tiny_parquet, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    events: list[str] = []
    cfg = _config(tiny_parquet, models=[{"model": "pop"}])
    result = run_experiment(cfg, on_event=events.append)
    assert list(tmp_path.iterdir()) == []
    assert isinstance(result, ExperimentResult)
    assert list(result.results.columns) == RESULT_COLUMNS
    assert set(result.results["method"]) == {"pop"}
    assert result.dataset.n_users == 60 and result.report is not None
    assert sum(len(p) for p in result.split) == result.dataset.n_interactions
    assert events[0].startswith("data: 60 users") and events[-1].startswith("pop seed 0")
    assert "ndcg@5" in events[-1]  # the first evaluated cut-off, not a missing @10
    assert {"data", "total", "pop/seed0/fit", "pop/seed0/eval"} <= set(result.timings)


def test_two_seeds_give_rows_for_both(two_seeds) -> None:
    res = two_seeds.results
    for method in ("pop", "bpr"):
        assert set(res.loc[res.method == method, "seed"]) == {0, 1}
    assert set(two_seeds.models) == {("pop", 0), ("pop", 1), ("bpr", 0), ("bpr", 1)}
    key = ["metric", "group"]
    pop0 = res[(res.method == "pop") & (res.seed == 0)].set_index(key)["value"]
    pop1 = res[(res.method == "pop") & (res.seed == 1)].set_index(key)["value"]
    pd.testing.assert_series_equal(pop0, pop1)  # Pop has no randomness
    bpr0 = res[(res.method == "bpr") & (res.seed == 0)].set_index(key)["value"]
    bpr1 = res[(res.method == "bpr") & (res.seed == 1)].set_index(key)["value"]
    assert not np.allclose(bpr0.to_numpy(), bpr1.to_numpy(), equal_nan=True)  # the seed is used


def test_same_seed_same_results(tiny_parquet, prepared, two_seeds) -> None:
    again = run_experiment(_config(tiny_parquet, seeds=(1,)), prepared=prepared)
    first = two_seeds.results[two_seeds.results.seed == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(again.results, first)
    np.testing.assert_array_equal(
        again.evaluations[("bpr", 1)].topk, two_seeds.evaluations[("bpr", 1)].topk
    )


def test_results_have_every_configured_metric_and_group(two_seeds) -> None:
    res = two_seeds.results
    metrics = set(res["metric"])
    for m in ("ndcg", "recall", "mrr", "hit", "precision", "map", "arp", "aplt", "novelty", "ild"):
        assert f"{m}@5" in metrics and f"gap_{m}@5" in metrics, m
    assert {"coverage@5", "gini@5", "exposure_share@5"} <= metrics
    groups = set(res["group"])
    assert {"all", "gender", "gender=F", "gender=M", "age", "age=18-24"} <= groups
    assert res["value"].dtype == np.float64 and res["seed"].dtype == np.int64


@pytest.mark.filterwarnings("ignore:group.*have no user evaluated")  # F&<18 may be empty
def test_eval_attrs_and_intersections(tiny_parquet, prepared) -> None:
    cfg = _config(
        tiny_parquet, models=[{"model": "pop"}], attrs=["gender"], intersections=["gender&age"]
    )
    res = run_experiment(cfg, prepared=prepared).results
    groups = set(res["group"])
    assert "age" not in groups and "age=18-24" not in groups
    assert {"gender", "gender&age", "gender=F", "gender&age=F&18-24"} <= groups


def test_unknown_attribute_fails_before_training(tiny_parquet, prepared) -> None:
    events: list[str] = []
    cfg = _config(tiny_parquet, intersections=["gender&race"])
    with pytest.raises(DataError, match="race"):
        run_experiment(cfg, prepared=prepared, on_event=events.append)
    assert events == []  # checked before anything is loaded further or fitted


def test_result_folder_recs_k(tiny_parquet, prepared, tmp_path: Path) -> None:
    cfg = _config(tiny_parquet, models=[{"model": "pop"}]).model_copy(update={"recs_k": 3})
    run_experiment(cfg, tmp_path / "out", prepared=prepared)
    recs = pd.read_parquet(tmp_path / "out" / "recs" / "pop.parquet")
    assert recs.groupby("user_id")["rank"].max().eq(3).all()
    assert set(recs["user_id"]) <= set(range(60)) and set(recs["item_id"]) <= set(range(40))


def test_sampled_evaluation(tiny_parquet, prepared) -> None:
    cfg = _config(tiny_parquet, models=[{"model": "pop"}], sampled_negatives=5, n_boot=0)
    full = run_experiment(
        _config(tiny_parquet, models=[{"model": "pop"}], n_boot=0), prepared=prepared
    ).results
    sampled = run_experiment(cfg, prepared=prepared).results

    def ndcg(r):
        return r[(r.metric == "ndcg@5") & (r.group == "all")]["value"].iloc[0]

    # Fewer candidates: ranking the held-out items among 5 negatives each is easier.
    assert ndcg(sampled) > ndcg(full)
