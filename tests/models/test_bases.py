"""iALS, EASE and SASRec: hand-checkable closed forms, weights, causality, leave-one-out learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from debiasrec.data.dataset import Dataset
from debiasrec.data.split import leave_one_out_split
from debiasrec.errors import ConfigError
from debiasrec.models import EASE, IALS, SASRec
from debiasrec.models.ials import IALSConfig, _Side, _solve_cg, _solve_cholesky


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dataset(
    mat: np.ndarray, weights: np.ndarray | None = None, timestamps: np.ndarray | None = None
) -> Dataset:
    u, i = np.nonzero(mat)
    return Dataset(
        u,
        i,
        user_vocab=pd.Index(np.arange(mat.shape[0])),
        item_vocab=pd.Index(np.arange(mat.shape[1])),
        weights=None if weights is None else weights[u, i],
        timestamps=timestamps,
        name="tiny",
    )


# 5 users x 4 items
X = np.array(
    [[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float64
)


# --------------------------------------------------------------------------------------------
# EASE
# --------------------------------------------------------------------------------------------


def _ease_reference(x: np.ndarray, reg: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + reg * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.mark.parametrize("method", ["dense", "dense-sparse-gram", "chunked"])
def test_ease_is_the_closed_form(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if method == "dense-sparse-gram":  # the Gram matrix from scipy's sparse product
        monkeypatch.setattr("debiasrec.models.ease.DENSE_GRAM_DENSITY", 2.0)
        method = "dense"
    model = EASE(reg=2.0, method=method, block=3).fit(_dataset(X))
    ref = _ease_reference(X, 2.0)
    np.testing.assert_allclose(model.item_weights(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score(np.arange(5)), X @ ref, rtol=1e-5, atol=1e-6)
    # the constraint and the optimality condition of the reduced problem: (G + reg I) B = G - D
    assert np.all(np.diag(model.item_weights()) == 0)


def test_ease_topk_keeps_the_largest_weights_per_column() -> None:
    ref = _ease_reference(X, 2.0)
    model = EASE(reg=2.0, method="chunked", block=3, topk=2).fit(_dataset(X))
    b = model.item_weights().toarray()
    for j in range(4):
        kept = np.flatnonzero(b[:, j])
        assert len(kept) == 2
        np.testing.assert_allclose(b[kept, j], ref[kept, j], rtol=1e-5)
        assert np.abs(ref[kept, j]).min() >= np.abs(np.delete(ref[:, j], kept)).max() - 1e-9


def test_ease_weights_act_like_copies_of_users() -> None:
    w = np.ones_like(X)
    w[2] = 3.0  # user 2's pairs weigh 3
    weighted = EASE(reg=2.0).fit(_dataset(X, weights=w)).item_weights()
    copies = np.vstack([X, X[2], X[2]])
    np.testing.assert_allclose(weighted, _ease_reference(copies, 2.0), rtol=1e-5, atol=1e-6)
    # weight 0 removes the pair from the Gram matrix
    w0 = np.ones_like(X)
    w0[3, 0] = 0.0
    dropped = X.copy()
    dropped[3, 0] = 0
    np.testing.assert_allclose(
        EASE(reg=2.0).fit(_dataset(X, weights=w0)).item_weights(),
        _ease_reference(dropped, 2.0), rtol=1e-5, atol=1e-6,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# iALS
# --------------------------------------------------------------------------------------------


def _weighted_lstsq(y: np.ndarray, w_row: np.ndarray, alpha: float, reg: float) -> np.ndarray:
    """Minimiser of sum_i s_i^2 + sum_obs w_i [(1 + a)(1 - s_i)^2 - s_i^2] + reg |x|^2, written
    as an ordinary stacked least-squares problem: confidence c = 1 + a w, target p = w (1 + a) / c
    (equal to the objective up to a constant)."""
    c = 1.0 + alpha * w_row
    p = w_row * (1.0 + alpha) / c
    a = np.vstack([np.sqrt(c)[:, None] * y, np.sqrt(reg) * np.eye(y.shape[1])])
    b = np.concatenate([np.sqrt(c) * p, np.zeros(y.shape[1])])
    return np.linalg.lstsq(a, b, rcond=None)[0]


@pytest.mark.parametrize("exponent", [0.0, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_ials_user_step_is_the_exact_weighted_least_squares_solution(
    weighted: bool, exponent: float
) -> None:
    rng = np.random.default_rng(0)
    w = np.where(X > 0, rng.uniform(0.0, 3.0, X.shape) if weighted else 1.0, 0.0)
    cfg = IALSConfig(dim=3, alpha=2.5, reg=0.7, reg_exponent=exponent)
    csr = sp.csr_matrix(X.astype(np.float32))
    side = _Side(csr, w[X > 0].astype(np.float32), cfg)
    y = rng.standard_normal((4, 3)).astype(np.float32)
    reg_u = 0.7 * w.sum(axis=1) ** exponent  # frequency-scaled: reg * (summed weights)^exponent
    expected = np.stack(
        [_weighted_lstsq(y.astype(np.float64), w[u], 2.5, reg_u[u]) for u in range(5)]
    )
    exact = _solve_cholesky(side, torch.from_numpy(y), cfg.alpha, block=2).numpy()
    np.testing.assert_allclose(exact, expected, rtol=1e-4, atol=1e-5)
    # conjugate gradients reach the same solution in d steps (exact arithmetic), from anywhere
    cg = _solve_cg(side, torch.ones(5, 3), torch.from_numpy(y), cfg.alpha, steps=6).numpy()
    np.testing.assert_allclose(cg, expected, rtol=1e-3, atol=1e-4)


def test_ials_pair_weights_move_scores_in_the_expected_direction() -> None:
    rng = np.random.default_rng(1)
    mat = (rng.random((30, 20)) < 0.3).astype(np.float64)
    u, i = np.argwhere(mat > 0)[0]
    base = IALS(dim=4, alpha=2.0, reg=0.5, iterations=8).fit(_dataset(mat), rng=0)
    up = np.ones_like(mat)
    up[u, i] = 5.0
    heavy = IALS(dim=4, alpha=2.0, reg=0.5, iterations=8).fit(_dataset(mat, weights=up), rng=0)
    assert heavy.score(np.array([u]))[0, i] > base.score(np.array([u]))[0, i] + 0.05
    # weight 0 is the same fit as the data without the pair
    zero = np.ones_like(mat)
    zero[u, i] = 0.0
    gone = mat.copy()
    gone[u, i] = 0
    a = IALS(dim=4, alpha=2.0, reg=0.5, iterations=8).fit(_dataset(mat, weights=zero), rng=0)
    b = IALS(dim=4, alpha=2.0, reg=0.5, iterations=8).fit(_dataset(gone), rng=0)
    np.testing.assert_allclose(a.score(np.arange(30)), b.score(np.arange(30)), atol=1e-5)


def test_ials_cg_approaches_the_cholesky_fit_with_more_steps() -> None:
    rng = np.random.default_rng(2)
    ds = _dataset((rng.random((40, 25)) < 0.25).astype(np.float64))
    exact = IALS(dim=6, reg=1.0, solver="cholesky", iterations=4).fit(ds, rng=0).score(np.arange(40))
    errs = [
        np.abs(IALS(dim=6, reg=1.0, cg_steps=s, iterations=4).fit(ds, rng=0).score(np.arange(40))
               - exact).max()
        for s in (1, 12)
    ]  # fmt: skip
    assert errs[1] < 1e-3 < errs[0]


# --------------------------------------------------------------------------------------------
# SASRec
# --------------------------------------------------------------------------------------------


def _cycle_dataset(n_users: int = 60, n_items: int = 20, length: int = 15, seed: int = 0) -> Dataset:
    """Each user walks the item cycle 0 -> 1 -> ... -> n-1 -> 0 from a random start."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, n_items, n_users)
    users = np.repeat(np.arange(n_users), length)
    items = (start[:, None] + np.arange(length)[None, :]).ravel() % n_items
    ts = np.tile(np.arange(length), n_users) * 10
    perm = rng.permutation(len(users))  # rows in random order: time must order them
    return Dataset(
        users[perm],
        items[perm],
        user_vocab=pd.Index(np.arange(n_users)),
        item_vocab=pd.Index(np.arange(n_items)),
        timestamps=ts[perm],
        name="cycle",
    )


