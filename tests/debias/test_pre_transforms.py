"""Reweighting, IPS and oversampling on synthetic data with a planted group imbalance."""

from __future__ import annotations

import numpy as np
import pytest

from debiasrec.data import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.pre import PRE_METHODS, GroupReweight, Oversample, PopularityIPS
from debiasrec.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def data():
    # minority F: 25 % of users with half the activity -> ~14 % of the interactions
    ds, truth = generate(
        SyntheticConfig(
            n_users=400, n_items=150, minority_share=0.25, activity_ratio=0.5, genre_bias=6.0
        ),
        rng=1,
    )
    return ds, truth, random_split(ds, rng=0)


def _weight_share_f(train, truth) -> float:
    w = np.ones(len(train)) if train.weights is None else train.weights
    return float(w[truth.minority[train.users]].sum() / w.sum())


def test_registry_lists_every_method():
    assert {"group_reweight", "ips", "oversample", "gan_balance", "gan_twins"} <= set(PRE_METHODS)


def test_group_reweight_balances_the_training_signal(data):
    ds, truth, sp = data
    before = _weight_share_f(sp.train, truth)
    assert before < 0.2  # the planted imbalance
    t = GroupReweight(attr="gender")
    out = t.apply(sp.train)
    assert _weight_share_f(out, truth) == pytest.approx(0.5, abs=1e-5)
    assert np.mean(out.weights) == pytest.approx(1.0, abs=1e-5)
    half = _weight_share_f(GroupReweight(attr="gender", alpha=0.5).apply(sp.train), truth)
    assert before + 0.1 < half < 0.5 - 0.05  # alpha interpolates
    assert t.report_["weight_share"]["F"] == pytest.approx(0.5, abs=1e-5)
    # the interactions themselves are untouched
    np.testing.assert_array_equal(out.users, sp.train.users)
    assert out.n_users == sp.train.n_users


def test_group_reweight_users_mode_equal_user_totals(data):
    ds, truth, sp = data
    out = GroupReweight(attr="gender", balance="users").apply(sp.train)
    per_user = np.bincount(out.users, weights=out.weights, minlength=out.n_users)
    active = sp.train.user_counts() > 0
    f, m = per_user[active & truth.minority], per_user[active & ~truth.minority]
    assert f.sum() == pytest.approx(m.sum(), rel=1e-4)  # each group carries half the weight
    assert np.ptp(f) == pytest.approx(0.0, abs=1e-4)  # every F user the same total


def test_group_reweight_explicit_weights_and_composition(data):
    ds, truth, sp = data
    out = GroupReweight(attr="gender", group_weights={"F": 0.0, "M": 1.0}).apply(sp.train)
    assert _weight_share_f(out, truth) == 0.0
    twice = GroupReweight(attr="gender").apply(GroupReweight(attr="gender").apply(sp.train))
    assert _weight_share_f(twice, truth) > 0.5  # weights compose multiplicatively


def test_ips_flattens_popularity(data):
    ds, truth, sp = data
    out = PopularityIPS().apply(sp.train)
    counts = np.bincount(sp.train.items, minlength=ds.n_items)
    head = np.argsort(-counts)[: ds.n_items // 10]
    share = np.isin(sp.train.items, head).mean()
    w_share = out.weights[np.isin(out.items, head)].sum() / out.weights.sum()
    assert w_share < share - 0.05  # popular items lose weight
    # hand check: w_i ∝ 1 / max((n_i / n_max)^0.5, clip)
    p = np.maximum((counts / counts.max()) ** 0.5, 0.05)
    expected = (1 / p)[sp.train.items]
    np.testing.assert_allclose(out.weights, expected / expected.mean(), rtol=1e-5)
    strong = PopularityIPS(eta=1.0, clip=0.01).apply(sp.train)
    assert strong.weights[np.isin(strong.items, head)].sum() / strong.weights.sum() < w_share


def test_oversample_balances_users_with_copies(data):
    ds, truth, sp = data
    t = Oversample(attr="gender")
    out = t.apply(sp.train, rng=0)
    n_f, n_m = t.report_["users_before"]["F"], t.report_["users_before"]["M"]
    assert n_f < n_m and t.report_["users_added"] == {"F": n_m - n_f, "M": 0}
    groups = out.user_groups("gender")
    new = np.arange(sp.train.n_users, out.n_users)
    assert (np.asarray(groups)[new] == "F").all()
    assert (out.user_counts()[groups == "F"] > 0).sum() == n_m
    assert out.user_vocab[new[0]] == "over:0"
    # each new user's profile is a real F user's profile
    csr = out.csr()
    real_rows = {tuple(csr[u].indices) for u in np.flatnonzero(truth.minority)}
    assert all(tuple(csr[u].indices) in real_rows for u in new)
    # original users keep their codes and interactions
    np.testing.assert_array_equal(out.users[: len(sp.train)], sp.train.users)
    half = Oversample(attr="gender", ratio=0.5).apply(sp.train, rng=0)
    assert half.n_users - sp.train.n_users == max(round(0.5 * n_m) - n_f, 0)


def test_oversample_is_reproducible(data):
    ds, truth, sp = data
    a = Oversample().apply(sp.train, rng=5)
    b = Oversample().apply(sp.train, rng=5)
    c = Oversample().apply(sp.train, rng=6)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    ("cls", "kw", "field"),
    [
        (GroupReweight, {"alpha": 2.0}, "alpha"),
        (GroupReweight, {"balanc": "users"}, "balanc"),
        (PopularityIPS, {"clip": 0.0}, "clip"),
        (PopularityIPS, {"eta": -1}, "eta"),
        (Oversample, {"ratio": 0}, "ratio"),
    ],
)
def test_bad_config_names_the_field(cls, kw, field):
    with pytest.raises(ConfigError, match=field):
        cls(**kw)


def test_bad_groups_and_attrs(data):
    ds, truth, sp = data
    with pytest.raises(ConfigError, match="groups"):
        Oversample(groups=["X"]).apply(sp.train, rng=0)
    with pytest.raises(ConfigError, match="group_weights"):
        GroupReweight(group_weights={"X": 1.0}).apply(sp.train)
    with pytest.raises(DataError, match="available"):
        GroupReweight(attr="height").apply(sp.train)
