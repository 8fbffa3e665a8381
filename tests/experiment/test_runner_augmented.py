"""The runner with the shipped transforms that append users, and with the LM / multi-task models."""

from __future__ import annotations

import pandas as pd
import pytest

from debiasrec.experiment.runner import ExperimentConfig, run_experiment


def _cfg(data, methods, models=None) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "name": "augmented",
            "data": {"source": str(data.interactions), "users": str(data.users),
                     "items": str(data.items), "sensitive": ["gender", "age"]},
            "models": models or [{"model": "bpr", "params": {"dim": 8, "train": {"epochs": 2}}}],
            "methods": methods,
            "eval": {"ks": [10], "n_boot": 20},
        }
    )  # fmt: skip


def test_appended_users_are_not_evaluated_or_probed(tiny_parquet, tmp_path) -> None:
    cfg = _cfg(tiny_parquet, [
        {"name": "bpr-over", "model": "bpr", "pre": [{"method": "oversample", "attr": "gender"}]},
        {"name": "bpr-mt", "model": "bpr",
         "inproc": [{"strategy": "multitask", "tasks": [{"kind": "genre"}]}]},
    ])  # fmt: skip
    result = run_experiment(cfg, tmp_path / "out")
    res = result.results
    over = res[(res.method == "bpr-over") & (res.metric == "ndcg@10") & (res.group == "all")]
    base = res[(res.method == "bpr") & (res.metric == "ndcg@10") & (res.group == "all")]
    assert int(over.n.iloc[0]) == int(base.n.iloc[0])  # the same real test users
    assert {"leakage_auc_emb"} <= set(res[res.method == "bpr-over"].metric)
    recs = pd.read_parquet(tmp_path / "out" / "recs" / "bpr-over.parquet")
    assert not recs.user_id.astype(str).str.startswith("over:").any()
    assert (res[res.method == "bpr-mt"].metric == "ndcg@10").any()


def test_multitask_config_errors_name_the_field(tiny_parquet) -> None:
    with pytest.raises(Exception, match=r"methods\.0\.inproc\.0\.tasks\.0\.kind"):
        _cfg(
            tiny_parquet,
            [
                {
                    "name": "x",
                    "model": "bpr",
                    "inproc": [{"strategy": "multitask", "tasks": [{"kind": "nope"}]}],
                }
            ],
        )
    with pytest.raises(Exception, match="text tasks need review data"):
        _cfg(
            tiny_parquet,
            [
                {
                    "name": "x",
                    "model": "bpr",
                    "inproc": [{"strategy": "multitask", "tasks": [{"kind": "text"}]}],
                }
            ],
        )
    with pytest.raises(Exception, match="'multitask' has no strength to sweep"):
        _cfg(tiny_parquet, [{"name": "x", "model": "bpr",
                             "inproc": [{"strategy": "multitask", "sweep": [1, 2],
                                         "tasks": [{"kind": "genre"}]}]}])  # fmt: skip


def test_rerun_recomputes_no_pre_stage_and_cached_data_keeps_weights(tiny_parquet, tmp_path):
    import json

    methods = [
        {"name": "bpr-over", "model": "bpr", "pre": [{"method": "oversample", "attr": "gender"}]},
        {"name": "bpr-ips", "model": "bpr", "pre": [{"method": "ips"}]},
    ]
    cfg = _cfg(tiny_parquet, methods)
    run_experiment(cfg, tmp_path / "a")
    run_experiment(cfg, tmp_path / "a")
    totals = json.loads((tmp_path / "a" / "summary.json").read_text())["stage_totals"]
    assert totals["pre"] == {"computed": 0, "cached": 2}
    assert totals["fit"]["computed"] == 0

    from debiasrec.data.split import random_split
    from debiasrec.data.synthetic import SyntheticConfig, generate
    from debiasrec.debias.pre import PRE_METHODS

    ds, _ = generate(SyntheticConfig(n_users=40, n_items=30, mean_interactions=8), rng=0)
    split = random_split(ds, rng=0)
    out = PRE_METHODS["oversample"]({"attr": "gender"}).apply(split.train, rng=0)
    out = PRE_METHODS["ips"]({}).apply(out, rng=0)
    folder = tmp_path / "ds"
    out.save(folder)  # appended users mix int and str ids: kept in dataset.json
    from debiasrec.data import Dataset

    back = Dataset.load(folder)
    assert back.fingerprint() == out.fingerprint()
    assert list(back.user_vocab) == list(out.user_vocab)
    assert back.n_users > split.train.n_users
    assert back.weights is not None
    assert (back.weights == out.weights).all() and (back.users == out.users).all()
