"""Device, precision and batch-size settings (issue 14).

Everything here runs on the CPU through the code paths a GPU uses (``device="cpu"`` explicit,
torch draws on the CPU, CSR-on-device helpers on CPU tensors, a symmetric sparse product on a
CPU CSR matrix); the tests marked ``cuda`` run the same models on a GPU and are skipped without
one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from debiasrec.data.split import Split, random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.data.torch_csr import TorchCSR
from debiasrec.errors import ConfigError
from debiasrec.metrics.topk import full_ranking_topk, mask_rows
from debiasrec.models import BPR, LightGCN, MultVAE
from debiasrec.models.lightgcn import _SymmetricSpMM
from debiasrec.models.torch_base import PairSampler, bpr_negatives_torch
from debiasrec.training.device import (
    BatchRule,
    auto_batch,
    check_device_setting,
    precision_context,
    resolve_device,
)
from debiasrec.training.trainer import TrainerConfig, row_sparse_tables

FAST = {"epochs": 3, "eval_every": 1, "batch_size": 256, "lr": 0.05}


@pytest.fixture(scope="module")
def split() -> Split:
    ds, _ = generate(SyntheticConfig(n_users=120, n_items=80, mean_interactions=15), rng=2)
    return random_split(ds, rng=2)


# ------------------------------------------------------------------------------ the setting
def test_device_spellings() -> None:
    for good, norm in (("auto", "auto"), ("CPU", "cpu"), ("cuda", "cuda"), (" cuda:3 ", "cuda:3")):
        assert check_device_setting(good) == norm
    for bad in ("gpu", "cuda:", "cuda:x", "mps", ""):
        with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda' or 'cuda:N'"):
            check_device_setting(bad)
    with pytest.raises(ConfigError, match="train.device|device"):
        BPR(train={"device": "gpu"})
    with pytest.raises(ConfigError):
        BPR(train={"precision": "fp16"})


def test_resolve_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for s in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device(s)
    with pytest.raises(ConfigError, match="device must be"):
        resolve_device("tpu")


def test_resolve_with_cuda_and_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="2 visible GPU"):
        resolve_device("cuda:2")
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun: one GPU per rank
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index wins
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="LOCAL_RANK"):
        resolve_device("cuda")


# ------------------------------------------------------------------------------ batch size rule
def test_auto_batch_rule_by_hand() -> None:
    bpr = BatchRule(cpu=4096, gpu=65536)
    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert auto_batch(bpr, 0.03, cpu, 20_000_000) == (4096, 0.03)  # the CPU never changes
    assert auto_batch(bpr, 0.03, gpu, 80_000) == (4096, 0.03)  # ML-100K: 312 rows per step
    b, lr = auto_batch(bpr, 0.03, gpu, 20_000_000)  # 78,125 -> capped at 65,536 = 16 x 4096
    assert b == 65536 and lr == pytest.approx(0.03 * 4)
    b, lr = auto_batch(bpr, 0.03, gpu, 5_000_000)  # 19,531 -> 16,384 (a multiple of 4096)
    assert b == 16384 and lr == pytest.approx(0.06)
    vae = BatchRule(cpu=1024, gpu=8192, min_steps=64)
    b, lr = auto_batch(vae, 2e-3, gpu, 138_493)  # 2,163 users per step -> 2,048
    assert b == 2048 and lr == pytest.approx(2e-3 * math.sqrt(2))


def test_auto_batch_is_the_old_default_on_the_cpu(split: Split) -> None:
    for cls, batch, lr in ((BPR, 4096, 3e-2), (LightGCN, 4096, 5e-3), (MultVAE, 1024, 2e-3)):
        assert cls().config.train.batch_size == "auto"
        m = cls(train={"epochs": 1, "device": "cpu"}).fit(split.train, rng=0)
        assert (m.history_.batch_size, m.history_.lr, m.history_.device) == (batch, lr, "cpu")
    m = BPR(train={"epochs": 1, "batch_size": 100}).fit(split.train, rng=0)
    assert m.history_.batch_size == 100  # an explicit size is kept
    assert TrainerConfig().batch_size == 2048


# ------------------------------------------------------------------------------ same path on the CPU
def test_explicit_cpu_is_the_default_path(split: Split) -> None:
    users = np.arange(split.train.n_users)
    for cls in (BPR, LightGCN, MultVAE):
        a = cls(train=FAST).fit(split.train, valid=split.valid, rng=4)
        b = cls(train={**FAST, "device": "cpu"}).fit(split.train, valid=split.valid, rng=4)
        np.testing.assert_array_equal(a.score(users), b.score(users))
        assert b.device == torch.device("cpu")


def test_torch_draws_cover_every_pair_once_and_reject_positives(split: Split) -> None:
    csr = split.train.csr()
    w = np.random.default_rng(0).uniform(0.5, 2.0, csr.nnz).astype(np.float32)
    sampler = PairSampler(csr, split.train.n_items, w, device="cpu", torch_draws=True)
    batches = list(sampler.batches(97, np.random.default_rng(1)))
    users = torch.cat([b["users"] for b in batches]).numpy()
    pos = torch.cat([b["pos"] for b in batches]).numpy()
    neg = torch.cat([b["neg"] for b in batches]).numpy()
    wt = torch.cat([b["weight"] for b in batches]).numpy()
    keys = users * split.train.n_items + pos
    assert sorted(keys.tolist()) == sampler.keys.tolist()  # a permutation of the pairs
    np.testing.assert_array_equal(wt, w[np.searchsorted(sampler.keys, keys)])  # weights follow
    assert not np.isin(users * split.train.n_items + neg, sampler.keys).any()
    again = list(sampler.batches(97, np.random.default_rng(1)))
    assert all(torch.equal(a["neg"], b["neg"]) for a, b in zip(batches, again, strict=True))


def test_torch_negatives_are_uniform_and_use_the_complement() -> None:
    n_items = 10
    gen = torch.Generator().manual_seed(0)
    # user 0 has no positives: uniform over 10 items; user 1 has every item but 7
    keys = torch.tensor([1 * n_items + i for i in range(n_items) if i != 7])
    users = torch.tensor([0] * 20000 + [1] * 50)
    neg = bpr_negatives_torch(users, n_items, keys, gen, keys.numpy(), np.random.default_rng(0))
    counts = np.bincount(neg[:20000].numpy(), minlength=n_items)
    assert np.abs(counts / 20000 - 0.1).max() < 0.01  # 4 sd of a binomial share
    assert (neg[20000:] == 7).all()


def test_torch_csr_rows_match_scipy() -> None:
    rng = np.random.default_rng(0)
    m = sp.random(30, 17, density=0.2, format="csr", random_state=1, dtype=np.float32)
    m[3] = 0  # an empty row
    m.eliminate_zeros()
    t = TorchCSR(m, "cpu")
    rows = torch.from_numpy(rng.integers(0, 30, 12))
    np.testing.assert_array_equal(t.dense(rows).numpy(), m[rows.numpy()].toarray())
    r, c, v = t.entries(rows)
    coo = m[rows.numpy()].tocoo()
    got = sorted(zip(r.tolist(), c.tolist(), v.tolist(), strict=True))
    assert got == sorted(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True))


def test_masking_with_device_csr_equals_scipy(split: Split) -> None:
    model = BPR(train={**FAST, "device": "cpu"}).fit(split.train, rng=0)
    users = np.arange(split.train.n_users)
    masks = [split.train.csr(), split.valid.csr()]
    a = full_ranking_topk(model.score_tensor, users, 10, masks, chunk=2048)
    b = full_ranking_topk(model.score_tensor, users, 10, masks, chunk="auto")  # 2048 on CPU
    s1 = model.score_tensor(users)
    s2 = s1.clone()
    mask_rows(s1, users, masks)
    mask_rows(s2, torch.from_numpy(users), [TorchCSR(m, "cpu") for m in masks])
    assert torch.equal(s1, s2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_symmetric_spmm_equals_sparse_mm(split: Split) -> None:
    model = LightGCN(train={**FAST, "device": "cpu"}).fit(split.train, rng=0)
    coo = model._adj
    e = torch.randn(coo.shape[0], 8, dtype=torch.float64, requires_grad=True)
    a64 = coo.double()
    ref = torch.sparse.mm(a64, e)
    ref.pow(2).sum().backward()
    g_ref = e.grad.clone()
    e.grad = None
    out = _SymmetricSpMM.apply(a64.to_sparse_csr(), e)
    out.pow(2).sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(e.grad, g_ref)
    # the model propagates the same through the CSR (GPU) layout
    users = np.arange(split.train.n_users)
    before = model.score(users)
    model._adj = coo.to_sparse_csr()
    model._final = None
    np.testing.assert_allclose(model.score(users), before, rtol=1e-5, atol=1e-6)


def test_multvae_device_rows_equal_host_rows(split: Split) -> None:
    model = MultVAE(train={**FAST, "device": "cpu"}).fit(split.train, rng=0)
    users = np.arange(0, split.train.n_users, 3)
    host = model._dense_rows(users)
    model._dev_rows = TorchCSR(model._rows, "cpu")  # what a GPU model holds
    torch.testing.assert_close(model._dense_rows(users), host)
    batch = next(iter(model.batches(split.train, 16, np.random.default_rng(0))))
    assert batch["users"].dtype == torch.int64 and len(batch["users"]) == 16


def test_row_sparse_auto_is_cpu_only() -> None:
    class Host:
        def __init__(self, device: str) -> None:
            self.tables = [torch.nn.Embedding(150_000, 2, device=device)]

        def sparse_tables(self) -> list[torch.nn.Embedding]:
            return self.tables

    cfg = TrainerConfig()
    assert row_sparse_tables(Host("cpu"), cfg)  # >= 100,000 rows on the CPU: row-sparse
    assert row_sparse_tables(Host("meta"), cfg) == []  # any other device: dense fused Adam
    assert row_sparse_tables(Host("meta"), TrainerConfig(row_sparse="on"))


def test_bf16_precision_trains_and_scores_float32(split: Split) -> None:
    users = np.arange(split.train.n_users)
    m = BPR(train={**FAST, "device": "cpu", "precision": "bf16"}).fit(split.train, rng=0)
    assert m.history_.precision == "bf16"
    s = m.score_tensor(users)
    assert s.dtype == torch.float32 and torch.isfinite(s).all()
    exact = m.module.user.weight @ m.module.item.weight.T  # fp32 product of the same weights
    torch.testing.assert_close(s, exact.detach(), rtol=2e-2, atol=2e-2)
    assert not torch.equal(s, exact.detach())  # the product ran in bfloat16
    with precision_context(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ConfigError), precision_context(torch.device("cpu"), "fp8"):
        pass


# ------------------------------------------------------------------------------ saving, loading
def test_load_onto_a_device(split: Split, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = BPR(train={**FAST, "device": "cpu"}).fit(split.train, rng=0)
    m.save(tmp_path / "m")
    users = np.arange(split.train.n_users)
    loaded = BPR.load(tmp_path / "m", device="cpu")
    assert loaded.device == torch.device("cpu")
    np.testing.assert_array_equal(loaded.score(users), m.score(users))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        BPR.load(tmp_path / "m", device="cuda")


# ------------------------------------------------------------------------------ experiment layer
def test_run_device_fills_unset_settings_only() -> None:
    from debiasrec.experiment.config import ExperimentConfig

    cfg = ExperimentConfig.model_validate(
        {
            "run": {"device": "cpu", "precision": "bf16"},
            "models": [
                {"kind": "bpr"},
                {"kind": "lightgcn", "params": {"train": {"device": "cuda:1"}}},
                {"kind": "pop"},
            ],
            "methods": [
                {"name": "gan", "model": "bpr", "pre": [{"kind": "gan_balance", "attr": "gender"}]},
                {"name": "adv", "model": "bpr", "params": {"train": {"device": "auto"}},
                 "inproc": [{"kind": "adversarial", "attrs": ["gender"]}]},
            ],
        }
    )  # fmt: skip
    run = cfg.with_run_settings()
    assert cfg.models[0].config.train.device is None  # the written config is left alone
    bpr, lgcn, pop = (m.config for m in run.models)
    assert (bpr.train.device, bpr.train.precision) == ("cpu", "bf16")
    assert (lgcn.train.device, lgcn.train.precision) == ("cuda:1", "bf16")  # per model wins
    assert pop == cfg.models[2].config
    assert run.eval.device == "cpu"
    gan, adv = run.variants()
    assert gan.params.train.device == "cpu" and gan.pre[0][1].device == "cpu"
    assert adv.params.train.device == "auto"  # a method's own params win too
    with pytest.raises(Exception, match="device"):
        ExperimentConfig.model_validate({"run": {"device": "gpu"}})


def test_cli_device_option(tmp_path) -> None:
    import contextlib
    import io

    from debiasrec.cli import _with_device, main
    from debiasrec.experiment.config import ExperimentConfig

    cfg = tmp_path / "c.toml"
    cfg.write_text('[[models]]\nkind = "pop"\n')
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(cfg), "--out", str(tmp_path / "o"), "--device", "gpu"])
    assert code == 2 and err.getvalue().startswith("error: --device")
    assert "Traceback" not in err.getvalue()
    run = _with_device(ExperimentConfig(), "CUDA:1").run
    assert run.device == "cuda:1" and _with_device(ExperimentConfig(), None).run.device is None


def test_leakage_probe_device_argument() -> None:
    from debiasrec.metrics.leakage import leakage

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 4)) + y[:, None] * 0.8
    for probe in ("logreg", "mlp"):
        a = leakage(x, y, probe=probe, folds=3, rng=1)
        b = leakage(x, y, probe=probe, folds=3, rng=1, device="cpu")
        assert a["auc_folds"] == b["auc_folds"] and a["auc"] > 0.7


# ------------------------------------------------------------------------------ on a GPU
def _gpu_fit(cls: Any, split: Split, strategies: list | None = None, **kw: Any) -> Any:
    train = {**FAST, "device": "cuda", **kw}
    return cls(train=train, strategies=strategies or []).fit(split.train, valid=split.valid, rng=0)


@pytest.mark.cuda
@pytest.mark.parametrize("cls", [BPR, LightGCN, MultVAE])
def test_gpu_fit_scores_on_the_gpu_and_loads_on_the_cpu(cls, split: Split, tmp_path) -> None:
    m = _gpu_fit(cls, split)
    assert m.history_.device.startswith("cuda") and m.device.type == "cuda"
    users = np.arange(split.train.n_users)
    t = m.score_tensor(users)
    assert t.device.type == "cuda" and torch.isfinite(t).all()
    m.save(tmp_path / "m")
    cpu = cls.load(tmp_path / "m", device="cpu")
    np.testing.assert_allclose(cpu.score(users), t.cpu().numpy(), rtol=1e-5, atol=1e-5)
    a = m.recommend(users, 10)
    b = cpu.recommend(users, 10)
    same = (a.items == b.items).mean()
    assert same > 0.99  # equal lists up to near-ties


@pytest.mark.cuda
def test_gpu_strategies_and_gan_run_on_the_device(split: Split) -> None:
    from debiasrec.debias.inproc import Adversarial, FOCFRegularizer, MultiTask, UtilityGapPenalty
    from debiasrec.debias.pre.gan import GANBalance

    for strategies in (
        [Adversarial(attrs=["gender", "age"], strength=0.5, filters=True)],
        [MultiTask(tasks=[{"kind": "genre"}, {"kind": "like"}], gradient="pcgrad")],
        [FOCFRegularizer(attr="gender"), UtilityGapPenalty(attr="gender")],
    ):
        m = _gpu_fit(BPR, split, strategies)
        assert all(p.device.type == "cuda" for s in strategies for mod in s.modules()
                   for p in mod.parameters())  # fmt: skip
        assert math.isfinite(m.history_.best_value)
    cpu = GANBalance(attr="gender", steps=10, fidelity=False, device="cpu").apply(
        split.train, rng=0
    )
    gpu = GANBalance(attr="gender", steps=10, fidelity=False, device="cuda").apply(
        split.train, rng=0
    )
    assert gpu.n_users == cpu.n_users  # the same users are added (host draws)


@pytest.mark.cuda
def test_gpu_pair_sampler_and_bf16(split: Split) -> None:
    csr = split.train.csr()
    sampler = PairSampler(csr, split.train.n_items, device="cuda")
    b = next(iter(sampler.batches(10**6, np.random.default_rng(0))))
    assert b["users"].device.type == "cuda"
    keys = (b["users"] * split.train.n_items + b["neg"]).cpu().numpy()
    assert not np.isin(keys, sampler.keys).any()
    m = _gpu_fit(BPR, split, precision="bf16")
    assert torch.isfinite(m.score_tensor(np.arange(5))).all()


@pytest.mark.cuda
def test_gpu_bpr_loss_gradient_matches_autograd() -> None:
    from debiasrec.models.bpr import _BPRLoss, _WeightedBPRLoss

    g = torch.Generator(device="cuda").manual_seed(0)
    u, qi, qj = (torch.randn(32, 8, device="cuda", dtype=torch.float64, generator=g,
                             requires_grad=True) for _ in range(3))  # fmt: skip
    w = torch.rand(32, device="cuda", dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda a, b, c: _BPRLoss.apply(a, b, c, 0.1), (u, qi, qj))
    assert torch.autograd.gradcheck(
        lambda a, b, c: _WeightedBPRLoss.apply(a, b, c, w, 0.1), (u, qi, qj)
    )
