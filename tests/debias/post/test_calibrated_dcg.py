"""CalibratedDCGReranker: hand cases, optimality against brute force, the cost on planted data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from _rerank_helpers import context, recs

from debiasrec.data import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.post import (
    CalibratedDCGReranker,
    CalibratedReranker,
    SelfCalibrator,
)
from debiasrec.debias.post.calibrated_dcg import (
    calibrated_dcg_gap,
    hit_rate_by_rank,
    pav_decreasing,
)
from debiasrec.errors import DataError, NotFittedError
from debiasrec.metrics.calibration import miscalibration
from debiasrec.models import ItemKNN
from debiasrec.models.base import Recs
from debiasrec.testing import RerankerContract


class TestCalibratedDCG(RerankerContract):
    component = CalibratedDCGReranker


class TestCalibratedDCGScoreGain(RerankerContract):
    component = CalibratedDCGReranker
    params = {"strength": 0.5, "gain": "score", "search": "greedy"}


class TestCalibratedScoreOrder(RerankerContract):
    component = CalibratedReranker
    params = {"strength": 0.5, "order": "score"}


def test_pav_and_hit_rate_by_hand() -> None:
    np.testing.assert_allclose(pav_decreasing([0.3, 0.1, 0.2, 0.05]), [0.3, 0.15, 0.15, 0.05])
    np.testing.assert_allclose(pav_decreasing([0.1, 0.3, 0.2]), [0.2, 0.2, 0.2])
    np.testing.assert_allclose(pav_decreasing([3.0, 2.0, 1.0]), [3.0, 2.0, 1.0])
    cand = recs([[5, 6, 7], [7, 5, 6], [5, 6, 7]], [[3, 2, 1]] * 3)
    truth = sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 1, 0, 1], [0] * 5 + [1, 1, 0], [0] * 8]))
    # user 2 has no held-out item and is left out; user 0 hits at ranks 1 and 3, user 1 at
    # ranks 2 and 3
    np.testing.assert_allclose(hit_rate_by_rank(cand, truth), [0.5, 0.5, 1.0])
    with pytest.raises(DataError, match="no validation user"):
        hit_rate_by_rank(cand, sp.csr_matrix((3, 8)))


# 6 candidates of genres A,A,A,B,B,C (scores 6..1); history p = (1/3, 1/3, 1/3)
GENRES = np.array(
    [[1, 0, 0]] * 3 + [[0, 1, 0]] * 2 + [[0, 0, 1]] + [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
)
HIST = np.array([[0] * 6 + [1, 1, 1]])
CANDS = recs([[0, 1, 2, 3, 4, 5]], [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])


def _items(r: Recs) -> list[int]:
    return [int(x) for x in r.items[0]]


def test_lambda0_is_topk_and_lists_are_in_score_order() -> None:
    ctx = context(HIST, GENRES)
    r = CalibratedDCGReranker(strength=0.0, k=3, gain="score").fit(ctx, None)
    assert _items(r.rerank(CANDS, ctx)) == [0, 1, 2]
    # lambda = 1 (with any weight left on gain: 0.999): one item of each genre, the best of each,
    # listed by score
    r = CalibratedDCGReranker(strength=0.999, k=3, gain="score").fit(ctx, None)
    assert _items(r.rerank(CANDS, ctx)) == [0, 3, 5]


def test_gain_rank_needs_validation_data() -> None:
    ctx = context(HIST, GENRES)
    with pytest.raises(DataError, match="validation"):
        CalibratedDCGReranker(strength=0.5).fit(ctx, None)
    with pytest.raises(NotFittedError):
        CalibratedDCGReranker(strength=0.5).rerank(CANDS, ctx)


def _random_problem(seed: int, n_users: int = 6, n_cand: int = 8, n_genres: int = 4):
    rng = np.random.default_rng(seed)
    n_items = n_cand + 6
    genres = np.zeros((n_items, n_genres))
    for i in range(n_items):  # one or two genres per item
        genres[i, rng.choice(n_genres, size=rng.integers(1, 3), replace=False)] = 1
    hist = np.zeros((n_users, n_items))
    hist[:, n_cand:] = rng.random((n_users, 6)) < 0.6
    hist[:, n_cand] = 1
    ctx = context(hist, genres)
    items = np.array([rng.permutation(n_cand) for _ in range(n_users)])
    scores = np.sort(rng.random((n_users, n_cand)), axis=1)[:, ::-1]
    return ctx, recs(items.tolist(), scores.tolist())


def _brute_force(r: CalibratedDCGReranker, ctx, cand: Recs, k: int) -> np.ndarray:
    best = np.full(len(cand.users), -np.inf)
    order = np.argsort(-cand.scores, axis=1, kind="stable")
    items = np.take_along_axis(cand.items, order, 1)
    for subset in itertools.combinations(range(cand.items.shape[1]), k):
        listed = Recs(cand.users, items[:, list(subset)], np.zeros((len(cand.users), k)))
        best = np.maximum(best, r.objective(listed, ctx, cand))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_milp_is_optimal_and_local_search_at_least_greedy(seed: int) -> None:
    ctx, cand = _random_problem(seed)
    k = 3
    vals = {}
    for lam in (0.3, 0.7):
        for search in ("greedy", "local", "milp"):
            r = CalibratedDCGReranker(strength=lam, k=k, gain="score", search=search)
            r.fit(ctx, cand)
            vals[search] = r.objective(r.rerank(cand, ctx), ctx, cand)
        best = _brute_force(r, ctx, cand, k)
        np.testing.assert_allclose(vals["milp"], best, rtol=1e-7, atol=1e-9)
        assert (vals["local"] >= vals["greedy"] - 1e-12).all()
        assert (vals["local"] <= best + 1e-9).all()
        assert (r.milp_gap_ <= 1e-6).all()  # the bound met the list's value: proven optimal


def test_gap_report_on_random_problems() -> None:
    ctx, cand = _random_problem(5, n_users=10)
    r = CalibratedDCGReranker(strength=0.5, k=3, gain="score").fit(ctx, cand)
    out = calibrated_dcg_gap(r, cand, ctx)
    assert out["milp_proven"] == 1.0
    assert out["objective_local"] <= out["objective_milp"] + 1e-9
    assert out["objective_greedy"] <= out["objective_local"] + 1e-12
    assert 0.0 <= out["greedy_at_optimum"] <= out["local_at_optimum"] <= 1.0


def test_score_order_keeps_steck_set_and_miscalibration() -> None:
    ctx, cand = _random_problem(3, n_users=10)
    greedy = CalibratedReranker(strength=0.6, k=4).rerank(cand, ctx)
    ordered = CalibratedReranker(strength=0.6, k=4, order="score").rerank(cand, ctx)
    for a, b, s in zip(greedy.items, ordered.items, ordered.scores, strict=True):
        assert set(a) == set(b) and (np.diff(s) <= 0).all()
    np.testing.assert_allclose(
        miscalibration(ordered.items, ctx.history[cand.users], ctx.item_features, 4),
        miscalibration(greedy.items, ctx.history[cand.users], ctx.item_features, 4),
    )


@pytest.fixture(scope="module")
def planted():
    ds, _ = generate(
        SyntheticConfig(n_users=600, n_items=300, mean_interactions=30, genre_bias=3.0), rng=1
    )
    split = random_split(ds, rng=0)
    scores = ItemKNN().fit(split.train).score(np.arange(ds.n_users))
    return split, scores


def test_half_the_miscalibration_costs_less_accuracy_than_steck(planted) -> None:
    split, scores = planted
    users = np.flatnonzero(split.test.user_counts() > 0)
    exclude = [split.train.csr(), split.valid.csr()]
    out = {}
    for name, params in (
        ("calibrated", {}),
        ("calibrated_dcg", {}),
    ):
        cal = SelfCalibrator(method=name, target="miscalibration <= 0.5x", params=params)
        cal.fit(scores, split)
        base = cal.reranker_.with_strength(0.0).rerank(
            scores, cal.context_, users=users, exclude=exclude
        )
        got = cal.rerank(scores, users=users, exclude=exclude)
        out[name] = (cal.evaluate(base, split.test), cal.evaluate(got, split.test))
    for name, (base, got) in out.items():
        assert got["target"] <= 0.6 * base["target"], name  # the cut holds on test
    loss = {n: 1 - got["ndcg"] / base["ndcg"] for n, (base, got) in out.items()}
    assert loss["calibrated_dcg"] < 0.5 * loss["calibrated"]
    assert loss["calibrated_dcg"] < 0.05