SMALL = {"dim": 16, "heads": 2, "layers": 1, "ffn": 32, "max_len": 8, "dropout": 0.0}


def test_sasrec_is_causal() -> None:
    ds = _cycle_dataset()
    model = SASRec({**SMALL, "train": {"epochs": 1}}).fit(ds, rng=0)
    net = model.module.eval()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [0, 0, 3, 4, 5, 6, 7, 12]])
    other = torch.tensor([[0, 0, 3, 4, 5, 9, 1, 2]])
    with torch.no_grad():
        h = net(seq, None)
        h2 = net(other, None)
    # changing the last item leaves every earlier position's output unchanged
    torch.testing.assert_close(h[0, :-1], h[1, :-1])
    assert not torch.allclose(h[0, -1], h[1, -1])
    # changing items from position 5 on leaves positions < 5 unchanged
    torch.testing.assert_close(h[0, :5], h2[0, :5])


def test_sasrec_learns_a_deterministic_next_item_under_leave_one_out(tmp_path: Path) -> None:
    ds = _cycle_dataset()
    split = leave_one_out_split(ds)
    cfg = {**SMALL, "train": {"epochs": 40, "lr": 0.01, "batch_size": 32, "eval_every": 5,
                              "patience": 2}}  # fmt: skip
    model = SASRec(cfg).fit(split.train, valid=split.valid, rng=0)
    users = np.arange(ds.n_users)
    truth_valid = split.valid.items[np.argsort(split.valid.users)]
    assert (model.recommend(users, k=1).items[:, 0] == truth_valid).mean() >= 0.9
    model.extend_history(split.valid)
    recs = model.recommend(users, k=10, exclude=[split.valid.csr()])
    truth = split.test.items[np.argsort(split.test.users)]
    hit = (recs.items == truth[:, None]).any(axis=1).mean()
    top1 = (recs.items[:, 0] == truth).mean()
    assert hit >= 0.95 and top1 >= 0.9
    # the extended history is saved with the model
    model.save(tmp_path / "m")
    loaded = SASRec.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score(users), model.score(users))


