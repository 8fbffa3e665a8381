"""Tests for debiasrec.metrics.beyond: hand-computed values, edge cases, properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.errors import DataError
from debiasrec.metrics import (
    HEAD,
    MID,
    TAIL,
    TIER_NAMES,
    DegenerateMetricWarning,
    average_popularity,
    exposure_counts,
    exposure_gini,
    intra_list_diversity,
    item_coverage,
    long_tail_share,
    novelty,
    popularity_tiers,
)


def test_item_coverage_counts_distinct_items_within_k() -> None:
    topk = np.array([[0, 1, -1], [1, 2, 3]])
    # k=2: {0, 1, 2} of 10 items; item 3 is at rank 3, padding ignored
    assert item_coverage(topk, n_items=10, k=2) == pytest.approx(0.3)
    assert item_coverage(topk, n_items=10, k=3) == pytest.approx(0.4)


def test_exposure_counts_position_weighted() -> None:
    topk = np.array([[0, 1], [1, -1]])
    assert exposure_counts(topk, 3, 2).tolist() == [1.0, 2.0, 0.0]
    # item 0 at rank 1 (weight 1); item 1 at rank 2 (1/log2 3) and rank 1 (1)
    w = exposure_counts(topk, 3, 2, position_weighted=True)
    np.testing.assert_allclose(w, [1.0, 1 / math.log2(3) + 1.0, 0.0])


def test_gini_uniform_is_zero_and_all_on_one_is_max() -> None:
    assert exposure_gini(np.array([[0, 1], [2, 3]]), n_items=4, k=2) == pytest.approx(0.0)
    # everything on one of n = 5 items -> (n - 1) / n
    assert exposure_gini(np.array([[0], [0], [0]]), n_items=5, k=1) == pytest.approx(4 / 5)


def test_gini_hand_value_and_never_recommended_items_count() -> None:
    # counts over all 3 items: item0 = 0, item1 = 1, item2 = 3; sorted x = (0, 1, 3)
    # G = sum (2i - n - 1) x_i / (n sum x) = (-2*0 + 0*1 + 2*3) / (3 * 4) = 0.5
    topk = np.array([[2, 1], [2, -1], [2, -1]])
    assert exposure_gini(topk, n_items=3, k=2) == pytest.approx(0.5)
    # the same lists over a larger catalogue are more concentrated (zeros count)
    assert exposure_gini(topk, n_items=6, k=2) > 0.5


def test_gini_position_weighted_hand_value() -> None:
    # exposures: item0 = 1, item1 = 1/log2 3 = c; sorted (c, 1)
    # G = ((2 - 3) c + (4 - 3) 1) / (2 (1 + c)) = (1 - c) / (2 (1 + c))
    c = 1 / math.log2(3)
    got = exposure_gini(np.array([[0, 1]]), n_items=2, k=2, position_weighted=True)
    assert got == pytest.approx((1 - c) / (2 * (1 + c)))
    assert exposure_gini(np.array([[0, 1]]), n_items=2, k=2) == pytest.approx(0.0)


def test_gini_of_nothing_recommended_is_nan_with_warning() -> None:
    with pytest.warns(DegenerateMetricWarning):
        assert math.isnan(exposure_gini(np.array([[-1, -1]]), n_items=3, k=2))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_gini_bounds(n_users: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items = 8
    topk = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    first = topk[0, 0]
    topk[rng.random(topk.shape) < 0.3] = -1  # some padding
    topk[0, 0] = first  # at least one recommendation
    for weighted in (False, True):
        g = exposure_gini(topk, n_items=n_items, k=k, position_weighted=weighted)
        assert 0.0 <= g <= (n_items - 1) / n_items + 1e-12
    assert 0.0 < item_coverage(topk, n_items, k) <= 1.0


def test_popularity_tiers_by_items_with_ties() -> None:
    pop = np.array([5, 50, 0, 10, 10, 1, 3, 7, 2, 20])
    # order (pop desc, ties by code): 1, 9, 3, 4, 7, 0, 6, 8, 5, 2
    # head = ceil(0.2 * 10) = 2 items {1, 9}; tail = ceil(0.5 * 10) = 5 items {0, 6, 8, 5, 2}
    tiers = popularity_tiers(pop, head_share=0.2, tail_share=0.5, by="items")
    assert tiers.tolist() == [TAIL, HEAD, TAIL, MID, MID, TAIL, TAIL, MID, TAIL, HEAD]
    # ties broken by item code: the lower code goes to the head
    assert popularity_tiers(np.ones(5), 0.2, 0.2, by="items").tolist() == [0, 1, 1, 1, 2]
    assert TIER_NAMES == ("head", "mid", "tail")


def test_popularity_tiers_by_interactions() -> None:
    pop = np.array([50, 30, 10, 5, 5, 0])  # total 100
    # head: smallest prefix covering >= 20 interactions -> {0} (50)
    # tail: smallest suffix covering >= 20 interactions -> {2, 3, 4, 5} (10 + 5 + 5 + 0 = 20)
    tiers = popularity_tiers(pop, head_share=0.2, tail_share=0.2)
    assert tiers.tolist() == [HEAD, MID, TAIL, TAIL, TAIL, TAIL]
    # head share 0.6 needs items 0 and 1 (50 < 60 <= 80)
    assert popularity_tiers(pop, 0.6, 0.2).tolist()[:2] == [HEAD, HEAD]
    # items never interacted with are tail even with tail_share = 0
    assert popularity_tiers(pop, 0.2, 0.0).tolist() == [HEAD, MID, MID, MID, MID, TAIL]


def test_popularity_tiers_bad_input() -> None:
    with pytest.raises(DataError, match="<= 1"):
        popularity_tiers(np.ones(4), 0.7, 0.5)
    with pytest.raises(DataError, match="non-negative"):
        popularity_tiers(np.array([1.0, -1.0]))
    with pytest.raises(DataError, match="sums to 0"):
        popularity_tiers(np.zeros(3))
    with pytest.raises(DataError, match="by must be"):
        popularity_tiers(np.ones(3), by="users")  # type: ignore[arg-type]


POP = np.array([10.0, 2.0, 0.0, 4.0])
TOPK = np.array([[0, 1, -1], [3, 2, 1], [-1, -1, -1]])


def test_average_popularity_hand_values() -> None:
    with pytest.warns(DegenerateMetricWarning, match="1 of 3 users"):
        arp = average_popularity(TOPK, POP, k=3)
    # user 0: (10 + 2) / 2 (padding excluded); user 1: (4 + 0 + 2) / 3; user 2: empty -> NaN
    assert arp[:2].tolist() == [6.0, 2.0]
    assert np.isnan(arp[2])
    with pytest.warns(DegenerateMetricWarning):
        assert average_popularity(TOPK, POP, k=1)[:2].tolist() == [10.0, 4.0]


def test_long_tail_share_hand_values() -> None:
    # head = ceil(0.25 * 4) = 1 most popular item = {0}
    with pytest.warns(DegenerateMetricWarning):
        aplt = long_tail_share(TOPK, POP, k=3, head_share=0.25)
    assert aplt[:2].tolist() == [0.5, 1.0]  # user 0: {0, 1} -> 1/2; user 1: {3, 2, 1} -> 3/3
    assert np.isnan(aplt[2])


def test_novelty_hand_values() -> None:
    pop = np.array([8.0, 0.0, 2.0])
    # -log2(8/16) = 1; item 1 has pop 0 -> treated as 1: -log2(1/16) = 4; -log2(2/16) = 3
    nov = novelty(np.array([[0, 1], [2, -1]]), pop, n_users=16, k=2)
    assert nov.tolist() == [2.5, 3.0]


def test_beyond_bad_input() -> None:
    with pytest.raises(DataError, match="larger than"):
        average_popularity(TOPK, POP, k=4)
    with pytest.raises(DataError, match="only 4 items"):
        novelty(np.array([[5]]), POP, n_users=3, k=1)
    with pytest.raises(DataError, match="more than once"):
        item_coverage(np.array([[1, 1]]), n_items=4, k=2)
    with pytest.raises(DataError, match="n_users"):
        novelty(TOPK, POP, n_users=0, k=1)


FEATS = sp.csr_matrix(
    np.array(
        [
            [1, 0, 0],  # item 0
            [0, 1, 0],  # item 1
            [1, 1, 0],  # item 2
            [0, 0, 0],  # item 3: no features
        ],
        dtype=float,
    )
)


def test_intra_list_diversity_hand_values() -> None:
    topk = np.array([[0, 1, 2], [0, 2, -1], [0, 3, -1], [0, -1, -1], [2, 0, -1]])
    with pytest.warns(DegenerateMetricWarning, match="1 of 5 users"):
        ild = intra_list_diversity(topk, FEATS, k=3)
    r = 1 / math.sqrt(2)
    # {0,1,2}: cos(0,1) = 0, cos(0,2) = cos(1,2) = 1/sqrt2 -> mean distance (3 - 2/sqrt2) / 3
    assert ild[0] == pytest.approx((1 + 2 * (1 - r)) / 3)
    assert ild[1] == pytest.approx(1 - r)  # {0, 2}
    assert ild[2] == pytest.approx(1.0)  # featureless item: cosine 0
    assert np.isnan(ild[3])  # a single item has no pairs
    assert ild[4] == pytest.approx(1 - r)  # order does not matter


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_intra_list_diversity_matches_pairwise_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n_feats, k = 9, 4, 4
    feats = (rng.random((n_items, n_feats)) < 0.4) * rng.integers(1, 3, (n_items, n_feats))
    topk = np.stack([rng.permutation(n_items)[:k] for _ in range(5)])
    ild = intra_list_diversity(topk, sp.csr_matrix(feats.astype(float)), k=k)
    norms = np.linalg.norm(feats, axis=1)
    for u, row in enumerate(topk):
        dists = []
        for i, j in itertools.combinations(row, 2):
            den = norms[i] * norms[j]
            dists.append(1 - (feats[i] @ feats[j] / den if den > 0 else 0.0))
        assert ild[u] == pytest.approx(np.mean(dists), abs=1e-12)
        assert 0.0 <= ild[u] <= 1.0
