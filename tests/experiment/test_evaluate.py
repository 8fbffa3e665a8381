"""The evaluation protocol: masking, hand-computed metrics, a planted gap, sampling, chunking."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from debiasrec.data.dataset import Dataset
from debiasrec.data.schema import Schema, SensitiveAttr
from debiasrec.data.split import Split, random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.experiment.evaluate import EvalConfig, Evaluation, eval_users, evaluate_model
from debiasrec.models import BPR, ItemKNN

FAST_BPR = {"dim": 16, "train": {"epochs": 6, "lr": 0.05, "batch_size": 256, "eval_every": 2}}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models gain nothing from threads; on a busy shared machine they lose a lot."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def small() -> Split:
    ds, _ = generate(SyntheticConfig(n_users=80, n_items=60, mean_interactions=12), rng=0)
    return random_split(ds, rng=0)


@pytest.fixture(scope="module")
def bpr(small: Split) -> BPR:
    return BPR(FAST_BPR).fit(small.train, valid=small.valid, rng=0)


def _listed_in(mat: sp.csr_matrix, users: np.ndarray, topk: np.ndarray) -> np.ndarray:
    """``mat[users[r], topk[r, c]] != 0`` per cell; ``-1`` padding is never "in"."""
    rows = np.broadcast_to(users[:, None], topk.shape)
    ok = topk >= 0
    out = np.zeros(topk.shape, dtype=bool)
    out[ok] = np.asarray(mat[rows[ok], topk[ok]]).ravel() != 0
    return out


def _quick(**kw) -> EvalConfig:
    return EvalConfig(**{"n_boot": 50, "beyond": [], **kw})


# --------------------------------------------------------------------------------------------
# (a) masking
# --------------------------------------------------------------------------------------------


def test_evaluator_never_ranks_training_or_validation_items(small: Split, bpr: BPR) -> None:
    train, valid, test = small
    # k = 55 of 60 items: most lists run out of rankable items and are padded with -1
    cfg = EvalConfig(ks=[10, 55], n_boot=20)
    ev = evaluate_model(bpr.score, train, valid, test, config=cfg)
    np.testing.assert_array_equal(ev.users, eval_users(test))
    assert ev.topk.shape == (len(ev.users), 55)
    assert not _listed_in(train.csr(), ev.users, ev.topk).any()
    assert not _listed_in(valid.csr(), ev.users, ev.topk).any()
    remaining = train.n_items - np.diff((train.csr() + valid.csr()).indptr)[ev.users]
    np.testing.assert_array_equal((ev.topk >= 0).sum(axis=1), np.minimum(55, remaining))
    assert np.isfinite(ev.per_user["ndcg@55"]).all()

    # evaluating on valid (no valid matrix to mask): training items are still never ranked
    ev_valid = evaluate_model(bpr.score, train, None, valid, config=cfg)
    assert not _listed_in(train.csr(), ev_valid.users, ev_valid.topk).any()
    assert _listed_in(valid.csr(), ev_valid.users, ev_valid.topk).any()


# --------------------------------------------------------------------------------------------
# (b) hand-computed metrics
# --------------------------------------------------------------------------------------------


def _hand_split() -> Split:
    #            user 0              user 1         user 2 (no test item)
    train = [(0, 0), (1, 3), (2, 0), (2, 1)]
    valid = [(0, 1), (2, 2)]
    test = [(0, 2), (0, 5), (1, 4)]
    pairs = train + valid + test
    part = np.array([0] * len(train) + [1] * len(valid) + [2] * len(test))
    ds = Dataset(
        np.array([u for u, _ in pairs]),
        np.array([i for _, i in pairs]),
        user_vocab=pd.Index([10, 11, 12]),
        item_vocab=pd.Index(np.arange(6)),
        user_table=pd.DataFrame({"gender": ["M", "F", "M"]}),
        schema=Schema(sensitive=(SensitiveAttr(name="gender", kind="binary"),)),
        name="hand",
    )
    return Split(*(ds.subset(part == p) for p in range(3)))


def test_hand_made_scores_give_hand_computed_metrics() -> None:
    train, valid, test = _hand_split()
    table = np.array(
        [
            [6, 5, 4, 3, 2, 1],  # user 0: item 0 first
            [1, 2, 3, 4, 5, 6],  # user 1: item 5 first
            [6, 5, 4, 3, 2, 1],
        ],
        dtype=np.float32,
    )
    calls: list[np.ndarray] = []

    def score(users: np.ndarray) -> np.ndarray:
        calls.append(users.copy())
        return table[users]

    cfg = EvalConfig(ks=[3, 5], metrics=["ndcg", "recall"], beyond=[], n_boot=0)
    ev = evaluate_model(score, train, valid, test, config=cfg)
    np.testing.assert_array_equal(ev.users, [0, 1])  # user 2 has no test item
    np.testing.assert_array_equal(np.concatenate(calls), [0, 1])
    # user 0: 0 (train) and 1 (valid) masked -> 2, 3, 4, 5; test {2, 5} at ranks 1 and 4
    # user 1: 3 (train) masked -> 5, 4, 2, 1, 0; test {4} at rank 2
    np.testing.assert_array_equal(ev.topk, [[2, 3, 4, 5, -1], [5, 4, 2, 1, 0]])
    l2 = np.log2
    idcg2 = 1 + 1 / l2(3)
    expected = {
        "ndcg@3": [1 / idcg2, 1 / l2(3)],
        "ndcg@5": [(1 + 1 / l2(5)) / idcg2, 1 / l2(3)],
        "recall@3": [0.5, 1.0],
        "recall@5": [1.0, 1.0],
    }
    for metric, values in expected.items():
        np.testing.assert_allclose(ev.per_user[metric], values, rtol=1e-12, err_msg=metric)
    res = ev.results.set_index(["metric", "group"])["value"]
    assert res[("ndcg@3", "gender=M")] == pytest.approx(expected["ndcg@3"][0])
    assert res[("ndcg@3", "gender=F")] == pytest.approx(expected["ndcg@3"][1])
    assert res[("recall@3", "all")] == pytest.approx(0.75)
    assert res[("gap_recall@3", "gender")] == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# (c) planted gaps
# --------------------------------------------------------------------------------------------


def _row(ev: Evaluation, metric: str, group: str) -> pd.Series:
    res = ev.results
    rows = res[(res.metric == metric) & (res.group == group)]
    assert len(rows) == 1, (metric, group)
    return rows.iloc[0]


def _oracle(
    test: Dataset, planted: np.ndarray, rng: np.random.Generator
) -> Callable[[np.ndarray], np.ndarray]:
    """Noise scores; test items +10 for planted users (ranked first), -10 for the others."""
    scores = rng.random((test.n_users, test.n_items)).astype(np.float32)
    t = test.csr().tocoo()
    scores[t.row, t.col] += np.where(planted[t.row], 10.0, -10.0).astype(np.float32)
    return lambda users: scores[users]


def test_planted_hit_gap_is_recovered_within_its_ci() -> None:
    ds, truth = generate(SyntheticConfig(n_users=1500, n_items=200, mean_interactions=15), rng=0)
    train, valid, test = random_split(ds, rng=0)
    gen = np.random.default_rng(1)
    p_hit = np.where(truth.minority, 0.3, 0.6)  # minority = F
    planted = gen.random(ds.n_users) < p_hit
    cfg = EvalConfig(ks=[10], metrics=["hit"], beyond=[], attrs=["gender"], n_boot=400)
    ev = evaluate_model(_oracle(test, planted, gen), train, valid, test, config=cfg)

    users = ev.users
    np.testing.assert_array_equal(ev.per_user["hit@10"], planted[users].astype(float))
    m, f = _row(ev, "hit@10", "gender=M"), _row(ev, "hit@10", "gender=F")
    assert m.value > f.value  # sign: the majority is served better
    realised = (
        planted[users][~truth.minority[users]].mean() - planted[users][truth.minority[users]].mean()
    )
    gap = _row(ev, "gap_hit@10", "gender")
    assert gap.value == pytest.approx(realised, abs=1e-12)
    assert gap.value == pytest.approx(m.value - f.value, abs=1e-12)
    assert gap.ci_low <= 0.3 <= gap.ci_high  # the planted (expected) gap lies in the CI
    assert abs(gap.value - 0.3) < 0.1
    assert gap.ci_high - gap.ci_low < 0.2


def test_trained_model_shows_planted_noise_gap() -> None:
    # the minority's held-out items are 60% uniform noise: less predictable for any model
    ds, _ = generate(SyntheticConfig(noise_share=(0.0, 0.6)), rng=0)
    train, valid, test = random_split(ds, rng=0)
    params = {"dim": 32, "train": {"epochs": 10, "lr": 0.01, "batch_size": 2048, "eval_every": 5}}
    model = BPR(params).fit(train, valid=valid, rng=0)
    cfg = EvalConfig(ks=[10], metrics=["ndcg"], beyond=[], attrs=["gender"], n_boot=300)
    ev = evaluate_model(model.score, train, valid, test, config=cfg)
    m, f = _row(ev, "ndcg@10", "gender=M"), _row(ev, "ndcg@10", "gender=F")
    gap = _row(ev, "gap_ndcg@10", "gender")
    assert m.value > f.value
    assert gap.value == pytest.approx(m.value - f.value)
    assert gap.ci_low > 0
    assert f.ci_high < m.ci_low  # the groups' own intervals are disjoint too


# --------------------------------------------------------------------------------------------
# (d) sampled evaluation, (e) chunking
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_neg", [1, 3])
def test_sampled_evaluation_ranks_only_held_out_and_unseen_items(
    small: Split, bpr: BPR, n_neg: int
) -> None:
    train, valid, test = small
    n_items = train.n_items
    cfg = _quick(ks=[n_items], metrics=["ndcg"], sampled_negatives=n_neg)  # list every candidate
    ev = evaluate_model(bpr.score, train, valid, test, config=cfg)
    users, topk = ev.users, ev.topk
    in_test = _listed_in(test.csr(), users, topk)
    seen = _listed_in(train.csr(), users, topk) | _listed_in(valid.csr(), users, topk)
    listed = topk >= 0
    assert not (listed & ~in_test & seen).any()
    # every held-out item is a candidate, plus exactly n_neg distinct negatives per held-out item
    n_test = np.diff(test.csr().indptr)[users]
    np.testing.assert_array_equal(in_test.sum(axis=1), n_test)
    unseen = n_items - np.diff((train.csr() + valid.csr() + test.csr()).indptr)[users]
    np.testing.assert_array_equal(
        (listed & ~in_test).sum(axis=1), np.minimum(n_neg * n_test, unseen)
    )
    # sampled metrics are (much) easier than full ranking
    full = evaluate_model(bpr.score, train, valid, test, config=_quick(ks=[10], metrics=["ndcg"]))
    sampled = evaluate_model(
        bpr.score, train, valid, test, config=_quick(ks=[10], metrics=["ndcg"], sampled_negatives=3)
    )
    assert sampled.per_user["ndcg@10"].mean() > full.per_user["ndcg@10"].mean()


@pytest.mark.parametrize("sampled", [None, 5])
def test_chunking_does_not_change_results(small: Split, sampled: int | None) -> None:
    train, valid, test = small
    model = ItemKNN(k=20).fit(train)  # many ties (scores 0): ties must break the same way too
    runs = [
        evaluate_model(
            model.score,
            train,
            valid,
            test,
            config=_quick(ks=[10, 20], chunk=chunk, sampled_negatives=sampled),
        )
        for chunk in (7, 2048)
    ]
    np.testing.assert_array_equal(runs[0].topk, runs[1].topk)
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)
    pd.testing.assert_frame_equal(runs[0].per_user, runs[1].per_user)
    pd.testing.assert_frame_equal(runs[0].results, runs[1].results)


def test_score_views_are_never_written_through(small: Split) -> None:
    train, valid, test = small
    pop = train.item_counts().astype(np.float32)
    before = pop.copy()
    cfg = _quick(ks=[10], metrics=["ndcg"])
    # a broadcast view: all rows share one memory row, so in-place masking would mask every
    # user's items for everyone (and overwrite the caller's array)
    ev_view = evaluate_model(
        lambda u: np.broadcast_to(pop, (len(u), len(pop))), train, valid, test, config=cfg
    )
    ev_copy = evaluate_model(lambda u: np.tile(pop, (len(u), 1)), train, valid, test, config=cfg)
    np.testing.assert_array_equal(pop, before)
    np.testing.assert_array_equal(ev_view.topk, ev_copy.topk)
    assert (ev_view.topk >= 0).all()
