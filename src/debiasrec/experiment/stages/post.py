"""Post-processing stage: re-rank a trained model's test candidates, evaluate like any method.

A re-ranker's strength is fixed (``strength``/``sweep``) or tuned on validation data by the
:class:`~debiasrec.debias.post.SelfCalibrator`; the test split is read only to evaluate.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from debiasrec.data.split import Split
from debiasrec.debias.post import RERANKERS, RerankContext, SelfCalibrator, candidates
from debiasrec.experiment.cache import StageCache, stage_key
from debiasrec.experiment.config import ExperimentConfig
from debiasrec.experiment.evaluate import Evaluation, eval_users, evaluate_topk
from debiasrec.experiment.jsonutil import json_default
from debiasrec.experiment.methods import PostVariant
from debiasrec.experiment.stages.evaluate import load_evaluation, save_evaluation
from debiasrec.models.base import Recommender


def rerank(
    model: Recommender[Any], split: Split, cfg: ExperimentConfig, pv: PostVariant, seed: int
) -> tuple[Evaluation, dict[str, Any] | None]:
    """Re-rank the model's test candidates with ``pv``; evaluate like any method."""
    kmax = max(cfg.eval.ks)
    options = pv.entry.options()
    n_cand = max(int(options.pop("n_candidates")), kmax)
    train, valid, test = split
    info: dict[str, Any] | None = None
    if pv.entry.self_calibrate is not None:
        ctl = pv.entry.controller_config(k=pv.entry.self_calibrate.k or cfg.eval.ks[0])
        cal = SelfCalibrator(ctl.model_copy(update={"n_candidates": n_cand}))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # recorded into summary.json, not shown
            cal.fit(model.score_tensor, split)
        reranker = copy.copy(cal.reranker_)
        reranker.config = reranker.config.model_copy(update={"k": kmax})
        context = cal.context_
        info = {**cal.summary(), "warnings": [str(w.message) for w in caught]}
    else:
        attrs = list(train.schema.sensitive_names)
        attr = options.get("attr")
        if attr and attr not in attrs:
            attrs.append(attr)
        context = RerankContext.from_datasets(train, valid, sensitive=attrs)
        reranker = RERANKERS.lookup(pv.kind)(
            {**options, "strength": pv.strength, "k": kmax, "n_candidates": n_cand}
        )
        vusers = np.flatnonzero(valid.user_counts() > 0)
        vcand = candidates(model.score_tensor, vusers, n=n_cand, exclude=[train.csr()])
        reranker.fit(context, vcand)
    users = eval_users(test)
    cand = candidates(model.score_tensor, users, n=n_cand, exclude=[train.csr(), valid.csr()])
    recs = reranker.rerank(cand, context)
    ev = evaluate_topk(
        recs.items, recs.users, train, test, config=cfg.eval, rng=seed, scores=recs.scores
    )
    return ev, info


def post_stage(
    sc: StageCache,
    fit_key: str,
    model: Recommender[Any],
    split: Split,
    cfg: ExperimentConfig,
    pv: PostVariant,
    seed: int,
    label: str,
) -> tuple[Evaluation, dict[str, Any] | None]:
    """:func:`rerank`, cached."""
    key = stage_key(
        "post",
        {
            "fit": fit_key,
            "post": pv.payload(),
            "eval": cfg.eval.model_dump(mode="json"),
            "seed": seed,
        },
    )

    def save(value: tuple[Evaluation, dict[str, Any] | None], folder: Path) -> bool:
        save_evaluation(value[0], folder)
        (folder / "info.json").write_text(json.dumps(value[1], default=json_default))
        return True

    def load(folder: Path) -> tuple[Evaluation, dict[str, Any] | None]:
        return load_evaluation(folder), json.loads((folder / "info.json").read_text())

    out: tuple[Evaluation, dict[str, Any] | None] = sc.get_or_compute(
        "post", label, key, lambda: rerank(model, split, cfg, pv, seed), save, load
    )
    return out


__all__ = ["post_stage", "rerank"]
