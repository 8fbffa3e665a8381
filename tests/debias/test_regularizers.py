"""FOCF regularizers and the utility-gap penalty as Trainer strategies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debiasrec.data import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.inproc import FOCFRegularizer, UtilityGapPenalty
from debiasrec.errors import ConfigError
from debiasrec.metrics.yao import yao_unfairness
from debiasrec.models import BPR, MultVAE

TRAIN = {"epochs": 15, "eval_every": 5, "batch_size": 1024, "lr": 1e-2}


@pytest.fixture(scope="module")
def split():
    # F users are noisier (less predictable): a planted utility gap.
    ds, _ = generate(
        SyntheticConfig(n_users=400, n_items=150, mean_interactions=20, noise_share=(0.0, 0.6)),
        rng=0,
    )
    return ds, random_split(ds, rng=0)


def _train_pairs(model, ds, sp, rng=0):
    csr = sp.train.csr()
    users = np.repeat(np.arange(ds.n_users), np.diff(csr.indptr))
    pos = csr.indices
    neg = np.random.default_rng(rng).integers(0, ds.n_items, len(users))
    with torch.no_grad():
        s = model.pair_scores(
            torch.from_numpy(np.concatenate([users, users])),
            torch.from_numpy(np.concatenate([pos, neg]).astype(np.int64)),
        )
    f = np.asarray(ds.user_groups("gender")) == "F"
    return s.numpy(), users, pos, neg, f


def test_focf_non_parity_reduces_non_parity(split):
    ds, sp = split
    base = BPR(dim=16, train=TRAIN).fit(sp.train, valid=sp.valid, rng=0)
    reg = BPR(dim=16, train=TRAIN, strategies=[FOCFRegularizer(attr="gender", unfairness="non_parity", weight=50.0)])
    reg.fit(sp.train, valid=sp.valid, rng=0)
    assert "loss_focf_non_parity" in reg.history_.epochs[0]

    def non_parity(m):
        s, users, pos, neg, f = _train_pairs(m, ds, sp)
        uu = np.concatenate([users, users])
        pred = 1 / (1 + np.exp(-s))
        tgt = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        return yao_unfairness(pred, tgt, np.r_[pos, neg], f[uu])["non_parity"]

    assert non_parity(reg) < 0.5 * non_parity(base)


def test_utility_gap_penalty_shrinks_group_gap(split):
    ds, sp = split

    def gap(m):
        s, users, pos, neg, f = _train_pairs(m, ds, sp)
        sp_, sn = np.split(s, 2)
        ll = -np.log1p(np.exp(-(sp_ - sn)))
        return abs(ll[f[users]].mean() - ll[~f[users]].mean())

    base = BPR(dim=16, train=TRAIN).fit(sp.train, valid=sp.valid, rng=0)
    pen = BPR(dim=16, train=TRAIN, strategies=[UtilityGapPenalty(attr="gender", weight=20.0)])
    pen.fit(sp.train, valid=sp.valid, rng=0)
    assert "loss_util_gap" in pen.history_.epochs[0]
    assert gap(pen) < 0.7 * gap(base)


def test_regularizer_errors(split):
    ds, sp = split
    with pytest.raises(ConfigError):
        FOCFRegularizer(attr="gender", unfairness="parity")
    with pytest.raises(ConfigError, match="attr"):
        FOCFRegularizer(weight=1.0)  # no default attribute: which one is sensitive is data's
    with pytest.raises(ConfigError, match="weight"):
        UtilityGapPenalty(attr="gender", weight=-1.0)
    with pytest.raises(ConfigError, match="disadvantaged"):
        BPR(dim=4, train={"epochs": 1}, strategies=[FOCFRegularizer(attr="age")]).fit(sp.train, rng=0)
    # A model without the declared capabilities is refused before training starts.
    with pytest.raises(ConfigError, match="PairwiseTraining"):
        MultVAE(
            hidden=8, latent=4, train={"epochs": 1}, strategies=[UtilityGapPenalty(attr="gender")]
        ).fit(sp.train, rng=0)
