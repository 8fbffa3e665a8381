"""Biases of LLM rankers: length, popularity, concentration, and (lack of) personalisation.

All functions are vectorised over users (rows) and return per-user values where that makes sense.

* **Length bias**: Spearman correlation, within each user's candidate list, between the score and
  the candidate's token count. Summed log-likelihood favours short titles (negative values);
  length-normalised (mean) log-likelihood tends to favour long, predictable titles (positive).
  Contextual calibration (Zhao et al., "Calibrate Before Use", ICML 2021) and domain-conditional
  PMI (Holtzman et al., "Surface Form Competition", EMNLP 2021) remove the part of the score that
  does not depend on the user.
* **Popularity bias**: Spearman correlation, within each list, between score and item popularity
  (positive: popular items are scored higher), and the mean popularity of the top-k.
* **Concentration**: the item most often ranked first, and how often.
* **Personalisation**: Jaccard@k between a user's list and the list made from another user's
  history (lower = more personalised); cf. FaiRLLM (Zhang et al., RecSys 2023), which compares
  lists across user-side prompt variants with Jaccard and rank overlap.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata

from debiasrec.errors import DataError


def rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of ``x[r]`` and ``y[r]`` for every row (NaN entries ignored).

    Rows with fewer than 3 complete pairs, or with a constant ``x`` or ``y``, give NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise DataError(
            f"rowwise_spearman needs two 2-D arrays of one shape, got {x.shape}, {y.shape}"
        )
    bad = np.isnan(x) | np.isnan(y)
    x = np.where(bad, np.nan, x)
    y = np.where(bad, np.nan, y)
    rx = rankdata(x, axis=1, nan_policy="omit")
    ry = rankdata(y, axis=1, nan_policy="omit")
    ok = ~bad
    n = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.nansum(rx, 1) / n
        my = np.nansum(ry, 1) / n
        dx = np.where(ok, rx - mx[:, None], 0.0)
        dy = np.where(ok, ry - my[:, None], 0.0)
        cov = (dx * dy).sum(1)
        den = np.sqrt((dx * dx).sum(1) * (dy * dy).sum(1))
        rho = cov / den
    rho[(n < 3) | (den == 0)] = np.nan
    return rho


def _mean(values: np.ndarray, what: str) -> float:
    if np.isnan(values).all():
        warnings.warn(f"{what}: no row has a defined value; returning NaN", stacklevel=3)
        return float("nan")
    return float(np.nanmean(values))


def length_bias(scores: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """Per-user Spearman correlation between candidate scores and candidate token counts.

    Args:
        scores: ``[n_users, n_candidates]`` (NaN = no candidate).
        n_tokens: token count of each candidate, same shape.
    """
    return rowwise_spearman(scores, n_tokens)


def mean_length_bias(scores: np.ndarray, n_tokens: np.ndarray) -> float:
    """Average of :func:`length_bias` over users with a defined value (NaN and a warning if none)."""
    return _mean(length_bias(scores, n_tokens), "length bias")


def popularity_bias(scores: np.ndarray, items: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Per-user Spearman correlation between candidate scores and the candidates' popularity.

    Args:
        scores: ``[n_users, n_candidates]`` (NaN = no candidate).
        items: item codes of the candidates (``-1`` = no candidate), same shape.
        popularity: interaction count (or share) of every item.
    """
    items = np.asarray(items)
    pop = np.where(
        items >= 0, np.asarray(popularity, dtype=np.float64)[np.maximum(items, 0)], np.nan
    )
    return rowwise_spearman(scores, pop)


def mean_popularity_at_k(topk: np.ndarray, popularity: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-user mean popularity of the first ``k`` listed items (``-1`` padding ignored)."""
    top = np.asarray(topk)[:, :k]
    valid = top >= 0
    pop = np.asarray(popularity, dtype=np.float64)[np.maximum(top, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, pop, 0.0).sum(1) / valid.sum(1)


def top1_concentration(topk: np.ndarray) -> tuple[int, int, float]:
    """``(item, count, share)``: the item ranked first most often, its count and share of users."""
    first = np.asarray(topk)[:, 0]
    first = first[first >= 0]
    if len(first) == 0:
        return -1, 0, float("nan")
    items, counts = np.unique(first, return_counts=True)
    best = int(np.argmax(counts))
    return int(items[best]), int(counts[best]), float(counts[best] / len(first))


def jaccard_at_k(a: np.ndarray, b: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-row Jaccard similarity of the first ``k`` items of ``a[r]`` and ``b[r]`` (-1 ignored)."""
    a = np.asarray(a)[:, :k]
    b = np.asarray(b)[:, :k]
    if a.shape[0] != b.shape[0]:
        raise DataError(f"jaccard_at_k: {a.shape[0]} rows vs {b.shape[0]} rows")
    va, vb = a >= 0, b >= 0
    inter = ((a[:, :, None] == b[:, None, :]) & va[:, :, None] & vb[:, None, :]).any(2).sum(1)
    union = va.sum(1) + vb.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)