def test_sasrec_extend_history_appends_in_time_order() -> None:
    ds = _cycle_dataset(n_users=3, n_items=20, length=6)
    split = leave_one_out_split(ds)
    model = SASRec({**SMALL, "train": {"epochs": 1}}).fit(split.train, rng=0)
    full = SASRec({**SMALL, "train": {"epochs": 1}}).fit(split.train, rng=0)
    model.extend_history(split.valid).extend_history(split.test)
    # histories equal the users' whole sequences in time order
    for u in range(3):
        seq = model.hist_items_[model.hist_indptr_[u] : model.hist_indptr_[u + 1]]
        order = np.argsort(ds.timestamps[ds.users == u], kind="stable")
        np.testing.assert_array_equal(seq, ds.items[ds.users == u][order])
    assert not np.allclose(model.user_embeddings(), full.user_embeddings())
    with pytest.raises(ConfigError):
        model.extend_history(_dataset(X))


def test_sasrec_target_weights_scale_the_loss() -> None:
    ds = _cycle_dataset(n_users=10, length=8)
    model = SASRec({**SMALL, "train": {"epochs": 1}}).fit(ds, rng=0)
    ones = SASRec({**SMALL, "train": {"epochs": 1}}).fit(
        ds.with_weights(np.ones(ds.n_interactions, np.float32)), rng=0
    )
    twice = SASRec({**SMALL, "train": {"epochs": 1}}).fit(
        ds.with_weights(np.full(ds.n_interactions, 2.0, np.float32)), rng=0
    )
    rng = np.random.default_rng(0)
    b1 = next(ones.batches(ds, 64, rng))
    b2 = next(twice.batches(ds, 64, np.random.default_rng(0)))
    b0 = next(model.batches(ds, 64, np.random.default_rng(0)))
    assert "weight" not in b0
    with torch.no_grad():
        l0 = model.loss_terms(b0)["ce"]
        l1 = model.loss_terms(b1)["ce"]
        l2 = model.loss_terms(b2)["ce"]
    torch.testing.assert_close(l0, l1)
    torch.testing.assert_close(l2, 2 * l1)
    # weights sit on the targets: every target position has a weight, padding none
    assert ((b1["weight"] > 0) == (b1["target"] > 0)).all()


