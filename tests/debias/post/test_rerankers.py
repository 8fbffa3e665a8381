"""Hand-checked small cases for every re-ranker, and properties shared by all of them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _rerank_helpers import context, recs
from scipy import stats

from debiasrec.debias.post import (
    RERANKERS,
    CalibratedReranker,
    ExposureReranker,
    GroupFairReranker,
    MMRReranker,
    PopularityCalibrationReranker,
    candidates,
)
from debiasrec.debias.post.exposure import minimum_counts
from debiasrec.errors import ConfigError, NotFittedError
from debiasrec.metrics.calibration import miscalibration

# 4 candidates: items 0, 1 are genre A; items 2, 3 genre B; scores 4 > 3 > 2 > 1.
GENRES_AB = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [0, 1]])
HIST_AB = np.array([[0, 0, 0, 0, 1, 1]])  # history: one A, one B -> p = (0.5, 0.5)
CANDS = recs([[0, 1, 2, 3]], [[4.0, 3.0, 2.0, 1.0]])


def _items(r) -> list[int]:
    return [int(x) for x in r.items[0]]


def test_calibrated_lambda0_is_topk_and_lambda1_is_kl_optimal() -> None:
    ctx = context(HIST_AB, GENRES_AB)
    assert _items(CalibratedReranker(strength=0.0, k=2).rerank(CANDS, ctx)) == [0, 1]
    got = _items(CalibratedReranker(strength=1.0, k=2).rerank(CANDS, ctx))
    # brute force: the KL-optimal pairs, best score among them
    pairs = list(itertools.permutations(range(4), 2))
    kl = [miscalibration(np.array([p]), ctx.history, ctx.item_features, 2)[0] for p in pairs]
    best = min(kl)
    optimal = [set(p) for p, v in zip(pairs, kl, strict=True) if v <= best + 1e-12]
    assert set(got) in optimal and got == [0, 2]


def test_calibrated_switch_point_matches_hand_computation() -> None:
    # rel = (1, 2/3, 1/3, 0). After item 0, adding item 1 gives KL(AA) = 0.5 ln(.5/.995) +
    # 0.5 ln(.5/.005) ~ 1.958, adding item 2 gives KL = 0. Item 2 wins iff
    # (1 - l) / 3 < l * 1.958, i.e. l > 0.1455.
    ctx = context(HIST_AB, GENRES_AB)
    assert _items(CalibratedReranker(strength=0.14, k=2).rerank(CANDS, ctx)) == [0, 1]
    assert _items(CalibratedReranker(strength=0.15, k=2).rerank(CANDS, ctx)) == [0, 2]


def test_popularity_calibration_matches_tier_profile() -> None:
    # the user history is tail-only
    pop = np.array([100, 100, 1, 1, 30, 30])  # tiers: 0 head, 1 mid, 2-5 tail
    hist = np.array([[0, 0, 1, 1, 0, 0]])
    ctx = context(hist, GENRES_AB, item_pop=pop)
    assert _items(PopularityCalibrationReranker(strength=0.0, k=2).rerank(CANDS, ctx)) == [0, 1]
    assert _items(PopularityCalibrationReranker(strength=1.0, k=2).rerank(CANDS, ctx)) == [2, 3]


def test_mmr_hand_case() -> None:
    genres = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    ctx = context(np.zeros((1, 4)), genres)
    assert _items(MMRReranker(strength=0.0, k=3).rerank(CANDS, ctx)) == [0, 1, 2]
    # l = 1: first item by tie on score, then items with similarity 0 to the list
    assert _items(MMRReranker(strength=1.0, k=3).rerank(CANDS, ctx)) == [0, 2, 3]
    # l = 0.5: item 1 costs 0.5 * 1 in redundancy, item 2 is 1/3 less relevant -> item 2
    assert _items(MMRReranker(strength=0.5, k=2).rerank(CANDS, ctx)) == [0, 2]


def test_minimum_counts_are_binomial_quantiles() -> None:
    m = minimum_counts(6, np.array([0.5]), "fair", 0.1)[:, 0]
    expected = [int(stats.binom.ppf(0.1, t, 0.5)) for t in range(1, 7)]
    assert m.tolist() == expected == [0, 0, 0, 1, 1, 1]
    assert minimum_counts(4, np.array([0.5]), "det")[:, 0].tolist() == [0, 1, 1, 2]


def test_exposure_fair_and_det_hand_case() -> None:
    # items 0-3 popular (head), 4-5 long tail; candidates in score order 0..5
    pop = np.array([50, 40, 30, 20, 1, 1])
    ctx = context(np.zeros((1, 6)), np.ones((6, 1)), item_pop=pop)
    cands = recs([[0, 1, 2, 3, 4, 5]], [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    kw = {"k": 4, "head_share": 0.6}  # short head = ceil(0.6 * 6) = 4 items
    assert _items(ExposureReranker(strength=0.0, **kw).rerank(cands, ctx)) == [0, 1, 2, 3]
    # FA*IR p = 0.5, alpha = 0.1: floors (0, 0, 0, 1) -> a tail item at position 4
    assert _items(ExposureReranker(strength=0.5, **kw).rerank(cands, ctx)) == [0, 1, 2, 4]
    # DetGreedy floors floor(0.5 t) = (0, 1, 1, 2)
    det = ExposureReranker(strength=0.5, method="det", **kw).rerank(cands, ctx)
    assert _items(det) == [0, 4, 1, 5]


def test_group_fair_caps_expected_utility_of_advantaged_group_only() -> None:
    # group "a" (users 0, 1): validation item at base rank 1 -> NDCG@3 = 1.
    # group "b" (users 2, 3): validation items at ranks 2 and 5 -> NDCG@3 = (1/log2(3) + 0) / 2.
    n_items = 60
    valid = np.zeros((4, n_items))
    valid[0, 0] = valid[1, 0] = valid[2, 1] = valid[3, 4] = 1
    ctx = context(
        np.zeros((4, n_items)),
        np.ones((n_items, 1)),
        groups={"g": ["a", "a", "b", "b"]},
        valid=valid,
    )
    vc = recs([list(range(50))] * 4, [list(np.linspace(50, 1, 50))] * 4)
    rr = GroupFairReranker(attr="g", k=3, min_group_users=1).fit(ctx, vc)
    mu = rr.group_utility_
    mu_b = 0.5 / np.log2(3)
    assert mu["a"] == pytest.approx(1.0) and mu["b"] == pytest.approx(mu_b)
    assert rr.with_strength(0.0).utility_ratio().tolist() == [1.0, 1.0]
    half = rr.with_strength(0.5)
    assert half.utility_ratio()["a"] == pytest.approx(1.0 - 0.5 * (1.0 - mu_b))
    full = rr.with_strength(1.0)
    rho = full.utility_ratio()["a"]
    assert rho == pytest.approx(mu_b) and full.utility_ratio()["b"] == 1.0
    h = full._hit_curve(50)
    assert np.all(np.diff(h) < 0)  # rates 0.5, 0.25, 0, 0, 0.25 -> decreasing power law
    out = full.rerank(vc, ctx)
    assert out.items[2].tolist() == out.items[3].tolist() == [0, 1, 2]  # group b untouched
    # group a: every prefix keeps expected DCG within rho x the base prefix; list changed
    disc = 1 / np.log2(np.arange(2, 5))
    spent = np.cumsum(h[out.items[0]] * disc)
    base = np.cumsum(h[:3] * disc)
    assert np.all(spent <= rho * base * (1 + 1e-9))
    assert out.items[0].tolist() != [0, 1, 2]
    # best-scored items that fit: position 1 takes the first rank whose gain fits
    first = int(np.argmax(h * disc[0] <= rho * base[0] * (1 + 1e-9)))
    assert out.items[0, 0] == first


def test_group_fair_requires_fit() -> None:
    ctx = context(np.zeros((1, 4)), np.ones((4, 1)), groups={"g": ["a"]})
    with pytest.raises(NotFittedError):
        GroupFairReranker(attr="g", strength=0.5).rerank(CANDS, ctx)


@pytest.mark.parametrize("name", sorted(RERANKERS))
def test_common_properties(name: str) -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 12, 30
    hist = (rng.random((n_users, n_items)) < 0.2).astype(float)
    valid = (rng.random((n_users, n_items)) < 0.1).astype(float) * (1 - hist)
    genres = (rng.random((n_items, 4)) < 0.4).astype(float)
    ctx = context(hist, genres, groups={"gender": ["F", "M"] * 6}, valid=valid)
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    cls = RERANKERS[name]
    extra = {"attr": "gender", "min_group_users": 1} if name == "group_fair" else {}
    vcand = candidates(scores, np.arange(n_users), n=15, exclude=[ctx.history])
    base = cls(strength=0.0, k=5, n_candidates=15, **extra).fit(ctx, vcand)
    # strength 0 = top-k by score, from scores or from (shuffled) candidate Recs
    top = candidates(scores, np.arange(n_users), n=5, exclude=[ctx.history])
    out0 = base.rerank(scores, ctx, users=np.arange(n_users), exclude=[ctx.history])
    np.testing.assert_array_equal(out0.items, top.items)
    perm = rng.permutation(15)
    shuffled = type(vcand)(vcand.users, vcand.items[:, perm], vcand.scores[:, perm])
    np.testing.assert_array_equal(base.rerank(shuffled, ctx).items, top.items)
    for lam in (0.3, 1.0):
        out = base.with_strength(lam).rerank(vcand, ctx)
        assert out.items.shape == (n_users, 5)
        for r in range(n_users):
            row = out.items[r]
            assert len(set(row.tolist())) == 5 and set(row.tolist()) <= set(vcand.items[r].tolist())
            assert hist[r, row].sum() == 0  # training items were masked
    # fewer candidates than k: padded with -1
    short = recs([[1, 2]], [[1.0, 0.5]])
    padded = base.with_strength(0.5).rerank(short, ctx)
    assert (
        padded.items[0].tolist()[:2] in ([1, 2], [2, 1])
        and padded.items[0, 2:].tolist() == [-1] * 3
    )


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="strenght"):
        CalibratedReranker(strenght=0.5)
    with pytest.raises(ConfigError):
        ExposureReranker(strength=1.5)
