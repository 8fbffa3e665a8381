"""Attribute leakage: how well a post-hoc attacker recovers a sensitive attribute from outputs.

A *probe* (logistic regression or a one-hidden-layer MLP) is trained **from scratch** on frozen
user representations -- never the adversary used in training, which the representation may
merely have learned to fool -- and scored out of fold with stratified ``k``-fold cross-validation:

* binary attributes: ROC AUC, computed as the normalised Mann-Whitney U statistic with average
  ranks for ties (Hanley & McNeil, Radiology 1982):
  ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``;
* multi-class attributes: macro AUC, the unweighted mean of the one-vs-rest AUCs of the classes
  (Hand & Till's "one vs rest" variant; Fawcett, Pattern Recogn. Lett. 2006), and balanced
  accuracy, the mean per-class recall (Brodersen et al., ICPR 2010); balanced accuracy is
  reported for binary attributes too.

Each fold gives one value; the point estimate is the mean over folds and the interval is the
Student-``t`` interval ``mean +- t_{(1+ci)/2, k-1} * sd / sqrt(k)`` over the ``k`` folds (folds
share training data, so the interval is approximate -- it is the conventional CV error bar).
``0.5`` AUC (and ``1 / n_classes`` balanced accuracy) means no leakage.

For systems without embeddings, :func:`probe_recs` builds a representation from the
recommendation lists themselves (multi-hot bag of recommended items, optionally rank-weighted
and reduced with a seeded randomised truncated SVD, Halko et al., SIAM Review 2011), so the
output of any system -- including recommendations imported by ``debiasrec audit`` -- can be
probed.

Everything is numpy/torch (float64, full-batch, seeded): the same seed gives the same numbers.
This module imports nothing of debiasrec above :mod:`debiasrec.metrics`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from debiasrec.errors import ConfigError, DataError
from debiasrec.metrics._checks import check_int, check_topk, warn_degenerate
from debiasrec.metrics.registry import MetricInput, Row, register_metric
from debiasrec.random import derive_seed, np_rng

Probe = Literal["logreg", "mlp"]
PROBES: tuple[str, ...] = ("logreg", "mlp")

#: Columns of :func:`leakage_frame` (the tidy results contract).
LEAKAGE_COLUMNS: tuple[str, ...] = ("metric", "group", "value", "ci_low", "ci_high", "n")


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the binary labels ``y`` (Mann-Whitney U with tied ranks).

    Ties between a positive and a negative count one half. Returns NaN (with a warning) when
    one of the classes is absent.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    lab = np.asarray(y).ravel().astype(bool)
    if s.shape != lab.shape:
        raise DataError(f"scores and labels differ in length: {s.shape[0]} vs {lab.shape[0]}")
    n_pos = int(lab.sum())
    n_neg = len(lab) - n_pos
    if n_pos == 0 or n_neg == 0:
        warn_degenerate("AUC is undefined with a single class; returning NaN")
        return float("nan")
    ranks = stats.rankdata(s, method="average")
    u = ranks[lab].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def macro_auc(proba: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> float:
    """Unweighted mean over classes of the one-vs-rest AUC of ``proba[:, c]``.

    Classes absent from ``y`` (or present in every row) are skipped; NaN if none is left.
    """
    p = np.asarray(proba, dtype=np.float64)
    codes = np.asarray(y, dtype=np.int64).ravel()
    if p.ndim != 2 or p.shape[0] != len(codes):
        raise DataError(f"proba must be [n, n_classes] with n={len(codes)}, got {p.shape}")
    c_total = p.shape[1] if n_classes is None else n_classes
    vals = []
    for c in range(c_total):
        pos = codes == c
        if 0 < pos.sum() < len(codes):
            vals.append(auc(p[:, c], pos))
    if not vals:
        warn_degenerate("macro AUC is undefined: no class has both members and non-members")
        return float("nan")
    return float(np.mean(vals))


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean over the classes present in ``y`` of the recall ``P(pred = c | y = c)``."""
    pr = np.asarray(pred, dtype=np.int64).ravel()
    codes = np.asarray(y, dtype=np.int64).ravel()
    if pr.shape != codes.shape:
        raise DataError(f"pred and labels differ in length: {pr.shape[0]} vs {codes.shape[0]}")
    present = np.unique(codes)
    if len(present) == 0:
        warn_degenerate("balanced accuracy of an empty sample is undefined; returning NaN")
        return float("nan")
    return float(np.mean([np.mean(pr[codes == c] == c) for c in present]))


