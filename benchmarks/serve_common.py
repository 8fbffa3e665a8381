"""Shared by the serve benchmarks: an ML-100K result folder with a saved ItemKNN model."""

from __future__ import annotations

from pathlib import Path

from debiasrec.experiment.runner import ExperimentConfig, run_experiment
from debiasrec.serve import saved_models


def ml100k_folder(out: Path, model: str = "itemknn") -> Path:
    """``debiasrec run`` on ML-100K (gender, age) with pop + ``model``; reused if present."""
    if (out / "config.toml").is_file() and model in saved_models(out):
        return out
    cfg = ExperimentConfig.model_validate(
        {
            "name": "serve-bench-ml100k",
            "data": {"source": "ml-100k", "sensitive": ["gender", "age"]},
            "split": {"seed": 2020},
            "models": [{"model": "pop"}, {"model": model}],
            "eval": {"ks": [10], "n_boot": 50},
            "seeds": [0],
        }
    )
    run_experiment(cfg, out)
    return out
