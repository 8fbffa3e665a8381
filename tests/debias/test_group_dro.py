"""Group DRO over user groups: the update by hand, and the under-served group raised."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from debiasrec.data import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.inproc import STRATEGIES, GroupDRO
from debiasrec.debias.inproc.group_dro import dro_row_weights, dro_update
from debiasrec.errors import ConfigError
from debiasrec.experiment.evaluate import EvalConfig, evaluate_model
from debiasrec.models import BPR, MultVAE


def test_dro_update_by_hand() -> None:
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    losses = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    out = dro_update(q, losses, torch.tensor([True, True, True]), eta=2.0)
    raw = np.array([0.2 * math.exp(2.0), 0.3 * math.exp(1.0), 0.5])
    np.testing.assert_allclose(out.numpy(), raw / raw.sum())
    # group 2 absent from the batch: it keeps its weight, the others share theirs
    out = dro_update(q, losses, torch.tensor([True, True, False]), eta=2.0)
    raw = np.array([0.2 * math.exp(2.0), 0.3 * math.exp(1.0)])
    np.testing.assert_allclose(out.numpy(), [*(raw / raw.sum() * 0.5), 0.5])
    same = dro_update(q, losses, torch.tensor([True, True, True]), eta=0.0)
    np.testing.assert_allclose(same.numpy(), q.numpy())


def test_row_weights_are_importance_weights() -> None:
    q = torch.tensor([0.75, 0.25], dtype=torch.float64)
    share = torch.tensor([0.25, 0.75], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 1, -1])  # a batch drawn with the training shares
    w = dro_row_weights(q, labels, share)
    np.testing.assert_allclose(w.numpy(), [3.0, 1 / 3, 1 / 3, 1 / 3, 1.0])
    loss = torch.tensor([0.4, 1.0, 2.0, 3.0, 7.0], dtype=torch.float64)
    lab = labels >= 0
    # on a batch with the training shares: weighted mean = sum_g q_g * mean loss of g
    assert float((w * loss)[lab].sum() / lab.sum()) == pytest.approx(0.75 * 0.4 + 0.25 * 2.0)
    np.testing.assert_allclose(dro_row_weights(share, labels, share).numpy(), np.ones(5))


def test_config_needs_exactly_one_grouping_and_a_weighted_pairwise_model() -> None:
    assert STRATEGIES.lookup("group_dro") is GroupDRO
    with pytest.raises(ConfigError, match="exactly one"):
        GroupDRO(eta=0.1)
    with pytest.raises(ConfigError, match="exactly one"):
        GroupDRO(attr="gender", activity=True)
    GroupDRO(activity=True)
    with pytest.raises(ConfigError, match="PairwiseTraining"):
        GroupDRO(attr="gender").check_model(MultVAE())


PLANTED = SyntheticConfig(n_users=500, n_items=150, minority_share=0.15, genre_bias=10.0,
                          mean_interactions=20)  # fmt: skip
TRAIN = {"epochs": 30, "lr": 0.03, "batch_size": 512, "eval_every": 2, "patience": 4}


@pytest.fixture(scope="module")
def planted():
    ds, _ = generate(PLANTED, rng=0)
    return random_split(ds, rng=0)


def _group_ndcg(split, strategies, seeds=(0, 1)) -> tuple[float, float, list]:
    f, m, models = [], [], []
    for s in seeds:
        # a 2-dimensional model must share item factors between the groups' disjoint
        # favourite genres: the majority's genres win unless the minority is upweighted
        model = BPR(dim=2, reg=0.01, train=TRAIN, strategies=strategies).fit(
            split.train, valid=split.valid, rng=s
        )
        ev = evaluate_model(
            model, split.train, split.valid, split.test,
            config=EvalConfig(ks=[10], metrics=["ndcg"], attrs=["gender"], n_boot=0),
        )  # fmt: skip
        r = ev.results.set_index(["metric", "group"])["value"]
        f.append(r[("ndcg@10", "gender=F")])
        m.append(r[("ndcg@10", "gender=M")])
        models.append(model)
    return float(np.mean(f)), float(np.mean(m)), models


def test_dro_raises_the_minority_and_shrinks_the_gap(planted) -> None:
    f0, m0, _ = _group_ndcg(planted, [])
    f1, m1, models = _group_ndcg(planted, [GroupDRO(attr="gender", eta=0.05)])
    assert f1 >= f0 + 0.02  # the under-served group gains (base 0.20 -> 0.24 here)
    assert (m1 - f1) <= 0.8 * (m0 - f0)  # the gap shrinks by at least a fifth
    assert m1 >= m0 - 0.03  # at a small cost to the majority
    hist = models[0].history_.epochs
    q_f = [e["dro_q_F"] for e in hist if "dro_q_F" in e]
    share_f = float((planted.train.user_groups("gender").codes[planted.train.users] == 0).mean())
    assert q_f and max(q_f) > share_f  # the minority's weight rose above its share


def test_eta_zero_proportional_is_ordinary_training(planted) -> None:
    base = BPR(dim=2, reg=0.01, train={**TRAIN, "epochs": 3}).fit(planted.train, rng=0)
    dro = BPR(
        dim=2, reg=0.01, train={**TRAIN, "epochs": 3}, strategies=[GroupDRO(attr="gender", eta=0.0)]
    ).fit(planted.train, rng=0)
    np.testing.assert_allclose(dro.user_embeddings(), base.user_embeddings(), rtol=1e-4, atol=1e-5)