def test_sasrec_config_checks_heads() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        SASRec(dim=10, heads=3)


def test_sasrec_trains_with_an_adversary_on_its_user_representation() -> None:
    from debiasrec.data.synthetic import SyntheticConfig, generate
    from debiasrec.debias.inproc import Adversarial

    ds, _ = generate(SyntheticConfig(n_users=60, n_items=40, mean_interactions=10), rng=0)
    split = leave_one_out_split(ds)
    adv = Adversarial(attrs=["gender"], strength=0.5, validate_folds=2)
    model = SASRec({**SMALL, "train": {"epochs": 2, "batch_size": 16}}, strategies=[adv])
    model.fit(split.train, valid=split.valid, rng=0)
    rows = model.history_.epochs
    assert any(k.startswith("loss_adv") for k in rows[0]), rows[0]
    assert "leak_auc_gender" in rows[-1]
    assert np.isfinite(model.score(np.arange(ds.n_users))).all()


@pytest.mark.parametrize("cls", [IALS, EASE, SASRec])
def test_exposure_reranker_applies_to_the_new_models(cls) -> None:
    """Post-processing reads ``model.score``: raising the long-tail target raises its share."""
    from debiasrec.data.split import random_split
    from debiasrec.data.synthetic import SyntheticConfig, generate
    from debiasrec.debias.post import ExposureReranker
    from debiasrec.debias.post.base import RerankContext
    from debiasrec.metrics import long_tail_share

    ds, _ = generate(SyntheticConfig(n_users=80, n_items=60, mean_interactions=12), rng=0)
    split = random_split(ds, rng=0)
    params = {"dim": 8, "train": {"epochs": 2}} if cls is SASRec else {}
    model = cls(params).fit(split.train, rng=0)
    ctx = RerankContext.from_datasets(split.train, split.valid)
    users = np.arange(ds.n_users)
    share = []
    for strength in (0.0, 1.0):
        recs = ExposureReranker(strength=strength, k=10, n_candidates=40).rerank(
            model.score, ctx, users=users, exclude=[split.train.csr()]
        )
        assert not (recs.items < 0).any()
        share.append(float(np.mean(long_tail_share(recs.items, split.train.item_counts(), 10))))
    assert share[1] > share[0] + 0.1


def test_sasrec_windows_make_every_training_transition_a_target_once() -> None:
    ds = _cycle_dataset(n_users=4, n_items=500, length=23)
    model = SASRec({**SMALL, "train": {"epochs": 1}}).fit(ds, rng=0)  # max_len 8
    targets = []
    for batch in model.batches(ds, 1000, np.random.default_rng(0)):
        t, s = batch["target"].numpy(), batch["seq"].numpy()
        # on the item cycle, each target is the item after the input at the same position
        nz = t > 0
        np.testing.assert_array_equal(s[nz] % 500, (t[nz] - 1) % 500)
        for u, row_t in zip(batch["users"].numpy(), t, strict=True):
            targets += [(int(u), int(x)) for x in row_t[row_t > 0]]
    expected = []
    for u in range(4):
        order = np.argsort(ds.timestamps[ds.users == u], kind="stable")
        items = ds.items[ds.users == u][order]
        expected += [(u, int(x) + 1) for x in items[1:]]  # every item but each user's first
    assert sorted(targets) == sorted(expected)
