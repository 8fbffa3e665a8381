"""Conditional WGAN-GP augmentation: planted-direction effects, isolation from evaluation, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from debiasrec.data import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.pre import GANBalance, GANTwins
from debiasrec.debias.pre.gan import other_group
from debiasrec.errors import ConfigError, DataError
from debiasrec.experiment.evaluate import EvalConfig, evaluate_model
from debiasrec.models import BPR, Pop

FAST = {"steps": 120, "hidden": 64, "critic_steps": 3, "batch_size": 64, "lr": 2e-3}


@pytest.fixture(scope="module")
def data():
    # Two disjoint favourite-genre sets with a strong bias; F is 25 % of the users.
    ds, truth = generate(
        SyntheticConfig(
            n_users=300,
            n_items=80,
            n_genres=4,
            n_favourite_genres=1,
            minority_share=0.25,
            mean_interactions=15,
            genre_bias=12.0,
            popularity_skew=0.3,
        ),
        rng=2,
    )
    return ds, truth, random_split(ds, rng=0)


@pytest.fixture(scope="module")
def balanced(data):
    ds, truth, split = data
    t = GANBalance(attr="gender", **FAST)
    return t, t.apply(split.train, rng=0)


@pytest.fixture(scope="module")
def twins(data):
    ds, truth, split = data
    t = GANTwins(attr="gender", **FAST)
    return t, t.apply(split.train, rng=0)


def _fav_share(train, users, truth, group: str) -> np.ndarray:
    """Per user: share of interactions on ``group``'s favourite genres."""
    fav = np.isin(truth.item_genre, truth.favourite_genres[group])
    csr = train.csr()[users]
    hits = np.asarray(csr[:, fav].sum(axis=1)).ravel()
    return hits / np.maximum(np.asarray(csr.sum(axis=1)).ravel(), 1)


def test_gan_balance_adds_minority_users_with_minority_taste(data, balanced):
    ds, truth, split = data
    t, out = balanced
    before, added = t.report_["users_before"], t.report_["users_added"]
    assert added == {"F": before["M"] - before["F"], "M": 0}
    new = np.arange(split.train.n_users, out.n_users)
    assert (np.asarray(out.user_groups("gender"))[new] == "F").all()
    assert out.user_vocab[new[0]] == "gen:0"
    # planted direction: generated F users favour F's genres like real F users, unlike M users
    gen_share = _fav_share(out, new, truth, "F").mean()
    real_f = _fav_share(split.train, np.flatnonzero(truth.minority), truth, "F").mean()
    real_m = _fav_share(split.train, np.flatnonzero(~truth.minority), truth, "F").mean()
    assert gen_share > real_m + 0.5 * (real_f - real_m)
    # lengths follow the F users' length distribution (within a factor)
    lens = out.user_counts()
    assert 0.5 < lens[new].mean() / lens[: ds.n_users][truth.minority].mean() < 2.0
    fid = t.report_["fidelity"]
    assert 0.0 <= fid["two_sample"]["auc"] <= 1.0 and fid["memorisation"]["threshold"] == 0.8
    assert set(fid["genre_js"]) == {"F"}
    assert t.report_["training"]["generator_steps"] == FAST["steps"]


def test_gan_twins_move_taste_towards_the_target_group(data, twins):
    ds, truth, split = data
    t, out = twins
    n_active = int((split.train.user_counts() > 0).sum())
    assert t.report_["twins"] == n_active == out.n_users - split.train.n_users
    groups = np.asarray(out.user_groups("gender"))
    new = np.arange(split.train.n_users, out.n_users)
    seeds_m = ~truth.minority[np.flatnonzero(split.train.user_counts() > 0)]
    # every twin is in the other group than its seed
    assert (groups[new][seeds_m] == "F").all() and (groups[new][~seeds_m] == "M").all()
    # planted direction: F twins of M seeds lean to F's genres more than their seeds do
    m_seeds = np.flatnonzero((split.train.user_counts() > 0) & ~truth.minority)
    twin_of_m = new[seeds_m]
    assert (
        _fav_share(out, twin_of_m, truth, "F").mean()
        > _fav_share(split.train, m_seeds, truth, "F").mean() + 0.15
    )
    # twins keep their seed's length
    np.testing.assert_array_equal(
        out.user_counts()[new], split.train.user_counts()[split.train.user_counts() > 0]
    )
    assert 0.0 <= t.report_["seed_twin_jaccard"] <= 1.0


