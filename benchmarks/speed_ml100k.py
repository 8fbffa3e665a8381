"""Speed and memory on ML-100K: BPR epoch time, BPR time to convergence, full evaluation pass.

The RecBole column is a reference only: its BPR figures (0.38 s/epoch, 42 s in all) were measured
while the machine was loaded and are withdrawn; paired, interleaved timings against RecBole and
implicit are made by ``benchmarks/peers_speed.py``. Run with nothing else on the machine; we
report medians of repeated runs.

    python benchmarks/speed_ml100k.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from debiasrec.data import load_dataset, random_split
from debiasrec.experiment.evaluate import EvalConfig, evaluate_model
from debiasrec.metrics.ranking import ranking_metrics
from debiasrec.metrics.topk import full_ranking_topk
from debiasrec.models import BPR

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _results import write_section  # noqa: E402


def epoch_time(split, threads: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    times = []
    for r in range(repeats):
        m = BPR(train={"epochs": 10, "eval_every": 1000}).fit(split.train, rng=r)
        secs = np.diff([0.0] + [e["seconds"] for e in m.history_.epochs])
        times.append(float(np.median(secs[1:])))  # skip the first (warm-up) epoch
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=2020)
    lines = []
    for threads in (1, 2):
        t = epoch_time(split, threads, args.repeats)
        lines.append(f"| BPR epoch ({threads} thread{'s' if threads > 1 else ''}) | {t * 1000:.1f} ms "
                     f"| {'see peers_speed.py (paired)' if threads == 1 else ''} |")
    torch.set_num_threads(2)
    fits, ndcgs, epochs = [], [], []
    ecfg = EvalConfig(ks=[10], metrics=["ndcg", "recall"], beyond=[], attrs=[], n_boot=0)
    for r in range(args.repeats):
        t = time.perf_counter()
        m = BPR().fit(split.train, valid=split.valid, rng=r)
        fits.append(time.perf_counter() - t)
        epochs.append(len(m.history_.epochs))
        ev = evaluate_model(m.score_tensor, split.train, split.valid, split.test, config=ecfg)
        ndcgs.append(float(ev.results.set_index(["metric", "group"])["value"][("ndcg@10", "all")]))
    lines.append(f"| BPR full training with early stopping (2 threads, incl. validation) | "
                 f"{np.median(fits):.2f} s (median of {args.repeats}; {int(np.median(epochs))} "
                 f"epochs; test NDCG@10 {np.median(ndcgs):.4f}) | see peers_speed.py (paired) |")
    budget_ndcg, budget_fit = [], []
    for r in range(args.repeats):
        t = time.perf_counter()
        mb = BPR(train={"max_seconds": 5.0}).fit(split.train, valid=split.valid, rng=r)
        budget_fit.append(time.perf_counter() - t)
        ev = evaluate_model(mb.score_tensor, split.train, split.valid, split.test, config=ecfg)
        budget_ndcg.append(float(ev.results.set_index(["metric", "group"])["value"][("ndcg@10", "all")]))
    lines.append(f"| BPR with a 5 s training budget (2 threads, `train.max_seconds=5`) | test NDCG@10 "
                 f"{np.median(budget_ndcg):.4f} (median of {args.repeats}; min "
                 f"{np.min(budget_ndcg):.4f}; fit {np.median(budget_fit):.2f} s) | 0.293 |")
    truth = split.test.csr()
    users = np.arange(ds.n_users)
    excl = [split.train.csr(), split.valid.csr()]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        ts = []
        for _ in range(max(args.repeats, 10)):
            t = time.perf_counter()
            items, _ = full_ranking_topk(m.score_tensor, users, 10, excl)
            ranking_metrics(items, truth, ks=(10,), metrics=("ndcg", "recall"))
            ts.append(time.perf_counter() - t)
        lines.append(f"| full evaluation pass, 943 users x 1682 items, score+mask+top-10+NDCG/Recall "
                     f"({threads} thread{'s' if threads > 1 else ''}) | {np.median(ts) * 1000:.1f} ms"
                     f" | {'140 ms' if threads == 1 else ''} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"| peak RSS of this benchmark process | {peak:.0f} MiB | |")
    body = ("| what | debiasrec | RecBole 1.2.1 |\n|---|---|---|\n" + "\n".join(lines))
    print(body)
    if not args.no_write:
        write_section("Speed and memory on ML-100K",
                      "python benchmarks/speed_ml100k.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
