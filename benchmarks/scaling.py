"""Scaling to ML-20M size on one machine: time and peak memory per stage at 1M, 5M and 20M.

For each size a planted-bias synthetic dataset is generated with ML-20M's catalog (26,744 items)
and its mean activity (144.4 interactions per user), so users grow with the interactions and
every stage should cost about linearly in them (full ranking is users x items with items fixed).
Stages: generate, split (per-user random 8:1:1, CSR views), train one BPR epoch (dim 128, batch
4096, the model's defaults), evaluate (full ranking of every test user over the whole catalog,
train and valid items masked, NDCG/Recall/MRR/Hit/Precision/MAP @10/@20, beyond-accuracy metrics,
by-group results for gender and age with bootstrap CIs). The evaluation is compared with its
physical floor on this machine (fastest of 2 runs of each): the bare matrix product of the same user and item embeddings
plus ``torch.topk``, chunk by chunk, with no masking or metrics.

Peak memory is the process's peak resident set size during the stage (``VmHWM``, reset before
each stage through ``/proc/self/clear_refs``), so it includes what earlier stages keep alive.

With ``--extras`` the largest size also runs the leakage probe on the BPR user embeddings, every
re-ranker on top-100 candidates of all test users, and a few batches of LightGCN and Mult-VAE
(their full epochs are extrapolated from the measured batches).

    python benchmarks/scaling.py [--sizes 1e6 5e6 2e7] [--extras] [--threads 2] [--device cpu]

``--device`` (default ``cpu``, the setting of the tables in RESULTS.md) is every model's
``train.device``; the GPU numbers come from ``benchmarks/gpu_bench.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from debiasrec.data.split import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.experiment.evaluate import EvalConfig, eval_users, evaluate_model
from debiasrec.models import BPR

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

N_ITEMS = 26_744
MEAN_ACTIVITY = 20_000_263 / 138_493
#: every model's train.device (``--device``)
DEVICE = ["cpu"]


def _batch(model: Any, train: Any) -> int:
    """The batch size the Trainer uses for ``model`` (``batch_size = "auto"`` resolved)."""
    from debiasrec.training.device import resolve_device
    from debiasrec.training.trainer import resolve_batch

    return resolve_batch(model.config.train, model, train, resolve_device(DEVICE[0]))[0]


def _reset_peak() -> None:
    with contextlib.suppress(OSError):  # not Linux: peaks are cumulative
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(
    name: str, fn: Callable[[], Any], rows: list[dict[str, Any]], size: int, repeats: int = 1
) -> Any:
    """Run ``fn`` (``repeats`` times, keeping the fastest: the machine is shared) and record."""
    gc.collect()
    _reset_peak()
    secs = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        secs = min(secs, time.perf_counter() - t)
    rows.append({"size": size, "stage": name, "seconds": secs, "peak_mib": _peak_mib()})
    print(f"  {name:<40} {secs:8.2f} s  peak {rows[-1]['peak_mib']:8.0f} MiB", flush=True)
    return out


def floor_time(model: BPR, users: np.ndarray, k: int, chunk: int) -> float:
    """Bare score matrix product + top-k for the same users, items and chunks (no masking)."""
    with torch.no_grad():
        uw = model.module.user.weight
        iw = model.module.item.weight.T  # as the model scores (BLAS reads the transpose)
        t = time.perf_counter()
        for start in range(0, len(users), chunk):
            block = torch.from_numpy(users[start : start + chunk]).to(uw.device)
            torch.topk(uw[block] @ iw, k, dim=1)
        if uw.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t


def synthetic_config(n: int) -> SyntheticConfig:
    """The planted-bias generator settings for ``n`` interactions (ML-20M's shape)."""
    return SyntheticConfig(
        n_users=round(n / MEAN_ACTIVITY),
        n_items=N_ITEMS,
        n_genres=18,
        mean_interactions=MEAN_ACTIVITY,
        min_interactions=20,
        activity_ratio=0.8,
        noise_share=(0.1, 0.3),
    )


def row_traffic_time(model: BPR, train: Any, seed: int) -> float:
    """Memory floor of a row-sparse epoch: read and write back, for every batch, the rows it
    touches of each table and of its two Adam moments (``index_select`` + ``index_copy_``), and
    nothing else (no arithmetic, no autograd, no sampling)."""
    from debiasrec.random import np_rng

    tables = [model.module.user.weight.detach(), model.module.item.weight.detach()]
    state = [[t.clone(), t.clone(), t.clone()] for t in tables]
    it = model.batches(train, _batch(model, train), np_rng(seed))
    total = 0.0
    for batch in it:
        t = time.perf_counter()
        for k, rows in enumerate((batch["users"], torch.cat([batch["pos"], batch["neg"]]))):
            rows = torch.unique(rows)
            for buf in state[k]:
                buf.index_copy_(0, rows, buf.index_select(0, rows))
        total += time.perf_counter() - t
    return total


def run_size(
    n: int, rows: list[dict[str, Any]], extras: bool, seed: int = 0, repeats: int = 1
) -> None:
    cfg = synthetic_config(n)
    print(f"== {n:,} interactions, {cfg.n_users:,} users x {N_ITEMS:,} items", flush=True)
    holder: dict[str, Any] = {}
    holder["ds"], _ = stage("generate", lambda: generate(cfg, rng=seed), rows, n)

    def split_fn() -> Any:
        sp_ = random_split(holder.pop("ds"), rng=seed)  # the full dataset is freed after
        for part in sp_:
            part.csr()
        return sp_

    split = stage("split (+ CSR views)", split_fn, rows, n)
    model = BPR(train={"epochs": 1, "eval_every": 10**6, "device": DEVICE[0]})
    stage("BPR: one epoch (incl. setup)", lambda: model.fit(split.train, rng=seed), rows, n)
    mode = "row-sparse" if model.history_.row_sparse else "dense"
    rows[-1]["note"] = f"default: {mode}"
    # Epoch loops of both optimizers, fastest of `repeats` (alternating them, so neither gets
    # the process's warm-up); the default fit above counts for its own mode.
    loops: dict[str, list[float]] = {"on": [], "off": []}
    loops["on" if model.history_.row_sparse else "off"].append(model.history_.seconds)
    for _ in range(repeats):
        for m in ("off", "on"):
            if len(loops[m]) < repeats:
                other = BPR(
                    train={"epochs": 1, "eval_every": 10**6, "row_sparse": m, "device": DEVICE[0]}
                )
                other.fit(split.train, rng=seed)
                loops[m].append(other.history_.seconds)
                del other
    rows.append(
        {"size": n, "stage": "BPR: epoch loop, row-sparse LazyAdam (row_sparse on)",
         "seconds": min(loops["on"]), "peak_mib": float("nan")}
    )  # fmt: skip
    rows.append(
        {"size": n, "stage": "BPR: epoch loop, dense Adam (row_sparse off)",
         "seconds": min(loops["off"]), "peak_mib": float("nan")}
    )  # fmt: skip
    rows.append(
        {"size": n, "stage": "floor: read + write the touched rows (3 tensors x 2 tables)",
         "seconds": row_traffic_time(model, split.train, seed), "peak_mib": float("nan")}
    )  # fmt: skip
    print(f"  BPR epoch: {rows[-3]['seconds']:.2f} s (row-sparse); dense "
          f"{rows[-2]['seconds']:.2f} s; row-traffic floor {rows[-1]['seconds']:.2f} s",
          flush=True)  # fmt: skip
    ecfg = EvalConfig(n_boot=200)
    ev = stage(
        "evaluate (full ranking + all metrics)",
        lambda: evaluate_model(
            model.score_tensor, split.train, split.valid, split.test, config=ecfg
        ),
        rows,
        n,
    )
    users = eval_users(split.test)
    rank_only = stage(
        "  of which: score + mask + top-20",
        lambda: __import__("debiasrec.experiment.evaluate", fromlist=["rank_full"]).rank_full(
            model.score_tensor, users, 20, [split.train.csr(), split.valid.csr()], chunk=ecfg.chunk
        ),
        rows,
        n,
        repeats=2,
    )
    del rank_only
    stage(
        "floor: bare matmul + top-20",
        lambda: floor_time(model, users, 20, ecfg.chunk),
        rows,
        n,
        repeats=2,
    )
    ndcg = ev.results.set_index(["metric", "group"])["value"][("ndcg@10", "all")]
    print(f"  test users {len(users):,}, NDCG@10 after one epoch {ndcg:.4f}", flush=True)
    if extras:
        run_extras(split, model, users, rows, n, seed)


def run_extras(split: Any, model: BPR, users: np.ndarray, rows: list, n: int, seed: int) -> None:
    from debiasrec.debias.post import base as post_base
    from debiasrec.debias.post.calibrated import CalibratedReranker
    from debiasrec.debias.post.diversity import MMRReranker
    from debiasrec.debias.post.exposure import ExposureReranker
    from debiasrec.debias.post.group_fair import GroupFairReranker
    from debiasrec.debias.post.popularity import PopularityCalibrationReranker
    from debiasrec.metrics.leakage import leakage
    from debiasrec.models import LightGCN, MultVAE

    labels = split.train.user_groups("gender")
    stage(
        "leakage probe (logreg, 3 folds, all users)",
        lambda: leakage(model.user_embeddings(), labels, folds=3, rng=seed),
        rows,
        n,
    )
    ctx = post_base.RerankContext.from_datasets(split.train, split.valid, sensitive=["gender"])
    excl = [split.train.csr(), split.valid.csr()]
    cand = stage(
        "re-rank: top-100 candidates",
        lambda: post_base.candidates(model.score_tensor, users, n=100, exclude=excl),
        rows,
        n,
    )
    cand_valid = post_base.candidates(
        model.score_tensor, eval_users(split.valid), n=100, exclude=excl[:1]
    )
    for cls in (CalibratedReranker, PopularityCalibrationReranker, MMRReranker, ExposureReranker,
                GroupFairReranker):  # fmt: skip
        kw: dict[str, Any] = {"strength": 0.5}
        if cls is GroupFairReranker:
            kw["attr"] = "gender"
        rr = cls(**kw)

        def go(rr: Any = rr) -> Any:
            if rr.needs_fit:
                rr.fit(ctx, cand_valid)
            return rr.rerank(cand, ctx)

        stage(f"re-rank: {cls.name}", go, rows, n)
    for cls, kw, batches in (
        (LightGCN, {}, 2),
        (MultVAE, {}, 5),
    ):
        m = cls(train={"epochs": 1, "eval_every": 10**6, "device": DEVICE[0], **kw})
        total = _count_batches(cls, split.train, m)

        def few(m: Any = m, cls: Any = cls, batches: int = batches) -> Any:
            return _fit_batches(m, split.train, batches, seed)

        secs = stage(f"{cls.name}: {batches} batches", few, rows, n)
        rows[-1]["note"] = f"one epoch = {total} batches -> ~{secs * total / batches / 60:.0f} min"
        print(f"    {rows[-1]['note']}", flush=True)


def _count_batches(cls: Any, train: Any, m: Any) -> int:
    bs = _batch(m, train)
    if cls.__name__ == "MultVAE":
        return int(np.ceil((train.user_counts() > 0).sum() / bs))
    return int(np.ceil(train.n_interactions / bs))


def _fit_batches(model: Any, train: Any, batches: int, seed: int) -> float:
    """Time ``batches`` training steps (forward, backward, Adam) after building the model."""
    from debiasrec.random import np_rng, torch_generator
    from debiasrec.training.device import resolve_device

    gen = np_rng(seed)
    model.n_users_, model.n_items_, model.train_csr_ = train.n_users, train.n_items, train.csr()
    model.device_ = resolve_device(DEVICE[0])
    model._build(train, torch_generator(gen))
    model.module.to(model.device_)
    opt = torch.optim.Adam(model.module.parameters(), lr=1e-3)
    it = model.batches(train, _batch(model, train), gen)
    next(it)  # the epoch's setup (shuffle, negatives) is not part of the per-batch cost
    t = time.perf_counter()
    for _, batch in zip(range(batches), it, strict=False):
        loss = sum(model.loss_terms(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def table(rows: list[dict[str, Any]], sizes: list[int]) -> str:
    stages = list(dict.fromkeys(r["stage"] for r in rows if r["size"] in sizes))
    by = {(r["size"], r["stage"]): r for r in rows}
    head = "| stage | " + " | ".join(f"{s / 1e6:g}M: s / peak MiB" for s in sizes)
    if len(sizes) > 1:
        head += f" | time ratio {sizes[-1] / 1e6:g}M / {sizes[0] / 1e6:g}M (data x{sizes[-1] / sizes[0]:g})"
    lines = [head + " |", "|" + " --- |" * (len(sizes) + 1 + (len(sizes) > 1))]
    for st in stages:
        cells = []
        for s in sizes:
            r = by.get((s, st))
            if r is None:
                cells.append("")
            else:
                mem = "" if np.isnan(r["peak_mib"]) else f" / {r['peak_mib']:,.0f}"
                cells.append(
                    f"{r['seconds']:.2f}{mem}" + (f" ({r['note']})" if "note" in r else "")
                )
        line = f"| {st} | " + " | ".join(cells)
        if len(sizes) > 1:
            a, b = by.get((sizes[0], st)), by.get((sizes[-1], st))
            line += f" | {b['seconds'] / a['seconds']:.1f}" if a and b else " | "
        lines.append(line + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 5e6, 2e7])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extras", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--epoch-repeats", type=int, default=3, help="BPR epoch timings per mode")
    ap.add_argument("--repeat-up-to", type=float, default=5e6, help="repeat only up to this size")
    ap.add_argument("--device", default="cpu", help="every model's train.device")
    args = ap.parse_args()
    DEVICE[0] = args.device
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes]
    rows: list[dict[str, Any]] = []
    for i, n in enumerate(sizes):
        run_size(n, rows, extras=args.extras and i == len(sizes) - 1,
                 repeats=args.epoch_repeats if n <= args.repeat_up_to else 1)  # fmt: skip
        gc.collect()
    body = table(rows, sizes)
    print(body)
    if not args.no_write:
        cmd = "python benchmarks/scaling.py " + " ".join(sys.argv[1:])
        note = (
            f"Synthetic planted-bias data with ML-20M's catalog ({N_ITEMS:,} items) and mean "
            f"activity ({MEAN_ACTIVITY:.1f} interactions per user); users grow with the "
            f"interactions. {args.threads} torch threads. Peak = peak RSS of the process during "
            "the stage (includes data kept from earlier stages). 'floor' = bare user x item "
            "matrix product + torch.topk over the same users and chunks (no masking, no "
            "metrics): the physical minimum of full ranking on this machine. BPR epoch loops: "
            f"fastest of {args.epoch_repeats} runs per optimizer up to "
            f"{args.repeat_up_to / 1e6:g}M interactions, one run above; the default "
            "(row_sparse='auto') is row-sparse from 100,000 table rows on, i.e. at 20M only. "
            "Row-traffic floor = for "
            "every batch, only gathering and writing back the touched rows of both tables and "
            "their two Adam moments (what any row-wise optimizer must move). Bootstrap CIs "
            "with 200 replicates.\n\n"
        )
        write_section("Scaling to ML-20M size (one machine)", cmd, note + body)


if __name__ == "__main__":
    main()
