"""Model-specific behaviour: hand-computed ItemKNN, Pop ranking, BPR sampling/loss/learning, Trainer."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.data.dataset import Dataset
from debiasrec.data.split import Split, random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.errors import ConfigError, DataError
from debiasrec.models import BPR, ItemKNN, LightGCN, MultVAE, Pop
from debiasrec.models.bpr import _bpr_train_defaults, _BPRLoss
from debiasrec.models.lightgcn import _lgcn_train_defaults
from debiasrec.models.multvae import _vae_train_defaults
from debiasrec.models.torch_base import bpr_negatives
from debiasrec.testing.contracts import assert_same_scores, on_cpu
from debiasrec.training.trainer import Strategy, TrainerConfig, validation_score


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models gain nothing from threads; on a busy shared machine they lose a lot."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dataset(pairs: list[tuple[int, int]], n_users: int, n_items: int) -> Dataset:
    u, i = (np.array(x, dtype=np.int32) for x in zip(*pairs, strict=True))
    return Dataset(
        u,
        i,
        user_vocab=pd.Index(np.arange(n_users)),
        item_vocab=pd.Index(np.arange(n_items)),
        name="tiny",
    )


@pytest.fixture(scope="module")
def small() -> Split:
    ds, _ = generate(SyntheticConfig(n_users=80, n_items=60, mean_interactions=12), rng=0)
    return random_split(ds, rng=0)


# --------------------------------------------------------------------------------------------
# ItemKNN
# --------------------------------------------------------------------------------------------

# users x items:  u0 = {0, 1}, u1 = {0, 2}, u2 = {0, 1, 2}
TINY_PAIRS = [(0, 0), (0, 1), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]


def test_itemknn_similarity_is_hand_computed_shrunk_cosine() -> None:
    ds = _dataset(TINY_PAIRS, 3, 3)
    model = ItemKNN(k=2, shrink=0.5).fit(ds)
    # item columns: i0 = (1,1,1), i1 = (1,0,1), i2 = (0,1,1); norms sqrt3, sqrt2, sqrt2
    s01 = 2 / (np.sqrt(3) * np.sqrt(2) + 0.5)  # co-occurrence 2 (users 0, 2)
    s02 = 2 / (np.sqrt(3) * np.sqrt(2) + 0.5)  # co-occurrence 2 (users 1, 2)
    s12 = 1 / (np.sqrt(2) * np.sqrt(2) + 0.5)  # co-occurrence 1 (user 2) -> 0.4
    expected = np.array([[0, s01, s02], [s01, 0, s12], [s02, s12, 0]])
    np.testing.assert_allclose(model.item_similarity().toarray(), expected, rtol=1e-6)
    x = ds.csr().toarray()
    np.testing.assert_allclose(model.score(np.arange(3)), x @ expected, rtol=1e-6)


def test_itemknn_k1_keeps_the_single_best_neighbour() -> None:
    w = ItemKNN(k=1, shrink=0.5).fit(_dataset(TINY_PAIRS, 3, 3)).item_similarity().toarray()
    assert (np.count_nonzero(w, axis=0) == 1).all()
    # targets 1 and 2: item 0 (2/2.95 = 0.68) beats the other one (0.4)
    assert w[0, 1] > 0 and w[2, 1] == 0
    assert w[0, 2] > 0 and w[1, 2] == 0


def test_itemknn_pruning_keeps_exactly_k_best(small: Split) -> None:
    train = small.train
    x = train.csr().toarray().astype(np.float64)
    norms = np.sqrt(x.sum(0))
    dense = (x.T @ x) / (np.outer(norms, norms) + 2.0)
    np.fill_diagonal(dense, 0.0)
    full = ItemKNN(k=train.n_items, shrink=2.0, block=7).fit(train).item_similarity().toarray()
    np.testing.assert_allclose(full, dense, rtol=1e-5, atol=1e-7)

    k = 5
    pruned = ItemKNN(k=k, shrink=2.0, block=7).fit(train).item_similarity().toarray()
    n_pos = (dense > 0).sum(axis=0)
    assert (n_pos >= k).all(), "test data should give every item k positive neighbours"
    assert (np.count_nonzero(pruned, axis=0) == k).all()
    # the kept values of each target column are its k largest similarities
    np.testing.assert_allclose(
        np.sort(pruned, axis=0)[-k:], np.sort(dense, axis=0)[-k:], rtol=1e-5, atol=1e-7
    )
    kept = pruned > 0
    np.testing.assert_allclose(pruned[kept], dense[kept], rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Pop
# --------------------------------------------------------------------------------------------


def test_pop_ranks_by_training_count(small: Split) -> None:
    train = small.train
    counts = train.item_counts()
    model = Pop().fit(train)
    np.testing.assert_array_equal(model.score(np.arange(3)), np.tile(counts, (3, 1)))
    recs = model.recommend(k=10)
    csr = train.csr()
    for u, row in zip(recs.users, recs.items, strict=True):
        listed = row[row >= 0]
        c = counts[listed]
        assert (np.diff(c) <= 0).all()
        others = np.setdiff1d(np.arange(train.n_items), np.concatenate([listed, csr[u].indices]))
        assert (counts[others] <= c[-1]).all()


# --------------------------------------------------------------------------------------------
# BPR: sampler, loss, learning
# --------------------------------------------------------------------------------------------


@st.composite
def _positives(draw: Any) -> tuple[int, np.ndarray, np.ndarray]:
    n_items = draw(st.integers(2, 12))
    n_users = draw(st.integers(1, 6))
    keys = []
    for u in range(n_users):
        # at least one item left as a possible negative
        items = draw(st.sets(st.integers(0, n_items - 1), max_size=n_items - 1))
        keys.extend(u * n_items + i for i in sorted(items))
    users = np.array(draw(st.lists(st.integers(0, n_users - 1), max_size=60)), dtype=np.int64)
    return n_items, np.array(keys, dtype=np.int64), users


@settings(max_examples=150, deadline=None)
@given(case=_positives(), seed=st.integers(0, 2**32 - 1))
def test_bpr_negatives_never_returns_a_positive(
    case: tuple[int, np.ndarray, np.ndarray], seed: int
) -> None:
    n_items, keys, users = case
    neg = bpr_negatives(users, n_items, keys, np.random.default_rng(seed))
    assert neg.shape == users.shape
    assert ((neg >= 0) & (neg < n_items)).all()
    assert not np.isin(users * n_items + neg, keys).any()


@settings(max_examples=100, deadline=None)
@given(
    keys=st.lists(st.integers(0, 500), max_size=80),
    queries=st.lists(st.integers(-5, 505), max_size=80),
)
def test_sorted_lookup_equals_searchsorted(keys: list[int], queries: list[int]) -> None:
    from debiasrec.models import torch_base

    k = np.unique(np.array(keys, dtype=np.int64))
    q = np.array(queries, dtype=np.int64)
    old = torch_base._SORT_QUERIES_FROM
    try:
        torch_base._SORT_QUERIES_FROM = 0  # always take the sorting path
        got = torch_base._sorted_lookup(k, q)
    finally:
        torch_base._SORT_QUERIES_FROM = old
    np.testing.assert_array_equal(got, np.searchsorted(k, q))


def test_bpr_negatives_for_a_user_with_almost_every_item() -> None:
    # 199 of 200 items are positives: uniform rejection alone fails ~60% of rows after 100 tries
    n_items = 200
    keys = np.array([i for i in range(n_items) if i != 123], dtype=np.int64)
    neg = bpr_negatives(np.zeros(500, np.int64), n_items, keys, np.random.default_rng(0))
    assert (neg == 123).all()
    with pytest.raises(DataError, match="every|all"):
        bpr_negatives(
            np.zeros(3, np.int64), 4, np.arange(4, dtype=np.int64), np.random.default_rng(0)
        )


def _reference_bpr(u, qi, qj, reg):
    x = (u * (qi - qj)).sum(1)
    n = x.shape[0]
    bpr = -torch.log(torch.sigmoid(x)).mean()
    l2 = reg * (u.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / 2 / n
    return bpr, l2


@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_bpr_loss_gradient_matches_autograd(reg: float) -> None:
    gen = torch.Generator().manual_seed(0)
    args = [
        torch.randn(7, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in "uij"
    ]
    assert torch.autograd.gradcheck(lambda u, i, j: _BPRLoss.apply(u, i, j, reg), args)

    # the hand-written backward equals autograd of the plain formula, for any upstream weights
    def grads(fn):
        leaves = [a.detach().clone().requires_grad_(True) for a in args]
        bpr, l2 = fn(*leaves, reg)
        (0.7 * bpr + 1.9 * l2).backward()
        return [x.grad for x in leaves], (bpr.detach(), l2.detach())

    got, got_vals = grads(_BPRLoss.apply)
    # a second backward through the same graph (retain_graph) gives the same gradients
    leaves = [a.detach().clone().requires_grad_(True) for a in args]
    bpr, l2 = _BPRLoss.apply(*leaves, reg)
    first = torch.autograd.grad(bpr + l2, leaves, retain_graph=True)
    second = torch.autograd.grad(bpr + l2, leaves)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    want, want_vals = grads(_reference_bpr)
    for g, w in zip([*got, *got_vals], [*want, *want_vals], strict=True):
        torch.testing.assert_close(g, w)


def test_bpr_learns_beyond_popularity() -> None:
    cfg = SyntheticConfig(
        n_users=300,
        n_items=60,
        mean_interactions=20,
        popularity_skew=0.3,
        genre_bias=20.0,
        n_genres=4,
        n_favourite_genres=2,
    )
    ds, _ = generate(cfg, rng=0)
    train, valid, test = random_split(ds, rng=0)
    params = {"dim": 16, "train": {"epochs": 30, "lr": 0.01, "batch_size": 512, "eval_every": 2}}
    bpr = BPR(params).fit(train, valid=valid, rng=0)
    pop = Pop().fit(train)
    gen = np.random.default_rng(0)

    def rand(users: np.ndarray) -> np.ndarray:
        return gen.random((len(users), train.n_items)).astype(np.float32)

    for part in (valid, test):  # test: not used for early stopping
        b = validation_score(bpr.score, train, part)
        p = validation_score(pop.score, train, part)
        r = validation_score(rand, train, part)
        assert b > p + 0.05, (b, p)
        assert b > 2 * r, (b, r)
    assert bpr.history_.best_value == pytest.approx(validation_score(bpr.score, train, valid))


# --------------------------------------------------------------------------------------------
# Trainer: config merging, early stopping, strategies
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "defaults"),
    [(BPR, _bpr_train_defaults), (MultVAE, _vae_train_defaults), (LightGCN, _lgcn_train_defaults)],
)
def test_partial_train_table_keeps_model_defaults(cls, defaults) -> None:
    model = cls(train={"epochs": 3})
    assert model.config.train == defaults().model_copy(update={"epochs": 3})
    assert cls({"train": {"lr": 0.5}}).config.train == defaults().model_copy(update={"lr": 0.5})
    assert model.config.train != TrainerConfig(epochs=3)  # not the generic defaults
    with pytest.raises(ConfigError, match="epoch"):
        cls(train={"epoch": 3})


# high learning rates so the validation metric peaks before the last evaluated epoch
_OVERFIT: dict[type, dict[str, Any]] = {
    BPR: {"dim": 16, "train": {"epochs": 20, "lr": 0.1, "batch_size": 128}},
    LightGCN: {"dim": 16, "train": {"epochs": 12, "lr": 0.2, "batch_size": 128}},
    MultVAE: {"hidden": 32, "latent": 16, "train": {"epochs": 12, "lr": 0.03, "batch_size": 16}},
}


def _overfit_params(cls: type, **train: Any) -> dict[str, Any]:
    params = copy.deepcopy(_OVERFIT[cls])
    params["train"].update({"eval_every": 1, "patience": 3, **train})
    return params


@pytest.mark.parametrize("cls", [BPR, LightGCN, MultVAE])
def test_early_stopping_restores_best_epoch(cls, small: Split) -> None:
    train, valid = small.train, small.valid
    model = cls(_overfit_params(cls)).fit(train, valid=valid, rng=0)
    hist = model.history_
    values = [row["valid_ndcg@10"] for row in hist.epochs]
    assert hist.stopped_early
    assert hist.best_epoch == int(np.argmax(values)) < len(values) - 1  # a later epoch was worse
    assert hist.best_value == max(values)
    # the kept weights are the best epoch's: its validation value is reproduced exactly
    assert validation_score(model.score, train, valid) == pytest.approx(hist.best_value, abs=1e-12)


class _Probe(Strategy):
    """A linear head on the user representation, pulled towards zero output."""

    name = "probe"

    def __init__(self) -> None:
        self.setup_calls = 0
        self.steps = 0
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def setup(self, model, train, rng) -> None:
        self.setup_calls += 1
        dim = model.user_repr(torch.zeros(1, dtype=torch.long)).shape[1]
        self.head = torch.nn.Linear(dim, 1)
        with torch.no_grad():  # fixed init, not drawn from the training rng
            self.head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(5))
            self.head.bias.fill_(1.0)

    def modules(self) -> list[torch.nn.Module]:
        return [self.head]

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.head.parameters())}]

    def loss_terms(self, model, batch, epoch) -> dict[str, torch.Tensor]:
        return {"probe": self.head(model.user_repr(batch["users"])).pow(2).mean()}

    def after_step(self, model, batch, epoch) -> None:
        self.steps += 1

    def validation_metrics(self, model, valid_users) -> dict[str, float]:
        self.snapshots.append(copy.deepcopy(self.head.state_dict()))
        return {"probe_bias": float(self.head.bias.detach()[0])}


@pytest.mark.parametrize("cls", [BPR, LightGCN, MultVAE])
def test_strategy_loss_is_added_and_its_modules_restored(cls, small: Split) -> None:
    train, valid = small.train, small.valid
    users = np.arange(train.n_users)
    probe = _Probe()
    model = cls(_overfit_params(cls), strategies=[probe]).fit(train, valid=valid, rng=0)
    hist = model.history_
    assert probe.setup_calls == 1 and probe.steps > 0
    assert all("loss_probe" in row and "probe_bias" in row for row in hist.epochs)
    last = len(hist.epochs) - 1
    assert hist.best_epoch < last
    best = probe.snapshots[hist.best_epoch]  # eval_every=1: one snapshot per epoch
    assert not torch.equal(best["bias"], probe.snapshots[last]["bias"])
    for name, value in probe.head.state_dict().items():
        torch.testing.assert_close(value, best[name], rtol=0, atol=0)

    # weight 0 turns the term off: the head never moves, and the model differs from the run
    # with the term (the probe's gradient reaches the model through user_repr)
    params = _overfit_params(cls, loss_weights={"probe": 0.0})
    off = _Probe()
    model_off = cls(params, strategies=[off]).fit(train, valid=valid, rng=0)
    assert torch.equal(off.head.bias.detach().cpu(), torch.ones(1))
    assert not np.array_equal(model_off.score(users), model.score(users))
    if cls is not MultVAE:  # (MultVAE's user_repr draws dropout noise, shifting the stream)
        plain = cls(_overfit_params(cls)).fit(train, valid=valid, rng=0)
        # bit for bit on the CPU; to float tolerance on a GPU (see debiasrec.testing.contracts)
        assert_same_scores(model_off.score(users), plain.score(users), on_cpu(plain))


@pytest.mark.parametrize("cls", [BPR, LightGCN, MultVAE])
def test_user_repr_is_differentiable_while_training(cls, small: Split) -> None:
    params = _overfit_params(cls, epochs=1)
    model = cls(params).fit(small.train, rng=0)
    model.module.train()
    model.user_repr(torch.arange(5)).pow(2).sum().backward()
    grads = [p.grad for p in model.module.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)
    model.module.eval()


class _Clash(_Probe):
    def loss_terms(self, model, batch, epoch) -> dict[str, torch.Tensor]:
        return {"bpr": super().loss_terms(model, batch, epoch)["probe"]}


def test_loss_term_names_are_checked(small: Split) -> None:
    with pytest.raises(ConfigError, match="bpr"):
        BPR(_overfit_params(BPR), strategies=[_Clash()]).fit(small.train, rng=0)
    params = _overfit_params(BPR, epochs=1, loss_weights={"prbe": 2.0})
    with pytest.warns(UserWarning, match="prbe"):
        BPR(params, strategies=[_Probe()]).fit(small.train, rng=0)
