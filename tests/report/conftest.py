"""A small real run with debiasing methods, shared by the report tests (written into tmp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.experiment.runner import ExperimentConfig, run_experiment
from debiasrec.report.html import write_report


@pytest.fixture(scope="session")
def report_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Result folder of pop + BPR + an adversary + two re-rankers on 80 synthetic users."""
    folder = tmp_path_factory.mktemp("report_data")
    ds, _ = generate(SyntheticConfig(n_users=80, n_items=50, mean_interactions=12), rng=0)
    items = ds.items_frame()
    items["genres"] = items["genres"].map(list)
    paths = [folder / "inter.parquet", folder / "users.parquet", folder / "items.parquet"]
    ds.interactions_frame().to_parquet(paths[0], index=False)
    ds.users_frame().to_parquet(paths[1], index=False)
    items.to_parquet(paths[2], index=False)
    cfg = ExperimentConfig.model_validate(
        {
            "name": "report-test",
            "data": {
                "source": str(paths[0]),
                "users": str(paths[1]),
                "items": str(paths[2]),
                "sensitive": ["gender", "age"],
            },
            "models": [
                {"model": "pop"},
                {"model": "itemknn"},
                {"model": "bpr", "params": {"dim": 8, "train": {"epochs": 3}}},
            ],
            "methods": [
                {
                    "name": "bpr-adv",
                    "model": "bpr",
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
                    "name": "bpr-cal",
                    "model": "bpr",
                    "post": [
                        {
                            "method": "calibrated",
                            "self_calibrate": {"target": "miscalibration <= 0.7x", "grid": 3},
                        }
                    ],
                },
                {
                    "name": "bpr-exp",
                    "model": "bpr",
                    "post": [{"method": "exposure", "sweep": [0.2, 0.6]}],
                },
            ],
            "eval": {"ks": [5], "n_boot": 20},
            "seeds": [0, 1],
            "explain_users": 3,
        }
    )
    out = tmp_path_factory.mktemp("report_run") / "run"
    run_experiment(cfg, out)
    write_report(out)  # as the CLI does once the run (models included) is saved
    return out
