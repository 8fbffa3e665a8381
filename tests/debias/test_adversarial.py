"""Adversarial debiasing on synthetic data with a planted, strongly predictable gender signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debiasrec.data import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.inproc import Adversarial, grad_reverse
from debiasrec.errors import ConfigError, DataError
from debiasrec.metrics.leakage import auc, leakage
from debiasrec.models import BPR, LightGCN, MultVAE
from debiasrec.models.filters import CompositionalFilter
from debiasrec.training.trainer import validation_score

TRAIN = {"epochs": 30, "eval_every": 5, "batch_size": 1024, "lr": 1e-2}


@pytest.fixture(scope="module")
def data():
    ds, _ = generate(
        SyntheticConfig(n_users=500, n_items=200, genre_bias=4.0, mean_interactions=25), rng=0
    )
    return ds, random_split(ds, rng=0)


@pytest.fixture(scope="module")
def baseline(data):
    ds, sp = data
    return BPR(dim=16, train=TRAIN).fit(sp.train, valid=sp.valid, rng=0)


def _auc(model, ds, attr="gender"):
    return leakage(model.user_embeddings(), ds.user_groups(attr), rng=1)["auc"]


def _ndcg(model, sp):
    return validation_score(model.score_tensor, sp.train, sp.test)


def test_grad_reverse_flips_gradients():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    (grad_reverse(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-0.5, -1.0, -1.5])
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)


def test_attacker_finds_signal_and_adversary_removes_most_of_it(data, baseline):
    ds, sp = data
    base_auc = _auc(baseline, ds)
    assert base_auc > 0.8
    adv = BPR(dim=16, train=TRAIN, strategies=[Adversarial(attrs=["gender"], strength=0.2)])
    adv.fit(sp.train, valid=sp.valid, rng=0)
    adv_auc = _auc(adv, ds)
    assert adv_auc < base_auc - 0.2 and adv_auc < 0.65
    assert _ndcg(adv, sp) > 0.8 * _ndcg(baseline, sp)  # bounded accuracy cost
    rows = [r for r in adv.history_.epochs if "leak_auc_gender" in r]
    assert rows and all(0.0 <= r["leak_auc_gender"] <= 1.0 for r in rows)
    assert "loss_adv_gender" in adv.history_.epochs[0]


def test_selection_constraint_with_adversary(data):
    ds, sp = data
    train = {**TRAIN, "select_constraint": {"leak_auc_gender": 0.7}}
    m = BPR(dim=16, train=train, strategies=[Adversarial(attrs=["gender"], strength=0.2)])
    m.fit(sp.train, valid=sp.valid, rng=0)
    chosen = next(r for r in m.history_.epochs if r["epoch"] == m.history_.best_epoch)
    assert m.history_.selection == "constrained" and chosen["leak_auc_gender"] <= 0.7


def test_compositional_filters_gender_only_at_inference(data, baseline, tmp_path):
    ds, sp = data
    strat = Adversarial(attrs=["gender", "age"], strength=0.3, filters=True)
    m = BPR(dim=16, train=TRAIN, strategies=[strat]).fit(sp.train, valid=sp.valid, rng=0)
    filt = m.user_filter
    assert isinstance(filt, CompositionalFilter) and filt.names == ("gender", "age")
    assert any(k.startswith("user_filter.filters.gender") for k in m.module.state_dict())
    with filt.use(["gender"]):
        gender_only = _auc(m, ds)
        scores = m.score(np.arange(5))
    with filt.use([]):
        unfiltered = _auc(m, ds)
    assert gender_only < _auc(baseline, ds) - 0.15
    assert gender_only < unfiltered  # the gender filter removes what the embedding still holds
    assert np.isfinite(scores).all()
    with pytest.raises(ConfigError):
        filt.set_active(["occupation"])
    # Inference needs no attribute; the filters survive save/load.
    m.save(tmp_path / "m")
    loaded = BPR.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.score(np.arange(5)), m.score(np.arange(5)), rtol=1e-6)
    loaded.user_filter.set_active(["gender"])
    np.testing.assert_allclose(loaded.score(np.arange(5)), scores, rtol=1e-6)


@pytest.mark.parametrize("cls", [LightGCN, MultVAE])
def test_other_models_accept_the_strategy(data, cls):
    ds, sp = data
    params = {"dim": 8} if cls is LightGCN else {"hidden": 32, "latent": 8}
    m = cls(
        **params,
        train={"epochs": 2, "eval_every": 1, "batch_size": 256},
        strategies=[Adversarial(attrs=["gender"], filters=True)],
    )
    m.fit(sp.train, valid=sp.valid, rng=0)
    assert "leak_auc_gender" in m.history_.epochs[-1]
    assert m.user_embeddings().shape[0] == ds.n_users


def test_grl_mode_trains_discriminators(data):
    ds, sp = data
    strat = Adversarial(attrs=["gender"], mode="grl", strength=0.0, n_adversaries=2, layers=1)
    m = BPR(dim=16, train={**TRAIN, "epochs": 10}, strategies=[strat])
    m.fit(sp.train, valid=sp.valid, rng=0)
    # With strength 0 the model ignores them, but both discriminators learned gender.
    assert len(strat.discriminators["gender"]) == 2
    z = torch.from_numpy(m.user_embeddings()).to(m.device)  # the discriminators' device
    is_f = np.asarray(ds.user_groups("gender")) == "F"
    with torch.no_grad():
        for d in strat.discriminators["gender"]:
            p_f = torch.softmax(d(z), 1)[:, list(ds.user_groups("gender").categories).index("F")]
            assert auc(p_f.cpu().numpy(), is_f) > 0.8


def test_config_errors(data):
    ds, sp = data
    with pytest.raises(ConfigError):
        Adversarial(attrs=["gender"], mode="minimax")
    with pytest.raises(ConfigError):
        Adversarial(attrs=[])
    with pytest.raises(DataError, match="gender"):
        BPR(dim=4, train={"epochs": 1}, strategies=[Adversarial(attrs=["genderr"])]).fit(
            sp.train, rng=0
        )


def test_warmup_schedule():
    s = Adversarial(attrs=["gender"], strength=1.0, start_epoch=2, warmup_epochs=4)
    assert [s.strength_at(e) for e in range(7)] == [0, 0, 0.25, 0.5, 0.75, 1.0, 1.0]
