"""Calibration metrics: how far a list's category mix is from the user's history.

Steck, "Calibrated Recommendations", RecSys 2018: with ``p(c|i)`` an item's category distribution
(its multi-hot category row divided by its number of categories),

- ``p(c|u) = sum_{i in H_u} p(c|i) / sum_{i in H_u} sum_c p(c|i)`` over the user's history ``H_u``,
- ``q(c|u) = sum_{i in L_u} p(c|i) / sum_{i in L_u} sum_c p(c|i)`` over the top-k list ``L_u``,
- ``q~ = (1 - alpha) q + alpha p`` (``alpha = 0.01`` keeps the KL finite),
- ``C_KL(u) = KL(p || q~) = sum_c p(c|u) log(p(c|u) / q~(c|u))`` (natural log).

Items without any category carry no mass (they neither add to nor dilute ``q``). With categories =
popularity tiers (head/mid/tail) and the Jensen-Shannon divergence this is the popularity
miscalibration of Abdollahpouri et al., "User-centered Evaluation of Popularity Bias in Recommender
Systems", UMAP 2021.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from debiasrec.errors import DataError
from debiasrec.metrics._checks import as_csr, check_topk, warn_degenerate
from debiasrec.metrics.registry import MetricInput, register_metric

Divergence = Literal["kl", "js"]


def item_category_distribution(item_features: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """``p(c|i)``: each item's category row divided by its sum (all-zero rows stay zero)."""
    feats = as_csr(sp.csr_matrix(item_features), "item_features").astype(np.float64)
    if feats.nnz and feats.data.min() < 0:
        raise DataError("item_features must be non-negative")
    tot = np.asarray(feats.sum(axis=1)).ravel()
    return sp.diags(np.where(tot > 0, 1.0 / np.where(tot > 0, tot, 1.0), 0.0)) @ feats


def tier_features(tiers: np.ndarray, n_tiers: int = 3) -> sp.csr_matrix:
    """One-hot ``[n_items, n_tiers]`` matrix of integer tier codes (e.g. ``popularity_tiers``)."""
    t = np.asarray(tiers, dtype=np.int64)
    return sp.csr_matrix(
        (np.ones(t.shape[0]), (np.arange(t.shape[0]), t)), shape=(t.shape[0], n_tiers)
    )


def user_distribution(rows: sp.spmatrix, item_dist: sp.csr_matrix) -> np.ndarray:
    """Category distribution ``[n, C]`` of weighted item sets ``rows`` ``[n, n_items]``.

    Rows with no category mass are all zero.
    """
    d = np.asarray((sp.csr_matrix(rows, dtype=np.float64) @ item_dist).todense())
    tot = d.sum(axis=1, keepdims=True)
    return np.divide(d, tot, out=np.zeros_like(d), where=tot > 0)


def divergence(p: np.ndarray, q: np.ndarray, kind: Divergence = "kl") -> np.ndarray:
    """Divergence over the last axis: ``KL(p || q)`` or ``JS(p, q)`` (natural log).

    ``KL(p||q) = sum_c p_c log(p_c / q_c)`` with ``0 log 0 = 0``;
    ``JS(p, q) = KL(p||m) / 2 + KL(q||m) / 2`` with ``m = (p + q) / 2``.
    Broadcasts like NumPy; for KL, ``q`` must be positive wherever ``p`` is.
    """
    if kind == "kl":
        return _kl(p, q)
    if kind == "js":
        m = 0.5 * (p + q)
        return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    raise DataError(f"divergence must be 'kl' or 'js', got {kind!r}")


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    pos = p > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(
            pos, p * (np.log(np.where(pos, p, 1.0)) - np.log(np.where(pos, q, 1.0))), 0.0
        )
    return terms.sum(axis=-1)


def topk_matrix(topk: np.ndarray, n_items: int, k: int) -> sp.csr_matrix:
    """0/1 ``[n_users, n_items]`` membership matrix of the first ``k`` items of each list."""
    top = check_topk(topk, k=k, n_items=n_items)
    valid = top >= 0
    rows = np.broadcast_to(np.arange(top.shape[0])[:, None], top.shape)[valid]
    return sp.csr_matrix(
        (np.ones(rows.shape[0]), (rows, top[valid])), shape=(top.shape[0], n_items)
    )


def miscalibration(
    topk: np.ndarray,
    history: sp.spmatrix,
    item_features: sp.spmatrix | np.ndarray,
    k: int,
    *,
    alpha: float = 0.01,
    kind: Divergence = "kl",
) -> np.ndarray:
    """Per-user miscalibration ``C_KL(u) = KL(p(.|u) || q~(.|u))`` of the top-``k`` lists.

    See the module docstring for ``p``, ``q`` and ``q~`` (Steck, RecSys 2018). With
    ``kind="js"`` the Jensen-Shannon divergence ``JS(p, q~)`` is used instead (bounded by
    ``log 2``), as for popularity calibration (Abdollahpouri et al., UMAP 2021).

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        history: [n_users, n_items] sparse matrix of the users' (training) interactions, row r
            for the user of ``topk`` row r; values are weights (1 for implicit feedback).
        item_features: [n_items, C] category indicator matrix (e.g. genres, or one-hot tiers
            from :func:`tier_features`).
        k: cut-off.
        alpha: smoothing of ``q`` towards ``p``, in [0, 1).
        kind: ``"kl"`` or ``"js"``.

    Returns:
        float64 array [n_users] (user-level, >= 0); NaN with a warning for users whose history
        or list has no category mass.
    """
    if not 0.0 <= alpha < 1.0:
        raise DataError(f"alpha must be in [0, 1), got {alpha}")
    dist = item_category_distribution(item_features)
    n_items = dist.shape[0]
    hist = as_csr(sp.csr_matrix(history), "history")
    top = check_topk(topk, k=k, n_items=n_items)
    if hist.shape != (top.shape[0], n_items):
        raise DataError(
            f"history must be [n_users, n_items] = {(top.shape[0], n_items)}, got {hist.shape}"
        )
    p = user_distribution(hist, dist)
    q = user_distribution(topk_matrix(top, n_items, k), dist)
    qt = (1.0 - alpha) * q + alpha * p
    out = divergence(p, qt, kind)
    bad = (p.sum(axis=1) == 0) | (q.sum(axis=1) == 0)
    if bad.any():
        out[bad] = np.nan
        warn_degenerate(
            f"{int(bad.sum())} of {top.shape[0]} users have no category mass in their history "
            "or list; their miscalibration is NaN"
        )
    return out


@register_metric(
    name="miscalibration",
    family="calibration",
    needs=("history", "item_features"),
    higher_is_better=False,
)
def _miscalibration(inp: MetricInput, k: int) -> np.ndarray | None:
    """Steck's C_KL between the category mix of the user's history and of the list."""
    assert inp.history is not None and inp.item_features is not None
    if len(inp.users) == 0:
        return None
    return miscalibration(inp.topk, inp.history, inp.item_features, k)


__all__ = [
    "divergence",
    "item_category_distribution",
    "miscalibration",
    "tier_features",
    "topk_matrix",
    "user_distribution",
]
