"""Checkpoint and resume: a run interrupted after epoch N and resumed ends exactly like an
uninterrupted run with the same seed (weights, history, selected epoch), for a model with an lr
scheduler, one with its own generator and step counter (Mult-VAE), and a strategy with its own
optimizer, generator and modules (adversary with compositional filters).

Bit-identity is a CPU property: these runs pass ``device="cpu"``. On a GPU (``cuda`` marker) a
resumed run must follow the uninterrupted one to float tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from debiasrec.data.split import Split, random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.inproc.adversarial import Adversarial
from debiasrec.models import BPR, MultVAE
from debiasrec.training import checkpoint
from debiasrec.training.trainer import Strategy

EPOCHS = 6
TRAIN = {
    "epochs": EPOCHS,
    "lr": 0.05,
    "lr_decay": 0.9,
    "batch_size": 256,
    "eval_every": 1,
    "device": "cpu",
}


class Interrupt(Exception):
    pass


class Crash(Strategy):
    """Raises at the first step of epoch ``at`` (after epochs ``0..at-1`` were checkpointed)."""

    name = "crash"

    def __init__(self, at: int | None) -> None:
        self.at = at

    def before_step(self, model: Any, batch: dict, epoch: int) -> None:
        if epoch == self.at:
            raise Interrupt(f"killed at epoch {epoch}")


@pytest.fixture(scope="module")
def split() -> Split:
    ds, _ = generate(SyntheticConfig(n_users=200, n_items=120, mean_interactions=15), rng=1)
    return random_split(ds, rng=1)


def _make(
    kind: str, crash_at: int | None, ckpt: Path | None, resume: bool = False, device: str = "cpu"
) -> Any:
    train = {
        **TRAIN,
        "checkpoint_dir": None if ckpt is None else str(ckpt),
        "resume": resume,
        "device": device,
    }
    if kind == "bpr":
        return BPR(dim=8, train=train, strategies=[Crash(crash_at)])
    if kind == "bpr_sparse":  # row-sparse tables: LazyAdam's state is checkpointed too
        return BPR(dim=8, train={**train, "row_sparse": "on"}, strategies=[Crash(crash_at)])
    if kind == "multvae":
        return MultVAE(hidden=16, latent=8, train={**train, "batch_size": 32},
                       strategies=[Crash(crash_at)])  # fmt: skip
    adv = Adversarial(attrs=["gender", "age"], strength=0.5, filters=True, validate_folds=2)
    return BPR(dim=8, train=train, strategies=[adv, Crash(crash_at)])


def _weights(model: Any) -> dict[str, np.ndarray]:
    out = {f"m.{k}": v.cpu().numpy().copy() for k, v in model.module.state_dict().items()}
    for i, s in enumerate(model.strategies):
        for j, m in enumerate(s.modules()):
            state = m.state_dict().items()
            out.update({f"s{i}.{j}.{k}": v.cpu().numpy().copy() for k, v in state})
    return out


def _strip(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("kind", ["bpr", "bpr_sparse", "multvae", "adversarial"])
def test_resume_after_interrupt_equals_uninterrupted_run(kind: str, split: Split, tmp_path) -> None:
    full = _make(kind, None, None).fit(split.train, valid=split.valid, rng=5)

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        _make(kind, 3, ckpt).fit(split.train, valid=split.valid, rng=5)
    meta = json.loads((ckpt / checkpoint.CHECKPOINT_FILE).read_text())
    assert meta["state"]["__dict__"][0] == ["next_epoch", 3]
    # safetensors + JSON only (no pickle anywhere)
    assert sorted(p.suffix for p in ckpt.iterdir()) == [".json", ".safetensors"]

    resumed = _make(kind, None, ckpt, resume=True).fit(split.train, valid=split.valid, rng=5)
    assert _strip(resumed.history_.epochs) == _strip(full.history_.epochs)
    assert resumed.history_.best_epoch == full.history_.best_epoch
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    users = np.arange(split.train.n_users)
    np.testing.assert_array_equal(
        full.recommend(users, 10).items, resumed.recommend(users, 10).items
    )


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["bpr_sparse", "multvae", "adversarial"])
def test_resume_on_gpu_follows_the_uninterrupted_run(kind: str, split: Split, tmp_path) -> None:
    """On a GPU: the checkpoint (written from CPU copies) resumes the GPU draws, optimizer and
    generator states; the resumed run follows the uninterrupted one to float tolerance."""
    full = _make(kind, None, None, device="cuda").fit(split.train, valid=split.valid, rng=5)
    assert full.history_.device.startswith("cuda")
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        _make(kind, 3, ckpt, device="cuda").fit(split.train, valid=split.valid, rng=5)
    resumed = _make(kind, None, ckpt, resume=True, device="cuda")
    resumed.fit(split.train, valid=split.valid, rng=5)
    assert len(resumed.history_.epochs) == len(full.history_.epochs)
    for a, b in zip(resumed.history_.epochs, full.history_.epochs, strict=True):
        for key in (k for k in b if k.startswith("loss_")):
            assert a[key] == pytest.approx(b[key], rel=1e-3), key
    users = np.arange(split.train.n_users)
    np.testing.assert_allclose(resumed.score(users), full.score(users), rtol=1e-3, atol=1e-4)


KILLED_RUN = """
import os, signal, sys
import torch
sys.path.insert(0, {tests!r})
import test_resume as t
from debiasrec.training.trainer import Strategy