def t_interval(values: np.ndarray, ci: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of ``values`` (NaNs dropped): ``(mean, low, high)``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf((1 + ci) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def stratified_folds(codes: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold id (``0..folds-1``) per sample with each class spread evenly over the folds."""
    codes = np.asarray(codes, dtype=np.int64)
    out = np.empty(len(codes), dtype=np.int64)
    offset = 0
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        idx = idx[rng.permutation(len(idx))]
        # Continue the round-robin where the previous class stopped so fold sizes stay balanced.
        out[idx] = (np.arange(len(idx)) + offset) % folds
        offset = (offset + len(idx)) % folds
    return out


# --------------------------------------------------------------------------------------------
# probes
# --------------------------------------------------------------------------------------------


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd[sd < 1e-12] = 1.0
    return (train - mu) / sd, (test - mu) / sd


def _fit_logreg(
    x: np.ndarray, y: np.ndarray, n_classes: int, c: float, max_iter: int, device: Any = "cpu"
) -> Any:
    """Multinomial logistic regression, ``mean CE + ||W||^2 / (2 C n)`` (sklearn's scaling), LBFGS."""
    import torch

    dev = torch.device(device)
    xt = torch.from_numpy(x).to(dev)
    yt = torch.from_numpy(y).to(dev)
    lin = torch.nn.Linear(x.shape[1], n_classes, dtype=torch.float64, device=dev)
    with torch.no_grad():  # deterministic start: zeros (the problem is convex)
        lin.weight.zero_()
        lin.bias.zero_()
    opt = torch.optim.LBFGS(
        lin.parameters(),
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    l2 = 1.0 / (2.0 * c * len(y))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def _fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    hidden: int,
    weight_decay: float,
    max_epochs: int,
    patience: int,
    rng: np.random.Generator,
    device: Any = "cpu",
) -> Any:
    """One-hidden-layer MLP (ReLU, dropout 0.2), full-batch Adam, early stopping on an inner
    stratified 20 % split (the weights of the best inner-validation loss are kept).

    Initial weights and dropout masks are drawn on the CPU and moved to ``device``.
    """
    import torch

    dev = torch.device(device)
    gen = torch.Generator().manual_seed(derive_seed(rng))
    inner = stratified_folds(y, 5, rng) == 0
    if inner.all() or not inner.any():
        inner[:] = False
    fit_x, fit_y = torch.from_numpy(x[~inner]).to(dev), torch.from_numpy(y[~inner]).to(dev)
    val_x, val_y = torch.from_numpy(x[inner]).to(dev), torch.from_numpy(y[inner]).to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(rng))
        net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], hidden, dtype=torch.float64),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(hidden, n_classes, dtype=torch.float64),
        )
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=weight_decay)
    best, best_state, bad = float("inf"), None, 0
    for _ in range(max_epochs):
        net.train()
        # Dropout mask drawn from our generator (no global RNG).
        h = net[1](net[0](fit_x))
        keep = (torch.rand(h.shape, generator=gen, dtype=torch.float64) >= 0.2).to(dev) / 0.8
        loss = torch.nn.functional.cross_entropy(net[3](h * keep), fit_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if len(val_y) == 0:
            continue
        net.eval()
        with torch.no_grad():
            v = float(torch.nn.functional.cross_entropy(net(val_x), val_y))
        if v < best - 1e-6:
            best, bad = v, 0
            best_state = {k: t.clone() for k, t in net.state_dict().items()}
        else:
            bad += 1
            if bad > patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return net


def _encode_labels(labels: Any, n: int) -> tuple[np.ndarray, list[str]]:
    if isinstance(labels, pd.Series):
        labels = labels.array
    cat = labels if isinstance(labels, pd.Categorical) else pd.Categorical(np.asarray(labels))
    if len(cat) != n:
        raise DataError(f"labels have {len(cat)} entries but X has {n} rows (one per user)")
    return np.asarray(cat.codes, dtype=np.int64), [str(c) for c in cat.categories]


def leakage(
    X: np.ndarray,
    labels: pd.Categorical | pd.Series | np.ndarray,
    *,
    probe: Probe = "logreg",
    folds: int = 5,
    rng: int | np.random.Generator | None = 0,
    ci: float = 0.95,
    c: float = 1.0,
    hidden: int = 64,
    weight_decay: float = 1e-3,
    max_iter: int = 200,
    max_epochs: int = 500,
    patience: int = 20,
    device: Any = "cpu",
) -> dict[str, Any]:
    """Cross-validated attacker performance at predicting ``labels`` from ``X``.

    Args:
        X: ``[n_users, d]`` frozen representations (embeddings, or :func:`recs_representation`).
        labels: one label per row (``pandas.Categorical``, e.g. ``Dataset.user_groups("gender")``);
            missing labels are left out.
        probe: ``"logreg"`` (multinomial logistic regression, L2 with inverse strength ``c``,
            standardised features, LBFGS) or ``"mlp"`` (one hidden layer of ``hidden`` units,
            Adam, early stopping on an inner split).
        folds: number of stratified folds (at least 2; classes with fewer members than folds
            make some test folds miss the class, which is warned about).
        rng: seed or generator (folds, MLP initialisation and dropout).
        ci: confidence level of the t-interval over folds.
        device: where the probes train (a ``torch.device`` or its name, e.g. ``"cuda"``; the
            caller resolves ``"auto"``); folds, initial weights and dropout masks are drawn on
            the CPU on every device.

    Returns:
        A dict with ``auc`` (binary AUC, or macro one-vs-rest AUC for more than two classes),
        ``auc_ci_low``, ``auc_ci_high``, ``bacc`` (balanced accuracy), ``bacc_ci_low``,
        ``bacc_ci_high``, ``chance_bacc`` (``1 / n_classes``), ``auc_folds``, ``bacc_folds``,
        ``n`` (labelled rows used), ``n_classes``, ``classes``, ``probe`` and ``folds``.
    """
    if probe not in PROBES:
        raise ConfigError(f"unknown probe {probe!r}; available: {list(PROBES)}")
    folds = check_int(folds, "folds", minimum=2)
    x_all = np.asarray(X, dtype=np.float64)
    if x_all.ndim != 2:
        raise DataError(f"X must be a 2-D array [n_users, d], got shape {x_all.shape}")
    codes, classes = _encode_labels(labels, x_all.shape[0])
    keep = codes >= 0
    if not np.isfinite(x_all[keep]).all():
        raise DataError("X holds NaN or infinite values; leakage needs finite representations")
    x, y = x_all[keep], codes[keep]
    present = np.unique(y)
    result: dict[str, Any] = {
        "probe": probe,
        "folds": folds,
        "n": int(len(y)),
        "classes": classes,
        "n_classes": int(len(present)),
        "chance_bacc": float("nan"),
    }
    nan_keys = ("auc", "auc_ci_low", "auc_ci_high", "bacc", "bacc_ci_low", "bacc_ci_high")
    if len(present) < 2:
        warn_degenerate(
            f"leakage needs at least two classes with labelled users; found {len(present)}"
        )
        result.update({k: float("nan") for k in nan_keys}, auc_folds=[], bacc_folds=[])
        return result
    # Re-index the present classes densely (a category with no labelled user is dropped).
    y = np.searchsorted(present, y)
    n_cls = len(present)
    result["chance_bacc"] = 1.0 / n_cls
    counts = np.bincount(y, minlength=n_cls)
    if counts.min() < folds:
        warn_degenerate(
            f"the smallest class has {int(counts.min())} labelled users, fewer than folds={folds}; "
            "some test folds miss it (its AUC is skipped there)"
        )
    gen = np_rng(rng)
    fold_id = stratified_folds(y, folds, gen)
    aucs, baccs = [], []
    for f in range(folds):
        te = fold_id == f
        tr = ~te
        if te.sum() == 0 or len(np.unique(y[tr])) < 2:
            continue
        xtr, xte = _standardise(x[tr], x[te])
        proba = _predict_proba(
            probe,
            xtr,
            y[tr],
            xte,
            n_cls,
            c=c,
            hidden=hidden,
            weight_decay=weight_decay,
            max_iter=max_iter,
            max_epochs=max_epochs,
            patience=patience,
            rng=gen,
            device=device,
        )
        if n_cls == 2:
            aucs.append(auc(proba[:, 1], y[te] == 1) if len(np.unique(y[te])) == 2 else np.nan)
        else:
            aucs.append(macro_auc(proba, y[te], n_cls))
        baccs.append(balanced_accuracy(proba.argmax(axis=1), y[te]))
    a, alo, ahi = t_interval(np.array(aucs), ci)
    b, blo, bhi = t_interval(np.array(baccs), ci)
    result.update(
        auc=a,
        auc_ci_low=alo,
        auc_ci_high=ahi,
        bacc=b,
        bacc_ci_low=blo,
        bacc_ci_high=bhi,
        auc_folds=[float(v) for v in aucs],
        bacc_folds=[float(v) for v in baccs],
    )
    return result


def _predict_proba(
    probe: str,
    xtr: np.ndarray,
    ytr: np.ndarray,
    xte: np.ndarray,
    n_cls: int,
    *,
    c: float,
    hidden: int,
    weight_decay: float,
    max_iter: int,
    max_epochs: int,
    patience: int,
    rng: np.random.Generator,
    device: Any = "cpu",
) -> np.ndarray:
    import torch

    if probe == "logreg":
        net = _fit_logreg(xtr, ytr, n_cls, c, max_iter, device)
    else:
        net = _fit_mlp(xtr, ytr, n_cls, hidden, weight_decay, max_epochs, patience, rng, device)
    with torch.no_grad():
        xt = torch.from_numpy(xte).to(torch.device(device))
        return torch.softmax(net(xt), dim=1).cpu().numpy()


def leakage_frame(
    X: np.ndarray,
    groups: dict[str, pd.Categorical],
    *,
    probes: tuple[str, ...] | list[str] = ("logreg",),
    folds: int = 5,
    rng: int | np.random.Generator | None = 0,
    ci: float = 0.95,
    **kwargs: Any,
) -> pd.DataFrame:
    """Tidy leakage rows (``metric, group, value, ci_low, ci_high, n``) for several attributes.

    ``metric`` is ``leakage_auc`` / ``leakage_bacc`` for the logistic probe and
    ``leakage_auc_mlp`` / ``leakage_bacc_mlp`` for the MLP; ``group`` is the attribute name.
    Each attribute is probed with a generator derived from ``rng`` in a fixed order.
    """
    gen = np_rng(rng)
    rows = []
    for attr, labels in groups.items():
        for probe in probes:
            res = leakage(
                X,
                labels,
                probe=probe,  # type: ignore[arg-type]
                folds=folds,
                rng=derive_seed(gen),
                ci=ci,
                **kwargs,
            )
            suffix = "" if probe == "logreg" else f"_{probe}"
            for key in ("auc", "bacc"):
                rows.append(
                    {
                        "metric": f"leakage_{key}{suffix}",
                        "group": attr,
                        "value": res[key],
                        "ci_low": res[f"{key}_ci_low"],
                        "ci_high": res[f"{key}_ci_high"],
                        "n": res["n"],
                    }
                )
    return pd.DataFrame(rows, columns=list(LEAKAGE_COLUMNS))


# --------------------------------------------------------------------------------------------
# representations from recommendation lists
# --------------------------------------------------------------------------------------------


def recs_representation(
    topk: np.ndarray,
    n_items: int,
    *,
    k: int | None = None,
    weighting: Literal["binary", "rank"] = "binary",
    svd_dim: int | None = 64,
    rng: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Represent each user by the bag of items recommended to them.

    Row ``r`` is the multi-hot vector of ``topk[r, :k]`` (``-1`` padding ignored); with
    ``weighting="rank"`` position ``p`` (from 0) weighs ``1 / log2(p + 2)`` as in DCG. With
    ``svd_dim`` the sparse matrix is reduced to ``svd_dim`` columns by a seeded randomised
    truncated SVD (``U * S``); ``None`` returns the dense multi-hot matrix.
    """
    n_items = check_int(n_items, "n_items", minimum=1)
    top = check_topk(topk, k=k, n_items=n_items)
    n, kk = top.shape
    if weighting not in ("binary", "rank"):
        raise ConfigError(f"weighting must be 'binary' or 'rank', got {weighting!r}")
    w = np.ones(kk) if weighting == "binary" else 1.0 / np.log2(np.arange(kk) + 2.0)
    valid = top >= 0
    rows = np.repeat(np.arange(n), kk).reshape(n, kk)[valid]
    mat = sp.csr_matrix(
        (np.broadcast_to(w, (n, kk))[valid], (rows, top[valid])), shape=(n, n_items)
    )
    if svd_dim is None or svd_dim >= min(mat.shape):
        return mat.toarray()
    return _randomized_svd(mat, check_int(svd_dim, "svd_dim", minimum=1), np_rng(rng))


def _randomized_svd(
    mat: sp.csr_matrix, dim: int, rng: np.random.Generator, oversample: int = 10, n_iter: int = 4
) -> np.ndarray:
    """``U_k S_k`` of the rank-``dim`` truncated SVD by randomised range finding (Halko et al.)."""
    n_cols = mat.shape[1]
    q = mat @ rng.standard_normal((n_cols, dim + oversample))
    q, _ = np.linalg.qr(q)
    for _ in range(n_iter):  # power iterations (re-orthonormalised) sharpen the spectrum
        q, _ = np.linalg.qr(mat.T @ q)
        q, _ = np.linalg.qr(mat @ q)
    b = (mat.T @ q).T
    ub, s, _ = np.linalg.svd(b, full_matrices=False)
    u = q @ ub[:, :dim]
    # Fix signs (largest-magnitude entry of each column positive) for reproducibility.
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    return u * signs * s[:dim]


def probe_recs(
    topk: np.ndarray,
    n_items: int,
    labels: pd.Categorical | pd.Series | np.ndarray,
    *,
    k: int | None = None,
    weighting: Literal["binary", "rank"] = "binary",
    svd_dim: int | None = 64,
    probe: Probe = "logreg",
    folds: int = 5,
    rng: int | np.random.Generator | None = 0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Leakage of ``labels`` from recommendation lists (any system, including imported recs).

    ``topk[r]`` are the item codes recommended to the user labelled ``labels[r]``; see
    :func:`recs_representation` for the representation and :func:`leakage` for the result.
    """
    gen = np_rng(rng)
    x = recs_representation(
        topk, n_items, k=k, weighting=weighting, svd_dim=svd_dim, rng=derive_seed(gen)
    )
    return leakage(x, labels, probe=probe, folds=folds, rng=derive_seed(gen), **kwargs)


#: Largest dense multi-hot matrix (bytes) :func:`recs_embedding` builds; larger ones (many
#: users x a big catalogue) go through a sparse matrix instead (same numbers up to rounding;
#: the dense path keeps small runs bit-identical to earlier versions).
DENSE_REPRESENTATION_BYTES = 256 * 2**20


def recs_embedding(
    topk: np.ndarray, n_items: int, k: int, *, seed: int, dim: int = 64
) -> np.ndarray:
    """Multi-hot top-``k`` lists reduced to ``dim`` columns by a seeded randomised SVD.

    The representation of :func:`recs_representation`, computed with ``torch.svd_lowrank``
    (Halko et al.), which runs on torch's thread pool and so respects ``torch.set_num_threads``
    (NumPy's BLAS threads oversubscribe a busy machine). Beyond
    :data:`DENSE_REPRESENTATION_BYTES` the multi-hot matrix stays sparse (memory ~ users x k).
    The global torch generator is left as it was.
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


def _leak_rows(res: dict[str, Any], suffix: str, attr: str) -> list[Row]:
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


#: Stratified folds of the evaluation's leakage probes.
EVAL_PROBE_FOLDS = 3


@register_metric(name="leakage", family="leakage", needs=("groups",), higher_is_better=False)
def _leakage_metric(inp: MetricInput, k: int) -> list[Row]:
    """Attacker AUC and balanced accuracy recovering each attribute from the top-K lists
    (``leakage_auc@K``) and, when the model has them, from its user embeddings
    (``leakage_auc_emb``); an AUC of 0.5 means no leakage."""
    folds = EVAL_PROBE_FOLDS
    pgen = np_rng(inp.probe_seed)
    rep: np.ndarray | None = None
    out: list[Row] = []
    for attr in inp.attrs:
        labels = inp.groups[attr]
        if (pd.Series(labels).value_counts() >= folds).sum() < 2:
            continue  # a probe needs two labelled classes with a member per fold
        if rep is None:
            rep = recs_embedding(inp.topk, inp.n_items, k, seed=inp.probe_seed)
        res = leakage(rep, labels, folds=folds, rng=derive_seed(pgen), ci=inp.ci, device=inp.device)
        out += _leak_rows(res, f"@{k}", attr)
        if inp.embeddings is not None and attr in inp.user_groups:
            full = inp.user_groups[attr]
            # Users a pre-processing transform appended (synthetic or oversampled copies) come
            # after the real users' codes: probe the real users only.
            emb = np.asarray(inp.embeddings, dtype=np.float64)[: len(full)]
            res = leakage(
                emb, full, folds=folds, rng=derive_seed(pgen), ci=inp.ci, device=inp.device
            )
            out += _leak_rows(res, "_emb", attr)
    return out
