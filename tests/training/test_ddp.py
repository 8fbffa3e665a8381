"""Data-parallel training under torchrun (2 processes, gloo) matches one process.

Same seed, same global batch size: each rank trains on half of every batch and gradients are
averaged, so BPR follows the single-process trajectory up to float rounding (the two halves' sums
are added in another order). Tolerance: 1e-4 relative on every epoch's losses and 2e-3 absolute on
validation/test NDCG@10 (a rounding difference can swap two near-tied items in a top-10).
The same holds for BPR with row-sparse table updates (``row_sparse="on"``: the ranks' gradient
rows are gathered, not dense tables). Multi-task training (genre and like heads) draws its task
samples from each rank's shard (the genre task uses the shard's distinct items), so it follows a
statistically, not numerically, equal trajectory: 5% on losses, 0.02 on NDCG@10. Strategies (an adversary with its own optimizer and filters) and Mult-VAE must keep
every rank's weights bit-identical.

These runs pass ``device="cpu"`` explicitly, so the backend is gloo on every machine (with a GPU
visible too: the backend follows the device, not ``torch.cuda.is_available()``). The GPU run
(``test_ddp_on_gpu``, marked ``cuda``) uses nccl with one GPU per rank when two GPUs are
visible; with one GPU, NCCL refuses two ranks on the same device, so both ranks train on
``cuda:0`` and exchange gradients with gloo (the test prints why).
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
#: models whose 2-process run must follow the single-process trajectory
MATCHED = ["bpr", "bpr_sparse"]


def torchrun(out: Path, *args: str) -> list[dict]:
    """Run the worker on 2 ranks (``args``: device, backend); each rank's results."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(WORKER), str(out), *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return torchrun(tmp_path_factory.mktemp("ddp") / "res", "cpu")


@pytest.fixture(scope="module")
def single() -> dict:
    return _ddp_worker.run_all([*MATCHED, "bpr_multitask"], device="cpu")


def test_two_ranks_ran_distributed_and_stay_in_sync(ddp_results: list[dict]) -> None:
    r0, r1 = ddp_results
    assert r0["world"] == r1["world"] == 2
    assert r0["backend"] == "gloo" and r0["bpr"]["device"] == "cpu"  # even with CUDA visible
    for name in ("bpr", "bpr_adversarial", "multvae", "bpr_sparse", "bpr_multitask"):
        assert r0[name]["digest"] == r1[name]["digest"], f"{name}: ranks diverged"
        strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in r[name]["history"]]
                 for r in (r0, r1)]  # fmt: skip
        assert strip[0] == strip[1]  # losses all-reduced, validation broadcast from rank 0
        assert len(r0[name]["history"]) == _ddp_worker.TRAIN["epochs"]
    assert r0["bpr_sparse"]["row_sparse"] and not r0["bpr"]["row_sparse"]
    adv = r0["bpr_adversarial"]["history"][-1]
    assert {"leak_auc_gender", "leak_auc_age", "loss_bpr"} <= set(adv)


@pytest.mark.parametrize("name", MATCHED)
def test_matches_single_process(ddp_results: list[dict], single: dict, name: str) -> None:
    ddp, one = ddp_results[0][name], single[name]
    assert len(ddp["history"]) == len(one["history"])
    for a, b in zip(ddp["history"], one["history"], strict=True):
        losses = sorted(k for k in b if k.startswith("loss_"))
        assert losses == sorted(k for k in a if k.startswith("loss_"))
        assert len(losses) >= 2
        for key in losses:
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
        assert a["valid_ndcg@10"] == pytest.approx(b["valid_ndcg@10"], abs=2e-3)
    assert ddp["test_ndcg"] == pytest.approx(one["test_ndcg"], abs=2e-3)
    assert ddp["best_epoch"] == one["best_epoch"]


