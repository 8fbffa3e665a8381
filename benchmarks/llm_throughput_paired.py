"""Paired before/after throughput of candidate scoring on 2 CPU cores (fresh processes, interleaved).

The workload of ``llm_throughput.py`` (32 ML-100K users, BPR top-30 candidates, the LLM ranker's
prompt) is written once; then each (code, method) pair scores it in its own process after a
warm-up batch, alternating, ``--repeats`` rounds. ``code`` is a ``src`` folder put first on
``PYTHONPATH`` (e.g. ``git worktree add /tmp/before eb7b2e4`` for the code before the shared
path existed):

    python benchmarks/llm_throughput_paired.py --before /tmp/before/src --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent

SCORE = r"""
import json, os, sys, time
import numpy as np, torch
torch.set_num_threads(2)
from debiasrec.lm.llm import CausalLM
method, path = sys.argv[1], sys.argv[2]
w = json.load(open(path))
lm = CausalLM().load()
lm.score_candidates(w["prompts"][:8], w["cands"][:8], method=method, batch_size=8)
t = time.perf_counter()
lp = lm.score_candidates(w["prompts"], w["cands"], method=method, batch_size=8)
dt = time.perf_counter() - t
n = sum(len(c) for c in w["cands"])
print(json.dumps({"seconds": dt, "cand_per_s": n / dt, "logprob_total": float(np.nansum(lp.sum)),
                  "load": os.getloadavg()[0]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="src folder of the code before")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import torch

    torch.set_num_threads(2)
    from llm_throughput import workload

    prompts, cands = workload(32, 30, "bpr")
    path = Path(tempfile.mkdtemp()) / "work.json"
    path.write_text(json.dumps({"prompts": prompts, "cands": cands}))
    after = str(HERE.parent / "src")
    runs = [
        ("before", args.before, "packed"),
        ("after", after, "packed"),
        ("after", after, "shared"),
    ]
    for rep in range(args.repeats):
        for name, src, method in runs:
            env = {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1"}
            out = subprocess.run([sys.executable, "-c", SCORE, method, str(path)], env=env,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            print(f"| {rep + 1} | {name} | {method} | {out.stdout.strip().splitlines()[-1]} |")


if __name__ == "__main__":
    main()
