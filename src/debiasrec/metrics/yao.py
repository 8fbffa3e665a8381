"""Yao & Huang's unfairness metrics for collaborative filtering ("Beyond Parity: Fairness
Objectives for Collaborative Filtering", NeurIPS 2017).

For a disadvantaged user group ``g`` and the rest ``h``, item ``j`` and evaluated
(user, item) pairs with predictions ``y`` and targets ``r`` (ratings, or observed 0/1 for
implicit feedback), let ``E_g[y]_j`` be the mean prediction over the pairs of group-``g`` users
with item ``j`` (likewise ``E_g[r]_j``, ``E_h[.]_j``). Averaged over the ``n`` items that have
pairs in *both* groups:

* value:        ``1/n sum_j | (E_g[y]_j - E_g[r]_j) - (E_h[y]_j - E_h[r]_j) |``
* absolute:     ``1/n sum_j | |E_g[y]_j - E_g[r]_j| - |E_h[y]_j - E_h[r]_j| |``
* under:        ``1/n sum_j | max(0, E_g[r]_j - E_g[y]_j) - max(0, E_h[r]_j - E_h[y]_j) |``
* over:         ``1/n sum_j | max(0, E_g[y]_j - E_g[r]_j) - max(0, E_h[y]_j - E_h[r]_j) |``
* non_parity:   ``| E_g[y] - E_h[y] |`` (means over all pairs of each group)

Yao & Huang define the per-item expectations over *all* users of a group (a dense prediction
matrix); on evaluated pairs (held-out ratings, or positives plus sampled negatives as in
RecBole-FairRec's sampled "uni100" protocol) an item only counts where both groups have pairs.
RecBole-FairRec's FOCF table (ML-1M, gender) reports these on explicit ratings next to RMSE.
"""

from __future__ import annotations

import numpy as np

from debiasrec.errors import DataError
from debiasrec.metrics._checks import warn_degenerate

YAO_METRICS: tuple[str, ...] = ("value", "absolute", "under", "over", "non_parity")


def _group_item_means(
    values: np.ndarray, items: np.ndarray, in_group: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    cnt = np.bincount(items[in_group], minlength=n_items).astype(np.float64)
    tot = np.bincount(items[in_group], weights=values[in_group], minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tot / cnt, cnt


def yao_unfairness(
    pred: np.ndarray,
    target: np.ndarray,
    items: np.ndarray,
    disadvantaged: np.ndarray,
    *,
    n_items: int | None = None,
) -> dict[str, float]:
    """The five Yao & Huang unfairness values for aligned arrays of evaluated pairs.

    Args:
        pred: predicted value of each pair.
        target: observed value (rating, or 1/0 for positive/negative).
        items: item code of each pair.
        disadvantaged: True where the pair's user is in the disadvantaged group ``g``; pairs of
            users without a label should be removed beforehand.
        n_items: number of items (default ``items.max() + 1``).

    Returns:
        ``{"value", "absolute", "under", "over", "non_parity"}``; NaN (with a warning) when a
        group has no pairs, or no item has pairs from both groups (the item-wise four).
    """
    y = np.asarray(pred, dtype=np.float64).ravel()
    r = np.asarray(target, dtype=np.float64).ravel()
    it = np.asarray(items, dtype=np.int64).ravel()
    g = np.asarray(disadvantaged, dtype=bool).ravel()
    if not (len(y) == len(r) == len(it) == len(g)):
        raise DataError(
            f"pred, target, items and disadvantaged must be aligned; got lengths "
            f"{len(y)}, {len(r)}, {len(it)}, {len(g)}"
        )
    if len(it) and it.min() < 0:
        raise DataError("item codes must be non-negative")
    n = int(n_items if n_items is not None else (it.max() + 1 if len(it) else 0))
    out = dict.fromkeys(YAO_METRICS, float("nan"))
    if not g.any() or g.all():
        warn_degenerate("Yao unfairness needs pairs from both groups; returning NaN")
        return out
    out["non_parity"] = float(abs(y[g].mean() - y[~g].mean()))
    yg, cg = _group_item_means(y, it, g, n)
    rg, _ = _group_item_means(r, it, g, n)
    yh, ch = _group_item_means(y, it, ~g, n)
    rh, _ = _group_item_means(r, it, ~g, n)
    both = (cg > 0) & (ch > 0)
    if not both.any():
        warn_degenerate("no item has pairs from both groups; item-wise Yao metrics are NaN")
        return out
    dg, dh = (yg - rg)[both], (yh - rh)[both]
    out["value"] = float(np.mean(np.abs(dg - dh)))
    out["absolute"] = float(np.mean(np.abs(np.abs(dg) - np.abs(dh))))
    out["under"] = float(np.mean(np.abs(np.maximum(0, -dg) - np.maximum(0, -dh))))
    out["over"] = float(np.mean(np.abs(np.maximum(0, dg) - np.maximum(0, dh))))
    return out