def test_generated_users_never_reach_evaluation(data, balanced):
    ds, truth, split = data
    _, out = balanced
    for part in (split.valid, split.test):
        assert part.n_users == ds.n_users
        assert not part.user_vocab.astype(str).str.startswith("gen:").any()
        assert part.users.max() < ds.n_users
    model = BPR(dim=8, train={"epochs": 6, "eval_every": 2, "batch_size": 512}).fit(
        out, valid=split.valid, rng=0
    )
    assert model.n_users_ == out.n_users and "valid_ndcg@10" in model.history_.epochs[1]
    cfg = EvalConfig(ks=[10], n_boot=0)
    ev = evaluate_model(model.score_tensor, out, split.valid, split.test, config=cfg)
    assert ev.users.max() < ds.n_users
    assert set(ev.per_user["user"]) <= set(np.flatnonzero(split.test.user_counts() > 0))
    # original users score identically through the augmented training set's codes
    np.testing.assert_array_equal(model.score(np.arange(5)), model.score(np.arange(5)))
    sampled = EvalConfig(ks=[10], n_boot=0, sampled_negatives=20)
    evaluate_model(model.score_tensor, out, split.valid, split.test, config=sampled)
    recs = model.recommend(np.arange(ds.n_users), 10, exclude=[split.valid.csr()])
    assert recs.items.shape == (ds.n_users, 10)
    # popularity-based metrics count the real users' interactions only: the same ranker
    # evaluated with the augmented or the original training set gives the same numbers
    pop = Pop().fit(split.train)
    ev_aug = evaluate_model(pop.score_tensor, out, split.valid, split.test, config=cfg)
    ev_real = evaluate_model(pop.score_tensor, split.train, split.valid, split.test, config=cfg)
    r1 = ev_aug.results.set_index(["metric", "group"])["value"]
    r2 = ev_real.results.set_index(["metric", "group"])["value"]
    for key in [("novelty@10", "all"), ("arp@10", "all"), ("ndcg@10", "gender=F")]:
        assert r1[key] == pytest.approx(r2[key], rel=1e-9)


def test_gan_is_reproducible_with_a_seed(data):
    ds, truth, split = data
    cfg = {**FAST, "steps": 20, "fidelity": False}
    a = GANBalance(**cfg).apply(split.train, rng=3)
    b = GANBalance(**cfg).apply(split.train, rng=3)
    c = GANBalance(**cfg).apply(split.train, rng=4)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    ta = GANTwins(**cfg, share=0.2).apply(split.train, rng=3)
    tb = GANTwins(**cfg, share=0.2).apply(split.train, rng=3)
    assert ta.fingerprint() == tb.fingerprint()


def test_twins_respect_source_and_target_groups(data):
    ds, truth, split = data
    t = GANTwins(**{**FAST, "steps": 5, "fidelity": False}, source_groups=["M"], share=0.5)
    out = t.apply(split.train, rng=0)
    new = np.arange(split.train.n_users, out.n_users)
    assert (np.asarray(out.user_groups("gender"))[new] == "F").all()
    n_m = int(((split.train.user_counts() > 0) & ~truth.minority).sum())
    assert len(new) == round(0.5 * n_m)
    with pytest.raises(ConfigError, match="target_groups"):
        GANTwins(target_groups=["X"]).apply(split.train, rng=0)


def test_other_group_is_uniform_over_the_others():
    rng = np.random.default_rng(0)
    own = np.repeat([0, 1, 2], 3000)
    out = other_group(own, np.array([0, 1, 2]), rng)
    assert (out != own).all()
    counts = np.bincount(out[own == 1], minlength=3)
    assert counts[1] == 0 and abs(counts[0] - counts[2]) < 300
    np.testing.assert_array_equal(other_group(np.array([0, 2]), np.array([2]), rng), [2, 2])


@pytest.mark.parametrize(
    ("cls", "kw", "field"),
    [
        (GANBalance, {"steps": 0}, "steps"),
        (GANBalance, {"sampling": "argmax"}, "sampling"),
        (GANBalance, {"gp_weigth": 1.0}, "gp_weigth"),
        (GANTwins, {"share": 1.5}, "share"),
        (GANTwins, {"memorisation_threshold": 0}, "memorisation_threshold"),
    ],
)
def test_bad_gan_config_names_the_field(cls, kw, field):
    with pytest.raises(ConfigError, match=field):
        cls(**kw)


def test_gan_needs_known_groups(data):
    ds, truth, split = data
    with pytest.raises(DataError, match="available"):
        GANBalance(attr="height").apply(split.train, rng=0)
    empty_f = split.train.subset(~truth.minority[split.train.users])
    out = GANBalance(**{**FAST, "steps": 2}, groups=["F"]).apply(empty_f, rng=0)
    assert out.n_users == empty_f.n_users  # a group without users cannot be learned: none added
    assert sp.issparse(out.csr())
