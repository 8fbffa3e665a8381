"""Tests for debiasrec.metrics.ranking: hand-computed values, edge cases, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.errors import DataError
from debiasrec.metrics import (
    DegenerateMetricWarning,
    hit_matrix,
    ranking_metric_names,
    ranking_metrics,
    rating_metrics,
)


def _truth(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def _reference(topk: np.ndarray, rel: list[set[int]], k: int) -> dict[str, list[float]]:
    """Per-user loop straight from the textbook definitions (test oracle only)."""
    out: dict[str, list[float]] = {m: [] for m in ("recall", "ndcg", "mrr", "hit", "precision")}
    out["map"] = []
    for row, r in zip(topk, rel, strict=True):
        if not r:
            for v in out.values():
                v.append(math.nan)
            continue
        hits = [1 if (i >= 0 and i in r) else 0 for i in row[:k]]
        h = sum(hits)
        out["hit"].append(float(h > 0))
        out["precision"].append(h / k)
        out["recall"].append(h / len(r))
        dcg = sum(x / math.log2(j + 2) for j, x in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(r), k)))
        out["ndcg"].append(dcg / idcg)
        first = next((j for j, x in enumerate(hits) if x), None)
        out["mrr"].append(0.0 if first is None else 1 / (first + 1))
        ap = sum(sum(hits[: j + 1]) / (j + 1) for j, x in enumerate(hits) if x)
        out["map"].append(ap / min(len(r), k))
    return out


TOPK = np.array(
    [
        [3, 1, 4, 2],  # relevant {3, 4}: hits at ranks 1 and 3
        [2, 0, -1, -1],  # relevant {0, 1, 3}: hit at rank 2, padded list
        [0, 1, 2, 3],  # no relevant items -> NaN
    ]
)
TRUTH = _truth([[3, 4], [0, 1, 3], []], n_items=5)


def test_hand_computed_values_at_3() -> None:
    with pytest.warns(DegenerateMetricWarning, match="1 of 3 users"):
        res = ranking_metrics(TOPK, TRUTH, ks=(3,))
    # user 0: hits at ranks 1, 3; |rel| = 2
    assert res["hit@3"][0] == 1.0
    assert res["precision@3"][0] == pytest.approx(2 / 3)
    assert res["recall@3"][0] == pytest.approx(2 / 2)
    # DCG = 1/log2(2) + 1/log2(4) = 1 + 1/2; IDCG over min(2, 3) = 2 positions = 1 + 1/log2(3)
    assert res["ndcg@3"][0] == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))
    assert res["mrr@3"][0] == pytest.approx(1.0)
    # AP = (P@1 * 1 + P@3 * 1) / min(2, 3) = (1 + 2/3) / 2 = 5/6
    assert res["map@3"][0] == pytest.approx(5 / 6)
    # user 1: single hit at rank 2; |rel| = 3; padding at ranks 3, 4 counts as a miss
    assert res["hit@3"][1] == 1.0
    assert res["precision@3"][1] == pytest.approx(1 / 3)
    assert res["recall@3"][1] == pytest.approx(1 / 3)
    # DCG = 1/log2(3); IDCG = 1 + 1/log2(3) + 1/log2(4)
    assert res["ndcg@3"][1] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / 2))
    assert res["mrr@3"][1] == pytest.approx(1 / 2)
    # AP = P@2 * 1 / min(3, 3) = (1/2) / 3
    assert res["map@3"][1] == pytest.approx(1 / 6)
    # user 2: no relevant items -> NaN everywhere
    for v in res.values():
        assert np.isnan(v[2])
        assert v.dtype == np.float64


def test_hand_computed_values_at_1() -> None:
    with pytest.warns(DegenerateMetricWarning):
        res = ranking_metrics(TOPK, TRUTH, ks=(1,))
    # user 0: rank 1 is relevant; recall = 1/2, ndcg = 1/1, map = 1 / min(2, 1)
    assert [res[f"{m}@1"][0] for m in ("hit", "precision", "recall", "ndcg", "mrr", "map")] == [
        1.0,
        1.0,
        0.5,
        1.0,
        1.0,
        1.0,
    ]
    # user 1: rank 1 is a miss -> every metric is 0 (not NaN)
    assert all(res[f"{m}@1"][1] == 0.0 for m in ("hit", "precision", "recall", "ndcg", "mrr"))
    assert res["map@1"][1] == 0.0


def test_keys_follow_names_order() -> None:
    with pytest.warns(DegenerateMetricWarning):
        res = ranking_metrics(TOPK, TRUTH, ks=(1, 3), metrics=("ndcg", "recall"))
    assert list(res) == ["ndcg@1", "ndcg@3", "recall@1", "recall@3"]
    assert list(res) == ranking_metric_names((1, 3), ("ndcg", "recall"))
    assert ranking_metric_names(10, ["MAP"]) == ["map@10"]


def test_padding_is_never_relevant() -> None:
    # user 0's relevant item is the LAST catalogue item (4); user 1's list is all padding.
    # A naive row*n_items + item key would map user 1's -1 onto user 0's item 4.
    topk = np.array([[4, 0], [-1, -1]])
    truth = _truth([[4], [0]], n_items=5)
    res = ranking_metrics(topk, truth, ks=(2,), metrics=("hit", "recall"))
    assert res["hit@2"].tolist() == [1.0, 0.0]
    assert res["recall@2"].tolist() == [1.0, 0.0]
    assert hit_matrix(topk, truth).tolist() == [[True, False], [False, False]]


def test_no_warning_when_every_user_has_relevant_items() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ranking_metrics(TOPK[:2], TRUTH[:2], ks=(2,))


def test_explicit_zeros_in_truth_are_not_relevant() -> None:
    truth = sp.csr_matrix((np.array([1.0, 0.0]), (np.array([0, 0]), np.array([0, 1]))), (1, 3))
    res = ranking_metrics(np.array([[1, 0]]), truth, ks=(1, 2), metrics=("hit", "recall"))
    assert res["hit@1"][0] == 0.0  # item 1 is stored as an explicit 0
    assert res["recall@2"][0] == 1.0  # |rel| = 1, not 2


@pytest.mark.parametrize(
    ("topk", "truth", "ks", "metrics", "match"),
    [
        (TOPK, TRUTH, (5,), ("ndcg",), "larger than"),
        (TOPK, TRUTH, (0,), ("ndcg",), ">= 1"),
        (TOPK, TRUTH, (2,), ("auc",), "unknown ranking metric"),
        (TOPK[:2], TRUTH, (2,), ("ndcg",), "rows"),
        (np.array([[1, 1, 2, 3]]), TRUTH[:1], (2,), ("ndcg",), "more than once"),
        (np.array([[1.0, 2.0]]), TRUTH[:1], (2,), ("ndcg",), "integer"),
        (np.array([[7, 2]]), TRUTH[:1], (2,), ("ndcg",), "only 5 items"),
        (np.array([[-2, 2]]), TRUTH[:1], (2,), ("ndcg",), ">= 0"),
        (np.array([1, 2]), TRUTH[:1], (2,), ("ndcg",), "2-D"),
    ],
)
def test_bad_input_raises(topk, truth, ks, metrics, match) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match=match):
        ranking_metrics(topk, truth, ks=ks, metrics=metrics)


@st.composite
def _ranking_case(draw: st.DrawFn) -> tuple[np.ndarray, list[set[int]], int]:
    n_items = draw(st.integers(2, 12))
    n_users = draw(st.integers(1, 6))
    k_max = draw(st.integers(1, n_items))
    rows, rels = [], []
    for _ in range(n_users):
        items = draw(st.permutations(list(range(n_items))))[:k_max]
        n_pad = draw(st.integers(0, k_max))
        rows.append(list(items[: k_max - n_pad]) + [-1] * n_pad)
        rels.append(set(draw(st.lists(st.integers(0, n_items - 1), max_size=n_items))))
    if not any(rels):
        rels[0] = {0}
    return np.array(rows, dtype=np.int64), rels, n_items


@settings(max_examples=60, deadline=None)
@given(_ranking_case())
def test_matches_reference_and_bounds(case: tuple[np.ndarray, list[set[int]], int]) -> None:
    topk, rels, n_items = case
    truth = _truth([sorted(r) for r in rels], n_items)
    ks = list(range(1, topk.shape[1] + 1))
    with pytest.warns(DegenerateMetricWarning) if not all(rels) else _nullcontext():
        res = ranking_metrics(topk, truth, ks=ks)
    for k in ks:
        ref = _reference(topk, rels, k)
        for m, expected in ref.items():
            got = res[f"{m}@{k}"]
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
            finite = got[~np.isnan(got)]
            assert np.all((finite >= 0) & (finite <= 1 + 1e-12))
    # recall and hit are monotone non-decreasing in k
    for m in ("recall", "hit"):
        stacked = np.stack([res[f"{m}@{k}"] for k in ks])
        ok = ~np.isnan(stacked[0])
        assert np.all(np.diff(stacked[:, ok], axis=0) >= -1e-12)


class _nullcontext:  # noqa: N801 - tiny helper, mirrors contextlib.nullcontext
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 15), st.data())
def test_perfect_list_has_ndcg_one(n_items: int, data: st.DataObject) -> None:
    # the top of the list is exactly the relevant set (in any order) -> ndcg@k = 1 for k >= |rel|
    perm = data.draw(st.permutations(list(range(n_items))))
    n_rel = data.draw(st.integers(1, n_items))
    truth = _truth([sorted(perm[:n_rel])], n_items)
    topk = np.array([perm])
    ks = list(range(n_rel, n_items + 1))
    res = ranking_metrics(topk, truth, ks=ks, metrics=("ndcg", "map", "recall"))
    for k in ks:
        assert res[f"ndcg@{k}"][0] == pytest.approx(1.0)
        assert res[f"map@{k}"][0] == pytest.approx(1.0)
        assert res[f"recall@{k}"][0] == pytest.approx(1.0)


def test_many_users_chunked_matches_small(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n_users, n_items, k = 3000, 400, 20
    topk = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :k]
    truth = sp.random(n_users, n_items, density=0.03, format="csr", random_state=4)
    truth.data[:] = 1.0
    import debiasrec.metrics.ranking as ranking

    full = ranking_metrics(topk, truth, ks=(5, 20))
    monkeypatch.setattr(ranking, "MAX_CHUNK_ELEMS", 7 * k)  # force many small chunks
    chunked = ranking_metrics(topk, truth, ks=(5, 20))
    for name in full:
        np.testing.assert_array_equal(full[name], chunked[name])
    rels = [set(truth.indices[truth.indptr[u] : truth.indptr[u + 1]]) for u in range(200)]
    ref = _reference(topk[:200], rels, 20)
    np.testing.assert_allclose(full["ndcg@20"][:200], ref["ndcg"], rtol=1e-12)


def test_rating_metrics_hand_values() -> None:
    # user 0: errors -1, +1 -> rmse = sqrt((1 + 1)/2) = 1, mae = 1
    # user 1: errors +2 -> rmse = mae = 2; user 2: no ratings -> NaN
    users = np.array([0, 0, 1])
    pred = np.array([3.0, 5.0, 4.0])
    true = np.array([4.0, 4.0, 2.0])
    with pytest.warns(DegenerateMetricWarning, match="1 of 3 users"):
        res = rating_metrics(pred, true, users, n_users=3)
    assert res["rmse"][:2].tolist() == [1.0, 2.0]
    assert res["mae"][:2].tolist() == [1.0, 2.0]
    assert np.isnan(res["rmse"][2]) and np.isnan(res["mae"][2])
    # rmse >= mae, strictly when errors differ: errors 0 and 2 -> rmse sqrt(2), mae 1
    res2 = rating_metrics(np.array([1.0, 3.0]), np.array([1.0, 1.0]), np.array([0, 0]), 1)
    assert res2["rmse"][0] == pytest.approx(math.sqrt(2))
    assert res2["mae"][0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pred", "true", "users", "match"),
    [
        ([1.0], [1.0, 2.0], [0], "length"),
        ([1.0], [1.0], [5], "user codes"),
        ([np.nan], [1.0], [0], "NaN"),
        ([1.0], [1.0], [0.5], "integer"),
    ],
)
def test_rating_metrics_bad_input(pred, true, users, match) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match=match):
        rating_metrics(np.array(pred), np.array(true), np.array(users), n_users=2)
