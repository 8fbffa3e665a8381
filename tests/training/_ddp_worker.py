"""Worker for tests/training/test_ddp.py: trains small models; run alone or under torchrun.

    torchrun --standalone --nproc_per_node 2 tests/training/_ddp_worker.py OUT_PREFIX [DEVICE [BACKEND]]

Each rank writes ``OUT_PREFIX.<rank>.json`` with its histories, test NDCG@10 and a digest of its
final weights (model and strategy modules), so the test can compare ranks with each other and
with a single process (:func:`run_all` called in-process). ``DEVICE`` (default ``cpu``) is every
model's ``train.device`` (``cuda``: each rank's GPU from ``LOCAL_RANK``); ``BACKEND`` (default
``auto``: nccl on a GPU, gloo on the CPU) the process-group backend.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from debiasrec.data.split import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.inproc.adversarial import Adversarial
from debiasrec.debias.inproc.multitask import MultiTask
from debiasrec.models import BPR, MultVAE
from debiasrec.training.distributed import shutdown
from debiasrec.training.trainer import validation_score

SEED = 7
TRAIN = {"epochs": 4, "lr": 0.05, "batch_size": 512, "eval_every": 1, "patience": 10}


def _digest(model: Any) -> str:
    h = hashlib.sha256()
    modules = [model.module, *(m for s in model.strategies for m in s.modules())]
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def models(device: str = "cpu", backend: str = "auto") -> dict[str, Any]:
    train = {**TRAIN, "device": device, "backend": backend}
    return {
        "bpr": BPR(dim=16, train=train),
        "bpr_adversarial": BPR(
            dim=16,
            train=train,
            strategies=[Adversarial(attrs=["gender", "age"], strength=0.5, filters=True)],
        ),
        "multvae": MultVAE(hidden=32, latent=8, train={**train, "batch_size": 64}),
        # row-sparse gradients are exchanged as gathered rows, not dense tables
        "bpr_sparse": BPR(dim=16, train={**train, "row_sparse": "on"}),
        "bpr_multitask": BPR(
            dim=16, train=train, strategies=[MultiTask(tasks=[{"kind": "genre"}, {"kind": "like"}])]
        ),
    }


def run_all(
    names: list[str] | None = None, device: str = "cpu", backend: str = "auto"
) -> dict[str, Any]:
    """Fit each model with the same seed and global batch size; returns what rank 0 reports."""
    torch.set_num_threads(1)
    ds, _ = generate(SyntheticConfig(n_users=300, n_items=150, mean_interactions=20), rng=0)
    split = random_split(ds, rng=0)
    out: dict[str, Any] = {}
    for name, model in models(device, backend).items():
        if names is not None and name not in names:
            continue
        model.fit(split.train, valid=split.valid, rng=SEED)
        out[name] = {
            "history": model.history_.epochs,
            "best_epoch": model.history_.best_epoch,
            "row_sparse": model.history_.row_sparse,
            "device": model.history_.device,
            "test_ndcg": validation_score(model.score, split.train, split.test),
            "digest": _digest(model),
        }
    return out


if __name__ == "__main__":
    import torch.distributed as dist

    args = sys.argv[2:]
    res = run_all(device=args[0] if args else "cpu", backend=args[1] if len(args) > 1 else "auto")
    rank = dist.get_rank() if dist.is_initialized() else 0
    res["backend"] = dist.get_backend() if dist.is_initialized() else None
    res["world"] = dist.get_world_size() if dist.is_initialized() else 1
    Path(f"{sys.argv[1]}.{rank}.json").write_text(json.dumps(res))
    shutdown()
