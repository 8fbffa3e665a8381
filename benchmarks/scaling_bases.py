"""iALS and EASE at ML-20M size (synthetic): time and peak memory on this machine.

The data are the scaling benchmark's (``benchmarks/scaling.py``: planted-bias generator with
ML-20M's 26,744 items and mean activity, same seed), split per user 8:1:1. Stages:

* iALS (defaults: 128 factors, 3 CG steps): fits with 1 and with 2 iterations; one iteration
  (an "epoch": a user half-step and an item half-step) = the difference, setup = the rest.
* EASE, chunked path (in-place LAPACK on one float32 26,744^2 buffer), exact ``B`` and, with
  ``topk``, the sparsified ``B``; then scoring one block of 2,048 users.

Peak memory = peak RSS of the process during the stage (``VmHWM`` reset through
``/proc/self/clear_refs``), so it includes the data kept from earlier stages.

    python benchmarks/scaling_bases.py [--size 2e7] [--threads 2] [--skip-ease] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402
from scaling import _peak_mib, _reset_peak, synthetic_config  # noqa: E402

from debiasrec.data.split import random_split  # noqa: E402
from debiasrec.data.synthetic import generate  # noqa: E402
from debiasrec.models import EASE, IALS  # noqa: E402


def timed(label: str, fn, rows: list) -> object:  # noqa: ANN001
    _reset_peak()
    load = Path("/proc/loadavg").read_text().split()[0]
    t = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t
    rows.append((label, secs, _peak_mib(), load))
    print(f"{label:<60} {secs:8.2f} s  peak {rows[-1][2]:8.0f} MiB  load {load}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=float, default=2e7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--topk", type=int, default=200, help="0: skip the sparsified EASE")
    ap.add_argument("--skip-ease", action="store_true")
    ap.add_argument("--skip-ials", action="store_true")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: list = []
    ds, _ = timed("generate", lambda: generate(synthetic_config(int(args.size)), rng=0), rows)
    train = timed("split (+ CSR view)", lambda: random_split(ds, rng=0).train, rows)
    train.csr()
    ds = None
    shape = f"{train.n_users:,} users x {train.n_items:,} items, {train.n_interactions:,} train"
    print(shape, flush=True)
    users = np.arange(min(2048, train.n_users))
    epoch = float("nan")
    if not args.skip_ials:
        timed("iALS fit, 1 iteration", lambda: IALS(iterations=1).fit(train, rng=0), rows)
        ials = timed("iALS fit, 2 iterations", lambda: IALS(iterations=2).fit(train, rng=0), rows)
        timed("iALS score 2,048 users x all items", lambda: ials.score(users), rows)
        ials = None
        epoch = rows[-2][1] - rows[-3][1]
    if not args.skip_ease:
        ease = timed("EASE chunked, exact B", lambda: EASE(method="chunked").fit(train), rows)
        timed("EASE score 2,048 users x all items (dense B)", lambda: ease.score(users), rows)
        ease = None
        if args.topk > 0:
            sparse = timed(f"EASE chunked, top-{args.topk} B",
                           lambda: EASE(method="chunked", topk=args.topk).fit(train), rows)
            timed(f"EASE score 2,048 users (top-{args.topk} sparse B)",
                  lambda: sparse.score(users), rows)
    body = (
        f"Synthetic ML-20M-shaped data (`benchmarks/scaling.py` generator, seed 0): {shape}. "
        f"{args.threads} torch threads (LAPACK: OpenBLAS threads as configured). One iALS "
        f"iteration (user + item half-steps, 128 factors, 3 CG steps) = fit(2 it) - fit(1 it) = "
        f"**{epoch:.1f} s**. Peak = peak RSS during the stage (includes the data).\n\n"
        "| stage | s | peak MiB | 1-min load at start |\n|---|---|---|---|\n"
        + "\n".join(f"| {a} | {b:.1f} | {c:,.0f} | {d} |" for a, b, c, d in rows)
    )
    print(body)
    if args.write:
        write_section("iALS and EASE at ML-20M size (synthetic)",
                      "python benchmarks/scaling_bases.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
