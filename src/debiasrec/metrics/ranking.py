"""Accuracy metrics: top-K ranking metrics and rating-prediction errors, per user.

All functions are vectorised over users and return one float64 value per user, so results can be
aggregated by group with :func:`debiasrec.metrics.by_group`. Definitions follow RecBole 1.2
(Zhao et al., "RecBole: Towards a Unified, Comprehensive and Efficient Framework for Recommendation
Algorithms", CIKM 2021) so that numbers are comparable.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from debiasrec.errors import DataError
from debiasrec.metrics._checks import (
    MAX_CHUNK_ELEMS,
    as_csr,
    check_int,
    check_ks,
    check_topk,
    check_vector,
    position_discount,
    warn_degenerate,
)
from debiasrec.metrics.registry import MetricInput, register_metric

#: Ranking metrics understood by :func:`ranking_metrics`, in their default order.
RANKING_METRICS: tuple[str, ...] = ("recall", "ndcg", "mrr", "hit", "precision", "map")


def ranking_metric_names(
    ks: Sequence[int] | int = (10,), metrics: Sequence[str] = RANKING_METRICS
) -> list[str]:
    """Return the result keys ``"{metric}@{k}"`` in the order :func:`ranking_metrics` uses.

    Args:
        ks: cut-offs.
        metrics: metric names (see :data:`RANKING_METRICS`).

    Returns:
        ``[f"{m}@{k}" for m in metrics for k in ks]`` (lower-case, duplicates removed).

    Raises:
        DataError: unknown metric name or non-positive cut-off.
    """
    return [f"{m}@{k}" for m in _check_metrics(metrics) for k in check_ks(ks)]


def _check_metrics(metrics: Sequence[str] | str) -> list[str]:
    if isinstance(metrics, str):
        metrics = [metrics]
    out = [str(m).lower() for m in metrics]
    unknown = [m for m in out if m not in RANKING_METRICS]
    if unknown:
        raise DataError(
            f"unknown ranking metric(s) {unknown}; available: {', '.join(RANKING_METRICS)}"
        )
    if not out:
        raise DataError("metrics must name at least one ranking metric")
    return list(dict.fromkeys(out))


def hit_matrix(topk: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """Return the boolean matrix ``hit[u, r]``: is the item at rank ``r + 1`` of user ``u`` relevant.

    Args:
        topk: int array [n_users, K] of item codes in rank order, -1 = padding (never relevant).
        truth: [n_users, n_items] sparse matrix whose non-zeros are the relevant items.

    Returns:
        bool array [n_users, K].

    Raises:
        DataError: shapes disagree, item codes out of range, or repeated items in a list.
    """
    truth = as_csr(truth, "truth")
    topk = check_topk(topk, n_items=truth.shape[1])
    if truth.shape[0] != topk.shape[0]:
        raise DataError(
            f"truth has {truth.shape[0]} rows but topk has {topk.shape[0]}; "
            "row i of both must describe the same user"
        )
    return _hit_matrix(topk, truth)


def _hit_matrix(topk: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    # Membership test by binary search on the sorted keys row * n_items + item of the truth
    # non-zeros (canonical CSR => keys ascending), processed in row chunks to bound memory.
    n_users, k = topk.shape
    n_items = np.int64(truth.shape[1])
    rows_nnz = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(truth.indptr))
    keys = rows_nnz * n_items + truth.indices.astype(np.int64)
    hit = np.zeros((n_users, k), dtype=bool)
    if keys.size == 0 or k == 0:
        return hit
    step = max(1, MAX_CHUNK_ELEMS // max(k, 1))
    for start in range(0, n_users, step):
        stop = min(start + step, n_users)
        block = topk[start:stop]
        query = np.arange(start, stop, dtype=np.int64)[:, None] * n_items + block
        pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        hit[start:stop] = (keys[pos] == query) & (block >= 0)
    return hit


def ranking_metrics(
    topk: np.ndarray,
    truth: sp.csr_matrix,
    ks: Sequence[int] = (10,),
    metrics: Sequence[str] = RANKING_METRICS,
) -> dict[str, np.ndarray]:
    """Per-user top-K ranking metrics, computed for all users at once.

    With ``rel_r = 1`` if the item at rank ``r`` is relevant (else 0), ``hits@K = sum_{r<=K} rel_r``
    and ``|rel|`` the number of relevant (held-out) items of the user (RecBole 1.2 definitions):

    - ``hit@K = 1[hits@K > 0]``
    - ``precision@K = hits@K / K`` (padding counts as a miss; the denominator is always K)
    - ``recall@K = hits@K / |rel|``
    - ``ndcg@K = DCG@K / IDCG@K`` with binary gains, ``DCG@K = sum_{r<=K} rel_r / log2(r + 1)`` and
      ``IDCG@K = sum_{r <= min(|rel|, K)} 1 / log2(r + 1)`` (Järvelin & Kekäläinen, TOIS 2002)
    - ``mrr@K = 1 / rank`` of the first relevant item within the top K, 0 if there is none
    - ``map@K = (sum_{r<=K} P@r * rel_r) / min(|rel|, K)`` (average precision, truncated)

    Args:
        topk: int array [n_users, K_max] of item codes in rank order; -1 marks padding (a list
            shorter than K_max) and is never relevant. Items may not repeat within a row.
        truth: [n_users, n_items] sparse matrix (CSR preferred); its non-zeros are the relevant
            held-out items; row i describes the same user as ``topk`` row i.
        ks: cut-offs, each ``1 <= k <= K_max``.
        metrics: any of ``"recall", "ndcg", "mrr", "hit", "precision", "map"``.

    Returns:
        ``{"{metric}@{k}": float64 array [n_users]}`` in :func:`ranking_metric_names` order. Users
        without relevant items get NaN for every metric (one warning says how many).

    Raises:
        DataError: a cut-off exceeds K_max, unknown metric, shapes disagree, item codes out of range,
            or an item repeated within a list.
    """
    names = _check_metrics(metrics)
    truth = as_csr(truth, "truth")
    topk = check_topk(topk, n_items=truth.shape[1])
    n_users, k_max = topk.shape
    ks = check_ks(ks, k_max)
    if truth.shape[0] != n_users:
        raise DataError(
            f"truth has {truth.shape[0]} rows but topk has {n_users}; "
            "row i of both must describe the same user"
        )
    kk = max(ks)
    hit = _hit_matrix(topk[:, :kk], truth)
    n_rel = np.diff(truth.indptr).astype(np.float64)
    no_rel = n_rel == 0
    safe_rel = np.where(no_rel, 1.0, n_rel)

    ranks = np.arange(1, kk + 1, dtype=np.float64)
    cum = np.cumsum(hit, axis=1, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    need = set(names)
    if "ndcg" in need:
        disc = position_discount(kk)
        dcg = np.cumsum(hit * disc, axis=1)
        idcg_table = np.concatenate([[1.0], np.cumsum(disc)])  # idcg_table[0] unused (no_rel)
    if "mrr" in need:
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), kk)  # 0-based rank of first hit
    if "map" in need:
        ap = np.cumsum((cum / ranks) * hit, axis=1)

    for m in names:
        for k in ks:
            h = cum[:, k - 1]
            if m == "hit":
                val = (h > 0).astype(np.float64)
            elif m == "precision":
                val = h / k
            elif m == "recall":
                val = h / safe_rel
            elif m == "ndcg":
                ideal = idcg_table[np.minimum(n_rel, k).astype(np.int64)]
                val = dcg[:, k - 1] / ideal
            elif m == "mrr":
                val = np.where(first < k, 1.0 / (first + 1.0), 0.0)
            else:  # map
                val = ap[:, k - 1] / np.maximum(np.minimum(n_rel, k), 1.0)
            val = np.asarray(val, dtype=np.float64).copy()
            val[no_rel] = np.nan
            out[f"{m}@{k}"] = val

    n_empty = int(no_rel.sum())
    if n_empty:
        warn_degenerate(
            f"{n_empty} of {n_users} users have no relevant items in truth; "
            "their ranking metrics are NaN (excluded from group means)"
        )
    return out


def rating_metrics(
    pred: np.ndarray, true: np.ndarray, users: np.ndarray, n_users: int
) -> dict[str, np.ndarray]:
    """Per-user rating-prediction errors, aggregated with ``np.bincount``.

    For user ``u`` with test ratings ``R_u``:
    ``rmse_u = sqrt(mean_{(u,i) in R_u} (pred_ui - true_ui)^2)`` and
    ``mae_u = mean_{(u,i) in R_u} |pred_ui - true_ui|``.

    Args:
        pred: predicted ratings, one per test interaction.
        true: observed ratings, aligned with ``pred``.
        users: user code (0..n_users-1) of each test interaction.
        n_users: number of users (length of the returned arrays).

    Returns:
        ``{"rmse": array [n_users], "mae": array [n_users]}``; users without test ratings get NaN
        (one warning says how many).

    Raises:
        DataError: lengths differ, NaN/inf ratings, or user codes out of range.
    """
    n_users = check_int(n_users, "n_users")
    pred_a = check_vector(pred, "pred", allow_nan=False)
    true_a = check_vector(true, "true", n=pred_a.shape[0], allow_nan=False)
    users_a = np.asarray(users)
    if users_a.ndim != 1 or users_a.shape[0] != pred_a.shape[0]:
        raise DataError(
            f"users must be 1-D with one code per prediction ({pred_a.shape[0]}), "
            f"got shape {users_a.shape}"
        )
    if users_a.size and users_a.dtype.kind not in "iu":
        raise DataError(f"users must hold integer user codes, got dtype {users_a.dtype}")
    users_a = users_a.astype(np.int64, copy=False)
    if users_a.size and (users_a.min() < 0 or users_a.max() >= n_users):
        raise DataError(
            f"user codes must be in [0, {n_users}), found range [{users_a.min()}, {users_a.max()}]"
        )
    err = pred_a - true_a
    count = np.bincount(users_a, minlength=n_users).astype(np.float64)
    sse = np.bincount(users_a, weights=err * err, minlength=n_users)
    sae = np.bincount(users_a, weights=np.abs(err), minlength=n_users)
    empty = count == 0
    safe = np.where(empty, 1.0, count)
    rmse = np.sqrt(sse / safe)
    mae = sae / safe
    rmse[empty] = np.nan
    mae[empty] = np.nan
    if empty.any():
        warn_degenerate(
            f"{int(empty.sum())} of {n_users} users have no test ratings; their rmse/mae are NaN"
        )
    return {"rmse": rmse, "mae": mae}


# ---------------------------------------------------------------------------- registration
def _all_ranking(inp: MetricInput) -> dict[str, np.ndarray]:
    def compute() -> dict[str, np.ndarray]:
        assert inp.truth is not None
        with warnings.catch_warnings():
            # Users without held-out items are not evaluated; the callers pick evaluated users.
            warnings.filterwarnings("ignore", message=".*no relevant.*")
            return ranking_metrics(inp.topk, inp.truth, ks=list(inp.ks), metrics=RANKING_METRICS)

    return inp.memo("ranking", compute)


def _register_ranking(name: str, doc: str) -> None:
    def fn(inp: MetricInput, k: int) -> np.ndarray:
        return _all_ranking(inp)[f"{name}@{k}"]

    fn.__doc__ = doc
    register_metric(fn, name=name, family="ranking", needs=("truth",), higher_is_better=True)


for _name, _doc in (
    ("ndcg", "Normalised discounted cumulative gain with binary gains (Järvelin & Kekäläinen)."),
    ("recall", "Share of the user's held-out items in the top K."),
    ("mrr", "Reciprocal rank of the first held-out item within the top K."),
    ("hit", "Whether any held-out item is in the top K."),
    ("precision", "Held-out items in the top K divided by K."),
    ("map", "Truncated average precision."),
):
    _register_ranking(_name, _doc)
