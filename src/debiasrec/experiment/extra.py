"""Metrics the runner adds to every evaluation: calibration and attribute leakage.

- ``miscalibration@K`` per user: Steck's ``C_KL`` between the genre mix of the user's training
  history and of the top-``K`` list (:func:`debiasrec.metrics.calibration.miscalibration`),
  aggregated overall and per group with bootstrap CIs (so ``gap_miscalibration@K`` too).
- ``leakage_auc@K`` / ``leakage_bacc@K`` (group = the attribute): a fresh logistic probe predicting
  the attribute from the top-``K`` lists (:func:`debiasrec.metrics.leakage.probe_recs`), so the
  leakage of every method, post-processed ones included, is measured the same way.
- ``leakage_auc_emb`` / ``leakage_bacc_emb``: the same probe on the model's user representations
  (models with ``user_embeddings()``; not for post-processed lists, which share their model's).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from debiasrec.data.dataset import Dataset
from debiasrec.experiment.evaluate import EvalConfig, Evaluation
from debiasrec.metrics.calibration import miscalibration
from debiasrec.metrics.fairness import by_group
from debiasrec.metrics.leakage import leakage, recs_representation
from debiasrec.random import derive_seed, np_rng


def _attrs(test: Dataset, cfg: EvalConfig) -> list[str]:
    return list(test.schema.sensitive_names if cfg.attrs is None else cfg.attrs)


def extra_metrics(
    ev: Evaluation,
    train: Dataset,
    test: Dataset,
    *,
    config: EvalConfig,
    rng: int,
    embeddings: np.ndarray | None = None,
    folds: int = 3,
    probe_seed: int = 0,
    calibration: bool = True,
) -> Evaluation:
    """``ev`` with calibration and leakage rows (and ``miscalibration@K`` per user) added.

    ``rng`` seeds the bootstrap; the probes use ``probe_seed`` (the same folds for every method
    and seed, so identical lists give identical leakage). ``calibration=False`` skips
    miscalibration (no training history to compare with, e.g. an audit without ``--train``).
    """
    cfg = config
    k = cfg.ks[0]
    users = ev.users
    gen = np_rng(rng)
    rows: list[pd.DataFrame] = [ev.results]
    per_user = ev.per_user.copy()
    attrs = _attrs(test, cfg)
    groups = {}
    for name in [*attrs, *cfg.intersections]:
        cat = test.user_groups(name)
        groups[name] = pd.Categorical.from_codes(
            np.asarray(cat.codes)[users], categories=cat.categories, ordered=cat.ordered
        )
    col = test.schema.item_categories[0] if test.schema.item_categories else None
    if calibration and col is not None and col in train.item_table.columns and len(users):
        feats = train.item_category_matrix(col)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mc = miscalibration(ev.topk, train.csr()[users], feats, k)
        per_user[f"miscalibration@{k}"] = mc
        rows.append(
            by_group(
                {f"miscalibration@{k}": mc},
                groups,
                n_boot=cfg.n_boot,
                ci=cfg.ci,
                rng=derive_seed(gen),
            )
        )
    leak: list[dict[str, Any]] = []
    pgen = np_rng(probe_seed)
    rep: np.ndarray | None = None
    for attr in attrs:
        labels = groups[attr]
        if (pd.Series(labels).value_counts() >= folds).sum() < 2:
            continue  # a probe needs two labelled classes with a member per fold
        if rep is None:
            rep = _recs_embedding(ev.topk, train.n_items, k, seed=probe_seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = leakage(rep, labels, folds=folds, rng=derive_seed(pgen), ci=cfg.ci)
        leak += _leak_rows(res, f"@{k}", attr)
        if embeddings is not None:
            full = test.user_groups(attr)
            # Users a pre-processing transform appended to the training data (synthetic or
            # oversampled copies) come after the real users' codes: probe the real users only.
            emb = embeddings[: len(full)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = leakage(emb, full, folds=folds, rng=derive_seed(pgen), ci=cfg.ci)
            leak += _leak_rows(res, "_emb", attr)
    if leak:
        rows.append(pd.DataFrame(leak))
    results = pd.concat(rows, ignore_index=True)
    return Evaluation(
        per_user=per_user, results=results, topk=ev.topk, users=ev.users, scores=ev.scores
    )


#: Largest dense multi-hot matrix (bytes) the lists' representation is built as; larger ones
#: (many users x a big catalogue) go through a sparse matrix instead (same numbers up to
#: rounding; the dense path keeps small runs bit-identical to earlier versions).
DENSE_REPRESENTATION_BYTES = 256 * 2**20


def _recs_embedding(
    topk: np.ndarray, n_items: int, k: int, *, seed: int, dim: int = 64
) -> np.ndarray:
    """Multi-hot top-``k`` lists reduced to ``dim`` columns by a seeded randomised SVD.

    The same representation as :func:`debiasrec.metrics.leakage.recs_representation`, computed
    with ``torch.svd_lowrank`` (Halko et al.), which runs on torch's thread pool and so respects
    ``torch.set_num_threads`` (numpy's BLAS threads oversubscribe a busy machine). Beyond
    :data:`DENSE_REPRESENTATION_BYTES` the multi-hot matrix stays sparse (memory ~ users x k).
    """
    import torch

    n = len(topk)
    if n * n_items * 8 <= DENSE_REPRESENTATION_BYTES or min(n, n_items) <= 1:
        x = recs_representation(topk, n_items, k=k, svd_dim=None)
        q = min(dim, min(x.shape) - 1)
        if q < 1:
            return x
        a = torch.from_numpy(x)
    else:
        top = np.asarray(topk)[:, :k]
        valid = top >= 0
        rows = np.nonzero(valid)[0]
        a = torch.sparse_coo_tensor(
            torch.from_numpy(np.vstack([rows, top[valid]])),
            torch.ones(len(rows), dtype=torch.float64),
            size=(n, n_items),
            check_invariants=False,  # indices built here: in range by construction
        ).coalesce()
        q = min(dim, min(n, n_items) - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        u, s, _ = torch.svd_lowrank(a, q=q, niter=4)
    return (u * s).numpy()


def _leak_rows(res: dict[str, Any], suffix: str, attr: str) -> list[dict[str, Any]]:
    return [
        {
            "metric": f"leakage_{key}{suffix}",
            "group": attr,
            "value": float(res[key]),
            "ci_low": float(res[f"{key}_ci_low"]),
            "ci_high": float(res[f"{key}_ci_high"]),
            "n": float(res["n"]),
        }
        for key in ("auc", "bacc")
    ]


__all__ = ["extra_metrics"]
