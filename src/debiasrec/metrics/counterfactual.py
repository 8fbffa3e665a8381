"""Counterfactual list metrics for LLM / text recommenders (FaiRLLM, Zhang et al. RecSys 2023).

Every metric compares, per user, the top-K list made with a *variant* prompt (e.g. the user text
says "gender female") with the list made with the *neutral* prompt (no sensitive field), and is
vectorised over users: lists are int arrays ``[n_users, K]`` (``-1`` pads short lists).

Definitions (``A`` = variant list, ``N`` = neutral list, ``rank`` 1-based):

* ``jaccard@K = |A ∩ N| / |A ∪ N|`` (1 for identical sets; padding ignored).
* ``serp@K`` (FaiRLLM's SERP*): rank-weighted overlap,
  ``sum_{v in A ∩ N} (K - rank_A(v) + 1) / (K (K + 1) / 2)``; 1 when ``A`` and ``N`` hold the same
  items, whatever their order in ``N``.
* ``prag@K`` (our exact form of FaiRLLM's PRAG*): the share of the ``K (K - 1) / 2`` ordered pairs
  ``(v, w)`` of ``A`` (``v`` above ``w``) that ``N`` orders the same way, where an item missing from
  ``N`` ranks below every item of ``N``; a pair with *both* items missing from ``N`` counts as a
  disagreement (``N`` gives no evidence of that order). FaiRLLM's own PRAG* normalises by
  ``K (K + 1)`` and counts only pairs whose upper item is in ``N``, so a list that appends new items
  at the bottom is not penalised for them; ours is 1 only for identical lists and 0 for disjoint ones.

Across the values of one attribute (``sim_v`` = the mean over users of a similarity with the
attribute set to ``v``):

* ``SNSR = max_v sim_v - min_v sim_v`` (sensitive-to-neutral similarity range),
* ``SNSV = std_v sim_v`` (population standard deviation over values).

A placebo attribute (a favourite colour) and harmless typos give the noise floor; the permutation
test :func:`snsr_permutation_test` asks whether an attribute's SNSR exceeds what exchanging value
labels within users produces.
"""

from __future__ import annotations

import numpy as np

from debiasrec.errors import DataError
from debiasrec.random import np_rng


def _check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or a.shape != b.shape:
        raise DataError(f"lists must be 2-D arrays of equal shape, got {a.shape} and {b.shape}")
    return a, b


def _member(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[n, K]`` bool: is ``a[u, r]`` (a real item) in row ``b[u]``."""
    return ((a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)).any(2)


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-user Jaccard similarity of two top-K lists (as sets)."""
    a, b = _check(a, b)
    inter = _member(a, b).sum(1)
    union = (a >= 0).sum(1) + (b >= 0).sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def serp(variant: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Per-user SERP*@K: rank-weighted share of the variant list found in the neutral list."""
    a, b = _check(variant, neutral)
    k = a.shape[1]
    w = (k - np.arange(k)).astype(np.float64)  # K - rank + 1
    return (_member(a, b) * w).sum(1) / (k * (k + 1) / 2)


def prag(variant: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Per-user pairwise ranking agreement of the variant list with the neutral list (see module)."""
    a, b = _check(variant, neutral)
    n, k = a.shape
    if k < 2:
        return np.ones(n)
    # Position of each variant item in the neutral list (k = absent, below every present item).
    eq = (a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)
    pos = np.where(eq.any(2), eq.argmax(2), k)
    upper = np.triu(np.ones((k, k), dtype=bool), 1)  # v = row above w = column in the variant
    valid = (a >= 0)[:, :, None] & (a >= 0)[:, None, :] & upper
    agree = (pos[:, :, None] < pos[:, None, :]) & valid
    n_pairs = valid.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pairs > 0, agree.sum((1, 2)) / np.maximum(n_pairs, 1), 1.0)


SIMILARITIES = {"jaccard": jaccard, "serp": serp, "prag": prag}


def snsr(sims: np.ndarray) -> float:
    """Range of the mean similarity across values: ``sims`` is ``[n_values, n_users]``."""
    means = np.nanmean(np.asarray(sims, dtype=np.float64), axis=1)
    return float(means.max() - means.min())


def snsv(sims: np.ndarray) -> float:
    """Population standard deviation of the mean similarity across values."""
    means = np.nanmean(np.asarray(sims, dtype=np.float64), axis=1)
    return float(means.std())


def snsr_permutation_test(
    sims: np.ndarray, *, n_perm: int = 2000, rng: np.random.Generator | int | None = None
) -> float:
    """P-value of SNSR under exchangeable value labels within each user.

    Under the null hypothesis that the attribute's value does not matter, a user's similarities
    under the different values are exchangeable; each permutation shuffles them within every user
    independently and recomputes SNSR. ``p = (1 + #{SNSR_perm >= SNSR_obs}) / (1 + n_perm)``.
    """
    s = np.asarray(sims, dtype=np.float64)
    m, n = s.shape
    if m < 2:
        return float("nan")
    gen = np_rng(rng)
    obs = snsr(s)
    hits = 0
    cols = np.arange(n)
    for _ in range(n_perm):
        order = np.argsort(gen.random((m, n)), axis=0)
        perm = s[order, cols]
        hits += snsr(perm) >= obs - 1e-12
    return (1 + hits) / (1 + n_perm)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1); NaNs are left out and kept."""
    items = sorted(((p, k) for k, p in pvalues.items() if not np.isnan(p)))
    m = len(items)
    out = {k: float("nan") for k, p in pvalues.items() if np.isnan(p)}
    running = 0.0
    for i, (p, k) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out