def test_multitask_is_statistically_equivalent(ddp_results: list[dict], single: dict) -> None:
    ddp, one = ddp_results[0]["bpr_multitask"], single["bpr_multitask"]
    assert len(ddp["history"]) == len(one["history"])
    for a, b in zip(ddp["history"], one["history"], strict=True):
        assert {"loss_mt_genre", "loss_mt_like"} <= set(a)
        assert a["loss_bpr"] == pytest.approx(b["loss_bpr"], rel=0.05)
        assert a["loss_mt_like"] == pytest.approx(b["loss_mt_like"], rel=0.05)
    assert ddp["test_ndcg"] == pytest.approx(one["test_ndcg"], abs=0.02)


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


def test_reduce_sparse_sends_rows_of_any_gradient_form(tmp_path) -> None:
    """One-rank group: sparse, dense and missing gradients all come back as coalesced rows."""
    import torch.distributed as dist

    from debiasrec.training.distributed import _reduce_sparse

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        p = torch.nn.Parameter(torch.zeros(5, 2))
        vals = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        p.grad = torch.sparse_coo_tensor(
            torch.tensor([[3, 1, 3]]), vals, (5, 2), check_invariants=True
        )
        _reduce_sparse(p, 1)
        assert p.grad.is_sparse and p.grad.is_coalesced()
        assert p.grad.indices().tolist() == [[1, 3]]
        assert p.grad.values().tolist() == [[3.0, 4.0], [6.0, 8.0]]
        dense = torch.zeros(5, 2)
        dense[2] = torch.tensor([0.0, -1.0])
        p.grad = dense
        _reduce_sparse(p, 1)
        assert p.grad.is_sparse and p.grad.indices().tolist() == [[2]]
        assert torch.equal(p.grad.to_dense(), dense)
        p.grad = None
        _reduce_sparse(p, 1)
        assert p.grad.is_sparse and p.grad.values().numel() == 0
    finally:
        dist.destroy_process_group()


def test_backend_follows_the_device_not_cuda_availability() -> None:
    from debiasrec.training.distributed import backend_for

    assert backend_for("cpu") == "gloo"  # was nccl whenever CUDA was available
    assert backend_for(torch.device("cuda", 0)) == "nccl"
    assert backend_for("cuda:1", "gloo") == "gloo"  # an explicit backend is kept
    assert backend_for(None) == "gloo"


def test_nccl_for_cpu_training_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from debiasrec.errors import ConfigError
    from debiasrec.training.distributed import setup

    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun; fails before any connection
    with pytest.raises(ConfigError, match="nccl reduces GPU tensors only"):
        setup("auto", "nccl", torch.device("cpu"))


@pytest.mark.cuda
def test_ddp_on_gpu(tmp_path: Path) -> None:
    """2 ranks training on the GPU stay in sync and follow one GPU process (same tolerances as
    the CPU check: the sharded sums are added in another order)."""
    if torch.cuda.device_count() >= 2:
        device, backend = "cuda", "nccl"  # each rank on its LOCAL_RANK GPU
    else:
        device, backend = "cuda:0", "gloo"
        print(  # noqa: T201 - the reason is part of the test's output
            "test_ddp_on_gpu: one visible GPU; NCCL does not run two ranks on the same GPU "
            "('Duplicate GPU detected'), so both ranks train on cuda:0 and reduce with gloo"
        )
    ranks = torchrun(tmp_path / "res", device, backend)
    one = _ddp_worker.run_all(MATCHED, device="cuda:0")
    r0, r1 = ranks
    assert r0["backend"] == backend and r0["world"] == 2
    for name in ("bpr", "bpr_adversarial", "multvae", "bpr_sparse", "bpr_multitask"):
        assert r0[name]["device"].startswith("cuda")
        assert r0[name]["digest"] == r1[name]["digest"], f"{name}: ranks diverged"
    for name in MATCHED:
        ddp = r0[name]
        for a, b in zip(ddp["history"], one[name]["history"], strict=True):
            for key in (k for k in b if k.startswith("loss_")):
                assert a[key] == pytest.approx(b[key], rel=1e-3), (name, key)
        assert ddp["test_ndcg"] == pytest.approx(one[name]["test_ndcg"], abs=5e-3)
