"""LazyAdam: exactly Adam on dense gradients, lazy (row-wise) on sparse ones; Trainer wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.data.split import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.errors import ConfigError
from debiasrec.models import BPR, MultVAE, Pop
from debiasrec.training import trainer as trainer_mod
from debiasrec.training.optim import LazyAdam
from debiasrec.training.trainer import TrainerConfig, row_sparse_tables, validation_score


def _sparse(rows: torch.Tensor, vals: torch.Tensor, n: int) -> torch.Tensor:
    return torch.sparse_coo_tensor(
        rows.unsqueeze(0), vals, (n, vals.shape[1]), check_invariants=True
    )


@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_dense_gradients_give_torch_adam(wd: float, decoupled: bool) -> None:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(7, 5))
    b = torch.nn.Parameter(a.detach().clone())
    ours = LazyAdam([a], lr=0.05, weight_decay=wd, decoupled=decoupled)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref = cls([b], lr=0.05, weight_decay=wd, foreach=False)
    for _ in range(6):
        g = torch.randn(7, 5)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_sparse_gradient_touching_every_row_is_the_dense_update() -> None:
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(6, 4))
    b = torch.nn.Parameter(a.detach().clone())
    oa, ob = LazyAdam([a], lr=0.1), torch.optim.Adam([b], lr=0.1, foreach=False)
    for _ in range(5):
        rows = torch.cat([torch.randperm(6), torch.randint(0, 6, (4,))])  # all rows, duplicates
        vals = torch.randn(len(rows), 4)
        a.grad = _sparse(rows, vals, 6)
        b.grad = torch.zeros(6, 4).index_add_(0, rows, vals)
        oa.step()
        ob.step()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_rows_outside_the_gradient_keep_value_and_moments() -> None:
    torch.manual_seed(2)
    p = torch.nn.Parameter(torch.randn(10, 3))
    opt = LazyAdam([p], lr=0.1)
    p.grad = _sparse(torch.tensor([0, 1, 2]), torch.randn(3, 3), 10)
    opt.step()
    before = p.detach().clone()
    m = opt.state[p]["exp_avg"].clone()
    p.grad = _sparse(torch.tensor([1, 1, 4]), torch.randn(3, 3), 10)
    opt.step()
    untouched = [0, 2, 3, 5, 6, 7, 8, 9]
    assert torch.equal(p.detach()[untouched], before[untouched])  # 0 and 2 had momentum: lazy
    assert torch.equal(opt.state[p]["exp_avg"][untouched], m[untouched])
    assert not torch.equal(p.detach()[[1, 4]], before[[1, 4]])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 11), min_size=1, max_size=15), min_size=1, max_size=4),
    st.booleans(),
)
def test_matches_torch_sparse_adam(batches: list[list[int]], coalesce: bool) -> None:
    gen = torch.Generator().manual_seed(len(batches))
    a = torch.nn.Parameter(torch.randn(12, 3, generator=gen))
    b = torch.nn.Parameter(a.detach().clone())
    oa, ob = LazyAdam([a], lr=0.05), torch.optim.SparseAdam([b], lr=0.05)
    for rows in batches:
        g = _sparse(torch.tensor(rows), torch.randn(len(rows), 3, generator=gen), 12)
        a.grad = g.coalesce() if coalesce else g
        b.grad = g.clone()
        oa.step()
        ob.step()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def split():
    ds, _ = generate(SyntheticConfig(n_users=200, n_items=120, mean_interactions=15), rng=4)
    return random_split(ds, rng=4)


def test_trainer_auto_mode_follows_the_table_size(split, monkeypatch) -> None:
    model = BPR(dim=8, train={"epochs": 1})
    model.fit(split.train, rng=0)
    assert not model.history_.row_sparse  # 320 rows: dense
    assert row_sparse_tables(model, TrainerConfig(row_sparse="on"))
    assert not row_sparse_tables(model, TrainerConfig(row_sparse="off"))
    monkeypatch.setattr(trainer_mod, "ROW_SPARSE_AUTO_ROWS", 100)
    assert row_sparse_tables(model, TrainerConfig())
    model = BPR(dim=8, train={"epochs": 1})
    model.fit(split.train, rng=0)
    assert model.history_.row_sparse


def test_row_sparse_training_uses_sparse_gradients_and_restores_dense_tables(split) -> None:
    seen: list[bool] = []
    orig = LazyAdam.step

    def spy(self, closure=None):  # type: ignore[no-untyped-def]
        seen.extend(p.grad.is_sparse for g in self.param_groups for p in g["params"])
        return orig(self, closure)

    LazyAdam.step = spy  # type: ignore[method-assign]
    try:
        model = BPR(dim=8, train={"epochs": 2, "row_sparse": "on", "batch_size": 256})
        model.fit(split.train, valid=split.valid, rng=0)
    finally:
        LazyAdam.step = orig  # type: ignore[method-assign]
    assert seen and all(seen)
    assert model.history_.row_sparse
    assert not model.module.user.sparse and not model.module.item.sparse


def test_row_sparse_bpr_learns_as_well_as_dense() -> None:
    # strong genre preferences, mild popularity: personalisation pays (BPR 0.23 vs Pop 0.17)
    cfg = SyntheticConfig(n_users=600, n_items=300, mean_interactions=30, genre_bias=20,
                          popularity_skew=0.3, n_genres=10, n_favourite_genres=1)  # fmt: skip
    ds, _ = generate(cfg, rng=4)
    sp = random_split(ds, rng=4)
    pop = validation_score(Pop().fit(sp.train).score, sp.train, sp.valid)
    train = {"epochs": 30, "lr": 0.02, "batch_size": 512, "eval_every": 5, "patience": 10}
    scores = {}
    for mode in ("off", "on"):
        m = BPR(dim=16, train={**train, "row_sparse": mode})
        m.fit(sp.train, valid=sp.valid, rng=3)
        assert m.history_.row_sparse == (mode == "on")
        scores[mode] = m.history_.best_value
        assert scores[mode] > pop + 0.04, (scores, pop)
    assert abs(scores["on"] - scores["off"]) < 0.02, scores


def test_row_sparse_on_without_tables_is_a_config_error(split) -> None:
    with pytest.raises(ConfigError, match="row_sparse='on'"):
        MultVAE(hidden=8, latent=4, train={"epochs": 1, "row_sparse": "on"}).fit(split.train)


def test_invalid_settings_are_rejected() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError):
        LazyAdam([p], lr=0.0)
    with pytest.raises(ValueError):
        LazyAdam([p], betas=(1.0, 0.9))
    assert np.isfinite(LazyAdam([p]).defaults["lr"])
