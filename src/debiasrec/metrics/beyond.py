"""Beyond-accuracy metrics: coverage, exposure concentration, popularity bias, novelty, diversity.

Each function takes a top-K matrix ``topk`` [n_users, K] of item codes in rank order (-1 =
padding, ignored) and a cut-off ``k``. Catalogue-level metrics return a ``float``; user-level
metrics return a float64 array [n_users] (NaN, with one warning, for users whose top-k list holds
no item or too few items for the metric).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from debiasrec.errors import DataError
from debiasrec.metrics._checks import (
    as_csr,
    check_int,
    check_item_pop,
    check_share,
    check_topk,
    position_discount,
    warn_degenerate,
)
from debiasrec.metrics.registry import MetricInput, Row, register_metric, scalar_row

#: Tier codes returned by :func:`popularity_tiers`; ``TIER_NAMES[code]`` is the tier's name.
HEAD, MID, TAIL = 0, 1, 2
TIER_NAMES: tuple[str, str, str] = ("head", "mid", "tail")


def exposure_counts(
    topk: np.ndarray, n_items: int, k: int, *, position_weighted: bool = False
) -> np.ndarray:
    """Return the exposure of every catalogue item in the top-``k`` lists.

    ``exposure_i = sum_u sum_{r<=k} 1[topk_ur = i] * w_r`` with ``w_r = 1`` or, when
    ``position_weighted``, the DCG discount ``w_r = 1 / log2(r + 1)`` (Singh & Joachims,
    "Fairness of Exposure in Rankings", KDD 2018).

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        n_items: catalogue size.
        k: cut-off (``1 <= k <= K``).
        position_weighted: weight by ``1 / log2(rank + 1)`` instead of counting.

    Returns:
        float64 array [n_items] (items never recommended have 0).
    """
    n_items = check_int(n_items, "n_items", minimum=1)
    top = check_topk(topk, k=k, n_items=n_items)
    valid = top >= 0
    if position_weighted:
        weights = np.broadcast_to(position_discount(top.shape[1]), top.shape)[valid]
    else:
        weights = None
    return np.bincount(top[valid], weights=weights, minlength=n_items).astype(np.float64)


def item_coverage(topk: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage: share of catalogue items that appear in at least one top-``k`` list.

    ``coverage@k = |union_u top_k(u)| / n_items`` (RecBole ``ItemCoverage``; Ge et al., "Beyond
    accuracy: evaluating recommender systems by coverage and serendipity", RecSys 2010).

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        n_items: catalogue size.
        k: cut-off.

    Returns:
        A scalar in [0, 1] (catalogue-level).
    """
    counts = exposure_counts(topk, n_items, k)
    return float(np.count_nonzero(counts) / counts.shape[0])


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values ``x`` (0 = equal, ``(n-1)/n`` = all on one).

    With ``x`` sorted ascending and ``i = 1..n``:
    ``G = sum_i (2i - n - 1) x_(i) / (n * sum_i x_i)``.
    """
    xs = np.sort(np.asarray(x, dtype=np.float64))
    n = xs.shape[0]
    total = xs.sum()
    if n == 0 or total <= 0:
        warn_degenerate("Gini of an all-zero (or empty) exposure vector is undefined; NaN")
        return float("nan")
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2.0 * i - n - 1.0) * xs) / (n * total))


def exposure_gini(topk: np.ndarray, n_items: int, k: int, position_weighted: bool = False) -> float:
    """Gini index of item exposure over the whole catalogue.

    Exposure counts are taken over **all** ``n_items`` items (items never recommended count as
    0) and ``G = sum_i (2i - n - 1) x_(i) / (n * sum x)`` over the ascending-sorted counts
    (RecBole ``GiniIndex``; Fleder & Hosanagar, Management Science 2009). With
    ``position_weighted`` each recommendation at rank ``r`` counts ``1 / log2(r + 1)``.

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        n_items: catalogue size.
        k: cut-off.
        position_weighted: weight exposures by the DCG discount.

    Returns:
        A scalar in [0, (n_items-1)/n_items] (catalogue-level); NaN with a warning if nothing is
        recommended.
    """
    return gini(exposure_counts(topk, n_items, k, position_weighted=position_weighted))


def popularity_tiers(
    item_pop: np.ndarray,
    head_share: float = 0.2,
    tail_share: float = 0.2,
    *,
    by: Literal["interactions", "items"] = "interactions",
) -> np.ndarray:
    """Split the catalogue into popularity tiers head (0), mid (1) and tail (2).

    Items are ordered by training popularity, most popular first, ties broken by item code
    (lower code first).

    - ``by="interactions"`` (default; Abdollahpouri et al., "The Unfairness of Popularity Bias in
      Recommendation", RMSE@RecSys 2019): **head** = the most popular items that together account
      for ``head_share`` of all training interactions (the smallest such prefix); **tail** = the
      least popular items that together account for ``tail_share`` of the interactions (items
      with no interaction are always tail); **mid** = the rest.
    - ``by="items"``: **head** = the ``ceil(head_share * n_items)`` most popular items, **tail** =
      the ``ceil(tail_share * n_items)`` least popular items, mid = the rest. This is the
      short head used by :func:`long_tail_share` (with ``tail_share = 1 - head_share``).

    An item that would fall in both head and tail (tiny catalogues) is head.

    Args:
        item_pop: training interaction count per item code.
        head_share: share of interactions (or items) in the head.
        tail_share: share of interactions (or items) in the tail.
        by: ``"interactions"`` or ``"items"``.

    Returns:
        int8 array [n_items] of tier codes; names are ``TIER_NAMES[code]``.

    Raises:
        DataError: shares outside [0, 1] or summing to more than 1, negative popularity, or
            ``by="interactions"`` with no training interactions at all.
    """
    pop = check_item_pop(item_pop)
    head_share = check_share(head_share, "head_share")
    tail_share = check_share(tail_share, "tail_share")
    if head_share + tail_share > 1.0 + 1e-9:
        raise DataError(f"head_share + tail_share must be <= 1, got {head_share} + {tail_share}")
    n = pop.shape[0]
    order = np.lexsort((np.arange(n), -pop))  # most popular first, ties by item code
    tiers_sorted = np.full(n, MID, dtype=np.int8)
    if by == "items":
        n_head = int(np.ceil(head_share * n - 1e-9))
        n_tail = int(np.ceil(tail_share * n - 1e-9))
        pos = np.arange(n)
        tiers_sorted[pos >= n - n_tail] = TAIL
        tiers_sorted[pos < n_head] = HEAD
    elif by == "interactions":
        total = pop.sum()
        if total <= 0:
            raise DataError(
                "item_pop sums to 0: popularity tiers by interactions need training interactions"
            )
        sorted_pop = pop[order]
        before = np.cumsum(sorted_pop) - sorted_pop  # interactions of more popular items
        after = total - before - sorted_pop  # interactions of less popular items
        eps = 1e-12 * total
        tiers_sorted[after < tail_share * total - eps] = TAIL
        tiers_sorted[sorted_pop == 0] = TAIL
        tiers_sorted[before < head_share * total - eps] = HEAD
    else:
        raise DataError(f"by must be 'interactions' or 'items', got {by!r}")
    tiers = np.empty(n, dtype=np.int8)
    tiers[order] = tiers_sorted
    return tiers


def _list_mean(top: np.ndarray, per_item: np.ndarray, what: str) -> np.ndarray:
    """Mean of ``per_item`` over each user's non-padding items (NaN + warning for empty lists)."""
    valid = top >= 0
    m = valid.sum(axis=1)
    vals = np.where(valid, per_item[np.where(valid, top, 0)], 0.0)
    out = vals.sum(axis=1) / np.maximum(m, 1)
    empty = m == 0
    if empty.any():
        out[empty] = np.nan
        warn_degenerate(
            f"{int(empty.sum())} of {top.shape[0]} users have an empty top-k list; "
            f"their {what} is NaN",
            stacklevel=4,
        )
    return out


def average_popularity(topk: np.ndarray, item_pop: np.ndarray, k: int) -> np.ndarray:
    """Average recommendation popularity (ARP), per user.

    ``ARP_u = (1 / |L_u|) * sum_{i in L_u} pop_i`` with ``L_u`` the user's top-k list (padding
    excluded) and ``pop_i`` the item's training interaction count (Abdollahpouri et al.,
    "Managing Popularity Bias in Recommender Systems with Personalized Re-ranking", FLAIRS 2019;
    RecBole ``AveragePopularity``).

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        item_pop: training interaction count per item code.
        k: cut-off.

    Returns:
        float64 array [n_users] (user-level); NaN for empty lists.
    """
    pop = check_item_pop(item_pop)
    top = check_topk(topk, k=k, n_items=pop.shape[0])
    return _list_mean(top, pop, "average popularity")


def long_tail_share(
    topk: np.ndarray, item_pop: np.ndarray, k: int, head_share: float = 0.2
) -> np.ndarray:
    """Average percentage of long-tail items (APLT), per user.

    ``APLT_u = |{i in L_u : i not in H}| / |L_u|`` with ``L_u`` the top-k list (padding excluded)
    and ``H`` the short head: the ``ceil(head_share * n_items)`` most popular catalogue items by
    training count, ties broken by item code (i.e. ``popularity_tiers(item_pop, head_share,
    1 - head_share, by="items") == HEAD``). Abdollahpouri et al., "Controlling Popularity Bias in
    Learning-to-Rank Recommendation", RecSys 2017.

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        item_pop: training interaction count per item code.
        k: cut-off.
        head_share: fraction of catalogue items in the short head.

    Returns:
        float64 array [n_users] in [0, 1] (user-level); NaN for empty lists.
    """
    pop = check_item_pop(item_pop)
    head_share = check_share(head_share, "head_share")
    top = check_topk(topk, k=k, n_items=pop.shape[0])
    tiers = popularity_tiers(pop, head_share, 1.0 - head_share, by="items")
    return _list_mean(top, (tiers != HEAD).astype(np.float64), "long-tail share")


def novelty(topk: np.ndarray, item_pop: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Mean self-information (novelty) of each user's list.

    ``novelty_u = (1 / |L_u|) * sum_{i in L_u} -log2(max(pop_i, 1) / n_users)`` (Zhou et al.,
    "Solving the apparent diversity-accuracy dilemma of recommender systems", PNAS 2010). Items
    never seen in training are treated as seen once (``pop = 1``) so the value stays finite.

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        item_pop: training interaction count per item code.
        n_users: number of training users (the normaliser of ``pop_i``).
        k: cut-off.

    Returns:
        float64 array [topk.shape[0]] (user-level, bits); NaN for empty lists.
    """
    pop = check_item_pop(item_pop)
    n_users = check_int(n_users, "n_users", minimum=1)
    top = check_topk(topk, k=k, n_items=pop.shape[0])
    info = -np.log2(np.maximum(pop, 1.0) / n_users)
    return _list_mean(top, info, "novelty")


def intra_list_diversity(topk: np.ndarray, item_features: sp.csr_matrix, k: int) -> np.ndarray:
    """Intra-list diversity (ILD): mean pairwise cosine distance of the list's items, per user.

    ``ILD_u = (2 / (m (m - 1))) * sum_{i < j in L_u} (1 - cos(f_i, f_j))`` with ``m = |L_u|``
    (Ziegler et al., "Improving recommendation lists through topic diversification", WWW 2005).
    Computed without enumerating pairs: with unit vectors ``v_i = f_i / ||f_i||`` and
    ``s_u = sum_{i in L_u} v_i``, ``sum_{i<j} cos = (||s_u||^2 - sum_i ||v_i||^2) / 2``. An item
    with an all-zero feature row has cosine 0 with every item (distance 1).

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        item_features: [n_items, n_features] sparse (e.g. genre indicator) matrix.
        k: cut-off.

    Returns:
        float64 array [n_users] (user-level; in [0, 1] for non-negative features); NaN for
        lists with fewer than 2 items.
    """
    feats = as_csr(item_features, "item_features").astype(np.float64)
    n_items = feats.shape[0]
    top = check_topk(topk, k=k, n_items=n_items)
    n_users = top.shape[0]
    norms = np.sqrt(np.asarray(feats.multiply(feats).sum(axis=1)).ravel())
    has = norms > 0
    unit = sp.diags(np.where(has, 1.0 / np.where(has, norms, 1.0), 0.0)) @ feats
    valid = top >= 0
    rows = np.broadcast_to(np.arange(n_users)[:, None], top.shape)[valid]
    member = sp.csr_matrix((np.ones(rows.shape[0]), (rows, top[valid])), shape=(n_users, n_items))
    s = member @ unit
    sq = np.asarray(s.multiply(s).sum(axis=1)).ravel()
    self_sim = member @ has.astype(np.float64)
    m = valid.sum(axis=1).astype(np.float64)
    pairs = m * (m - 1.0) / 2.0
    small = m < 2
    ild = 1.0 - (sq - self_sim) / 2.0 / np.where(small, 1.0, pairs)
    ild = np.clip(ild, 0.0, 2.0)
    if small.any():
        ild[small] = np.nan
        warn_degenerate(
            f"{int(small.sum())} of {n_users} users have fewer than 2 items in their top-k list; "
            "their intra-list diversity is NaN"
        )
    return ild


# ---------------------------------------------------------------------------- registration
@register_metric(name="arp", family="beyond", needs=("popularity",), higher_is_better=False)
def _arp(inp: MetricInput, k: int) -> np.ndarray:
    """Average training popularity of the listed items (Abdollahpouri et al. 2019)."""
    assert inp.item_pop is not None
    return average_popularity(inp.topk, inp.item_pop, k)


@register_metric(name="aplt", family="beyond", needs=("popularity",), higher_is_better=True)
def _aplt(inp: MetricInput, k: int) -> np.ndarray:
    """Share of long-tail items in the list (Abdollahpouri et al. 2019)."""
    assert inp.item_pop is not None
    return long_tail_share(inp.topk, inp.item_pop, k, head_share=inp.head_share)


@register_metric(name="novelty", family="beyond", needs=("popularity",), higher_is_better=True)
def _novelty(inp: MetricInput, k: int) -> np.ndarray:
    """Mean self-information -log2(popularity share) of the listed items (Zhou et al. 2010)."""
    assert inp.item_pop is not None and inp.n_pop_users is not None
    return novelty(inp.topk, inp.item_pop, inp.n_pop_users, k)


@register_metric(name="ild", family="beyond", needs=("item_features",), higher_is_better=True)
def _ild(inp: MetricInput, k: int) -> np.ndarray | None:
    """Intra-list diversity: mean pairwise category distance (Ziegler et al. 2005)."""
    assert inp.item_features is not None
    return intra_list_diversity(inp.topk, inp.item_features, k) if k > 1 else None


@register_metric(name="coverage", family="catalog", higher_is_better=True)
def _coverage(inp: MetricInput, k: int) -> list[Row]:
    """Share of the catalog recommended to at least one user."""
    return [scalar_row(f"coverage@{k}", item_coverage(inp.topk, inp.n_items, k))]


@register_metric(name="gini", family="catalog", higher_is_better=False)
def _gini(inp: MetricInput, k: int) -> list[Row]:
    """Gini coefficient of item exposure counts (0: every item equally exposed)."""
    return [scalar_row(f"gini@{k}", exposure_gini(inp.topk, inp.n_items, k))]