torch.set_num_threads(1)

class Kill(Strategy):
    name = "crash"  # same strategy count and order as the resumed run's Crash
    def before_step(self, model, batch, epoch):
        if epoch == 3:
            os.kill(os.getpid(), signal.SIGKILL)

sp = t.split.__wrapped__()
train = {{**t.TRAIN, "checkpoint_dir": {ckpt!r}, "row_sparse": "on"}}
t.BPR(dim=8, train=train, strategies=[Kill()]).fit(sp.train, valid=sp.valid, rng=5)
"""


def test_resume_after_sigkill_equals_uninterrupted_run(split: Split, tmp_path) -> None:
    """A training process killed with SIGKILL (no cleanup at all) resumes to the same model."""
    import os
    import signal
    import subprocess
    import sys

    ckpt = tmp_path / "ckpt"
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), ckpt=str(ckpt))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    meta = json.loads((ckpt / checkpoint.CHECKPOINT_FILE).read_text())
    assert meta["state"]["__dict__"][0] == ["next_epoch", 3]

    torch.set_num_threads(1)
    full = _make("bpr_sparse", None, None).fit(split.train, valid=split.valid, rng=5)
    resumed = _make("bpr_sparse", None, ckpt, resume=True)
    resumed.fit(split.train, valid=split.valid, rng=5)
    assert _strip(resumed.history_.epochs) == _strip(full.history_.epochs)
    for k, v in _weights(full).items():
        np.testing.assert_array_equal(v, _weights(resumed)[k], err_msg=k)


def test_resume_of_a_finished_run_trains_no_more(split: Split, tmp_path) -> None:
    ckpt = tmp_path / "ckpt"
    first = _make("bpr", None, ckpt).fit(split.train, valid=split.valid, rng=5)
    again = _make("bpr", None, ckpt, resume=True).fit(split.train, valid=split.valid, rng=5)
    assert _strip(again.history_.epochs) == _strip(first.history_.epochs)
    for k, v in _weights(first).items():
        np.testing.assert_array_equal(v, _weights(again)[k])


def test_resume_without_checkpoint_starts_fresh(split: Split, tmp_path) -> None:
    model = _make("bpr", None, tmp_path / "none", resume=True)
    model.fit(split.train, valid=split.valid, rng=5)
    assert len(model.history_.epochs) == EPOCHS


def test_checkpoint_roundtrip_keeps_types(tmp_path) -> None:
    state = {
        "t": torch.arange(3, dtype=torch.float32),
        "scalar": torch.tensor(2.0),
        "opt": {0: {"step": torch.tensor(1.0)}, "groups": [{"betas": (0.9, 0.99), "lr": 0.1}]},
        "rng": np.random.default_rng(0).bit_generator.state,
        "nan": float("nan"),
        "none": None,
    }
    checkpoint.save(tmp_path, state, step=1)
    back = checkpoint.load(tmp_path)
    assert torch.equal(back["t"], state["t"]) and back["scalar"].shape == ()
    assert list(back["opt"]) == [0, "groups"] and back["opt"]["groups"][0]["betas"] == (0.9, 0.99)
    assert back["rng"] == state["rng"] and np.isnan(back["nan"]) and back["none"] is None
    checkpoint.save(tmp_path, state, step=2)
    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["tensors-2.safetensors"]
