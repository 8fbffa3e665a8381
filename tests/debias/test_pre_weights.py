"""Per-interaction weights: the Dataset carries them and every model uses them (or says how)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from debiasrec.data import Dataset, random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.errors import DataError
from debiasrec.models import BPR, ItemKNN, LightGCN, MultVAE, Pop
from debiasrec.training.trainer import validation_score

TRAIN = {"epochs": 8, "eval_every": 100, "batch_size": 512, "lr": 1e-2}


@pytest.fixture(scope="module")
def data():
    ds, truth = generate(
        SyntheticConfig(n_users=240, n_items=120, mean_interactions=20, genre_bias=6.0), rng=3
    )
    return ds, truth, random_split(ds, rng=0)


def _tiny() -> Dataset:
    return Dataset(
        np.array([0, 0, 1, 1, 1]),
        np.array([0, 1, 1, 2, 1]),
        user_vocab=pd.Index(["a", "b"]),
        item_vocab=pd.Index([10, 11, 12]),
        weights=np.array([1.0, 2.0, 3.0, 0.0, 5.0]),
    )


def test_weights_are_read_only_carried_and_fingerprinted():
    ds = _tiny()
    assert ds.weights is not None and not ds.weights.flags.writeable
    sub = ds.subset(np.array([1, 2]))
    np.testing.assert_array_equal(sub.weights, [2.0, 3.0])
    assert ds.with_interactions(ds.users, ds.items).weights is None
    w = ds.with_interactions(ds.users, ds.items, weights=np.ones(5)).weights
    np.testing.assert_array_equal(w, np.ones(5))
    plain = ds.with_weights(None)
    assert plain.fingerprint() != ds.fingerprint()
    assert ds.with_weights(np.ones(5)).fingerprint() != plain.fingerprint()
    assert ds.with_weights(ds.weights).fingerprint() == ds.fingerprint()
    assert "weight" in ds.interactions_frame().columns


def test_pair_weights_average_duplicate_rows_in_csr_order():
    ds = _tiny()
    # pairs in CSR order: (a,10)=1, (a,11)=2, (b,11)=mean(3,5)=4, (b,12)=0
    np.testing.assert_allclose(ds.pair_weights(), [1.0, 2.0, 4.0, 0.0])
    np.testing.assert_allclose(ds.with_weights(None).pair_weights(), np.ones(4))


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_invalid_weights_raise_data_error(bad):
    with pytest.raises(DataError, match="weights"):
        _tiny().with_weights(np.array([1.0, bad, 1.0, 1.0, 1.0]))
    with pytest.raises(DataError, match="weights has length"):
        _tiny().with_weights(np.ones(3))


def test_append_users_keeps_codes_and_tables(data):
    ds, _, sp = data
    new = pd.DataFrame({"user_id": ["gen:0", "gen:1"], "gender": ["F", "F"], "age": [30, 40]})
    out = sp.train.append_users(
        new,
        np.array([0, 0, 1]),
        np.array([1, 2, 3]),
        ratings=np.full(3, np.nan),
        timestamps=np.zeros(3, np.int64),
    )
    assert out.n_users == ds.n_users + 2
    assert out.user_vocab[: ds.n_users].equals(ds.user_vocab)
    np.testing.assert_array_equal(out.users[: sp.train.n_interactions], sp.train.users)
    assert list(out.user_groups("gender")[-2:]) == ["F", "F"]
    with pytest.raises(DataError, match="already in the user vocabulary"):
        out.append_users(new, np.array([0]), np.array([1]), ratings=[1.0], timestamps=[0])
    with pytest.raises(DataError, match="pass ratings"):
        sp.train.append_users(new.assign(user_id=["x", "y"]), np.array([0]), np.array([1]))


def _group_weights(train: Dataset, truth, w_f: float) -> np.ndarray:
    minority = truth.minority[train.users]
    return np.where(minority, w_f, 1.0)


def test_bpr_weight_zero_group_is_ignored(data):
    """Users whose every pair weighs 0 get no gradient: their embeddings stay at the init."""
    ds, truth, sp = data
    train = sp.train.with_weights(_group_weights(sp.train, truth, 0.0))
    untrained = BPR(dim=8, train={**TRAIN, "epochs": 1, "lr": 1e-12}).fit(train, rng=0)
    model = BPR(dim=8, train=TRAIN).fit(train, rng=0)
    f_users = np.flatnonzero(truth.minority)
    m_users = np.flatnonzero(~truth.minority)
    z0, z = untrained.user_embeddings(), model.user_embeddings()
    np.testing.assert_allclose(z[f_users], z0[f_users], atol=1e-6)
    assert np.abs(z[m_users] - z0[m_users]).max() > 1e-2


def test_bpr_weights_change_training_measurably(data):
    ds, truth, sp = data
    base = BPR(dim=16, train=TRAIN).fit(sp.train, rng=0)
    ones = BPR(dim=16, train=TRAIN).fit(sp.train.with_weights(np.ones(len(sp.train))), rng=0)
    np.testing.assert_allclose(ones.user_embeddings(), base.user_embeddings(), atol=1e-4)
    longer = {**TRAIN, "epochs": 25}
    base = BPR(dim=16, train=longer).fit(sp.train, rng=0)
    zero_f = BPR(dim=16, train=longer).fit(
        sp.train.with_weights(_group_weights(sp.train, truth, 0.0)), rng=0
    )
    f_test = sp.test.subset(truth.minority[sp.test.users])
    m_test = sp.test.subset(~truth.minority[sp.test.users])
    nd_base = validation_score(base.score_tensor, sp.train, f_test)
    nd_zero = validation_score(zero_f.score_tensor, sp.train, f_test)
    assert nd_zero < 0.8 * nd_base  # the ignored group loses its personalisation
    m_base = validation_score(base.score_tensor, sp.train, m_test)
    m_zero = validation_score(zero_f.score_tensor, sp.train, m_test)
    assert m_zero > 0.8 * m_base  # the other group keeps it


def test_weighted_bpr_gradient_matches_autograd():
    from debiasrec.models.bpr import _WeightedBPRLoss

    g = torch.Generator().manual_seed(0)
    u, qi, qj = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.rand(6, generator=g, dtype=torch.float64)
    for t in (u, qi, qj):
        t.requires_grad_(True)

    def f(u, qi, qj):
        bpr, l2 = _WeightedBPRLoss.apply(u, qi, qj, w, 0.3)
        return bpr + 2.0 * l2

    assert torch.autograd.gradcheck(f, (u, qi, qj))
    x = (u * (qi - qj)).sum(1)
    ref = (w * torch.nn.functional.softplus(-x)).mean() + 2.0 * 0.15 * (
        w * (u.pow(2).sum(1) + qi.pow(2).sum(1) + qj.pow(2).sum(1))
    ).mean()
    torch.testing.assert_close(f(u, qi, qj), ref)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LightGCN(dim=8, train=TRAIN),
        lambda: MultVAE(hidden=32, latent=8, train={**TRAIN, "batch_size": 64}),
    ],
)
def test_other_torch_models_use_weights(data, make):
    ds, truth, sp = data
    a = make().fit(sp.train, rng=0)
    b = make().fit(sp.train.with_weights(_group_weights(sp.train, truth, 0.0)), rng=0)
    users = np.arange(ds.n_users)
    assert np.abs(a.score(users) - b.score(users)).max() > 1e-3


def test_multvae_weight_zero_user_contributes_no_loss(data):
    ds, truth, sp = data
    model = MultVAE(hidden=16, latent=4, train={**TRAIN, "epochs": 1})
    train = sp.train.with_weights(_group_weights(sp.train, truth, 0.0))
    model.fit(train, rng=0)
    f_users = torch.from_numpy(np.flatnonzero(truth.minority)[:5])
    model.module.train()
    terms = model.loss_terms({"users": f_users})
    assert float(terms["nll"].detach()) == 0.0 and float(terms["kl"].detach()) == 0.0


def test_pop_and_itemknn_use_weighted_counts(data):
    ds, truth, sp = data
    w = np.where(sp.train.items == 0, 10.0, 1.0)
    pop = Pop().fit(sp.train.with_weights(w))
    expected = np.bincount(sp.train.items, weights=w, minlength=ds.n_items)
    np.testing.assert_allclose(pop.item_pop_, expected)
    knn = ItemKNN(k=20).fit(sp.train)
    knn_ones = ItemKNN(k=20).fit(sp.train.with_weights(np.ones(len(sp.train))))
    np.testing.assert_allclose(knn.sim_.toarray(), knn_ones.sim_.toarray(), atol=1e-6)
    knn_w = ItemKNN(k=20).fit(sp.train.with_weights(_group_weights(sp.train, truth, 0.0)))
    assert np.abs(knn_w.sim_.toarray() - knn.sim_.toarray()).max() > 1e-2
