"""Evaluation stage: full-ranking (or sampled) evaluation of a trained model, cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debiasrec.data.split import Split
from debiasrec.experiment.cache import StageCache, stage_key
from debiasrec.experiment.evaluate import EvalConfig, Evaluation, evaluate_model
from debiasrec.models.base import Recommender


def save_evaluation(ev: Evaluation, folder: Path) -> bool:
    """Write an evaluation (tables as Parquet, lists as ``.npz`` without pickle)."""
    ev.results.to_parquet(folder / "results.parquet", index=False)
    ev.per_user.to_parquet(folder / "per_user.parquet", index=False)
    arrays: dict[str, Any] = {"topk": ev.topk, "users": ev.users}
    if ev.scores is not None:
        arrays["scores"] = ev.scores
    np.savez(folder / "lists.npz", **arrays)
    return True


def load_evaluation(folder: Path) -> Evaluation:
    """Inverse of :func:`save_evaluation`."""
    with np.load(folder / "lists.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return Evaluation(
        per_user=pd.read_parquet(folder / "per_user.parquet"),
        results=pd.read_parquet(folder / "results.parquet"),
        topk=arrays["topk"],
        users=arrays["users"],
        scores=arrays.get("scores"),
    )


def eval_key(fit_key: str, cfg: EvalConfig, seed: int, **extra: Any) -> str:
    """Stage key of an evaluation of the model trained under ``fit_key``."""
    return stage_key(
        "eval", {"fit": fit_key, "eval": cfg.model_dump(mode="json"), "seed": seed, **extra}
    )


def eval_stage(
    sc: StageCache,
    fit_key: str,
    model: Recommender[Any],
    split: Split,
    cfg: EvalConfig,
    seed: int,
    label: str,
) -> Evaluation:
    """Evaluate ``model`` on ``split.test`` (training and validation items masked)."""

    def compute() -> Evaluation:
        return evaluate_model(model, split.train, split.valid, split.test, config=cfg, rng=seed)

    ev: Evaluation = sc.get_or_compute(
        "eval", label, eval_key(fit_key, cfg, seed), compute, save_evaluation, load_evaluation
    )
    return ev


__all__ = ["eval_key", "eval_stage", "load_evaluation", "save_evaluation"]
