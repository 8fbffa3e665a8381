"""Data-parallel training under torchrun (2 processes, gloo) matches one process.

Same seed, same global batch size: each rank trains on half of every batch and gradients are
averaged, so BPR follows the single-process trajectory up to float rounding (the two halves' sums
are added in another order). Tolerance: 1e-4 relative on every epoch's losses and 2e-3 absolute on
validation/test NDCG@10 (a rounding difference can swap two near-tied items in a top-10).
Strategies (an adversary with its own optimizer and filters) and Mult-VAE must keep every rank's
weights bit-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
import _ddp_worker  # noqa: E402

WORKER = Path(__file__).parent / "_ddp_worker.py"


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp") / "res"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(WORKER), str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def single() -> dict:
    return _ddp_worker.run_all(["bpr"])


def test_two_ranks_ran_distributed_and_stay_in_sync(ddp_results: list[dict]) -> None:
    r0, r1 = ddp_results
    assert r0["world"] == r1["world"] == 2
    for name in ("bpr", "bpr_adversarial", "multvae"):
        assert r0[name]["digest"] == r1[name]["digest"], f"{name}: ranks diverged"
        strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in r[name]["history"]]
                 for r in (r0, r1)]  # fmt: skip
        assert strip[0] == strip[1]  # losses all-reduced, validation broadcast from rank 0
        assert len(r0[name]["history"]) == _ddp_worker.TRAIN["epochs"]
    adv = r0["bpr_adversarial"]["history"][-1]
    assert {"leak_auc_gender", "leak_auc_age", "loss_bpr"} <= set(adv)


def test_bpr_matches_single_process(ddp_results: list[dict], single: dict) -> None:
    ddp, one = ddp_results[0]["bpr"], single["bpr"]
    assert len(ddp["history"]) == len(one["history"])
    for a, b in zip(ddp["history"], one["history"], strict=True):
        for key in ("loss_bpr", "loss_reg"):
            assert a[key] == pytest.approx(b[key], rel=1e-4)
        assert a["valid_ndcg@10"] == pytest.approx(b["valid_ndcg@10"], abs=2e-3)
    assert ddp["test_ndcg"] == pytest.approx(one["test_ndcg"], abs=2e-3)
    assert ddp["best_epoch"] == one["best_epoch"]


def test_shards_are_disjoint_and_cover_the_global_batch() -> None:
    from debiasrec.training.distributed import DistContext, shard_batch

    batch = {"users": torch.arange(11), "pos": torch.arange(11) * 2, "table": torch.ones(3)}
    parts = [shard_batch(batch, DistContext(rank=r, world=3)) for r in range(3)]
    assert torch.equal(torch.cat([p["users"] for p, _ in parts]), batch["users"])
    assert torch.equal(torch.cat([p["pos"] for p, _ in parts]), batch["pos"])
    assert all(p["table"] is batch["table"] for p, _ in parts)  # not batch-shaped: shared
    # weights n_rank * world / n: the rank-mean of weighted batch means is the global mean
    x = batch["pos"].double()
    rank_means = [w * p["pos"].double().mean() for p, w in parts]
    assert float(sum(rank_means) / 3) == pytest.approx(float(x.mean()))
