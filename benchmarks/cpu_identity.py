"""CPU bit-identity check: the same seeded runs give the same bytes with two code versions.

Runs (all on the CPU):

1. BPR on ML-100K (default config, seed 0, early stopping): SHA-256 of every user's scores,
   the best epoch, the validation NDCG@10 and the fit time.
2. A small multi-model experiment on ML-100K (BPR, LightGCN, Mult-VAE with few epochs; an
   adversary, FOCF and a multi-task head on BPR; a GAN-balanced BPR): SHA-256 of its
   ``results.parquet`` values and of the saved recommendations.

Compare two code versions by running the script with each on ``PYTHONPATH``::

    PYTHONPATH=/tmp/base/src python benchmarks/cpu_identity.py --out /tmp/before.json
    PYTHONPATH=$PWD/src     python benchmarks/cpu_identity.py --out /tmp/after.json
    python benchmarks/cpu_identity.py --compare /tmp/before.json /tmp/after.json

The script passes no device setting, so it also checks that ``device = "auto"`` on a machine
without CUDA is the old CPU path. It runs with one torch thread: LightGCN's sparse product on the
CPU (``torch.sparse.mm`` on a COO matrix) is not bit-reproducible with more threads, with any
version of the code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

EXPERIMENT = """
name = "cpu-identity"
seeds = [0]
[data]
source = "ml-100k"
sensitive = ["gender"]
[eval]
ks = [10]
n_boot = 50
[[models]]
kind = "bpr"
params = { train = { epochs = 12, eval_every = 4 } }
[[models]]
kind = "lightgcn"
params = { train = { epochs = 4, eval_every = 2 } }
[[models]]
kind = "multvae"
params = { train = { epochs = 6, eval_every = 3 } }
[[methods]]
name = "bpr-adv"
model = "bpr"
inproc = [{ kind = "adversarial", attrs = ["gender"], strength = 0.5, adv_steps = 2 }]
[[methods]]
name = "bpr-focf"
model = "bpr"
inproc = [{ kind = "focf", attr = "gender", weight = 0.5 }]
[[methods]]
name = "bpr-mt"
model = "bpr"
inproc = [{ kind = "multitask", tasks = [{ kind = "genre" }] }]
[[methods]]
name = "bpr-gan"
model = "bpr"
pre = [{ kind = "gan_balance", attr = "gender", steps = 20, fidelity = false }]
"""


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def run(out: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    import tomllib

    from debiasrec.data import load_dataset
    from debiasrec.data.split import random_split
    from debiasrec.experiment.config import ExperimentConfig
    from debiasrec.experiment.runner import run_experiment
    from debiasrec.models import BPR

    res: dict = {"pythonpath": sys.path[:3]}
    cfg = ExperimentConfig.model_validate(tomllib.loads(EXPERIMENT))  # fail fast
    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=2020)
    t = time.perf_counter()
    model = BPR().fit(split.train, valid=split.valid, rng=0)
    res["bpr_fit_s"] = round(time.perf_counter() - t, 2)
    scores = model.score(np.arange(split.train.n_users))
    res["bpr_scores_sha"] = sha(scores)
    res["bpr_best_epoch"] = model.history_.best_epoch
    res["bpr_valid_ndcg10"] = model.history_.best_value
    t = time.perf_counter()
    er = run_experiment(cfg)
    res["experiment_s"] = round(time.perf_counter() - t, 2)
    df = er.results.sort_values(["method", "seed", "metric", "group"]).reset_index(drop=True)
    res["results_sha"] = sha(df[["value", "ci_low", "ci_high"]].to_numpy(np.float64))
    res["results_rows"] = len(df)
    res["recs_sha"] = {
        k: sha(np.concatenate([f[["rank", "score"]].to_numpy(np.float64) for f in v]))
        for k, v in sorted(er.recs.items())
    }
    res["ndcg10"] = {
        m: float(g.value.iloc[0])
        for m, g in df[(df.metric == "ndcg@10") & (df.group == "all")].groupby("method")
    }
    out.write_text(json.dumps(res, indent=1))
    return res


def compare(a: Path, b: Path) -> int:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    keys = ["bpr_scores_sha", "bpr_best_epoch", "bpr_valid_ndcg10", "results_sha",
            "results_rows", "recs_sha", "ndcg10"]  # fmt: skip
    bad = [k for k in keys if x.get(k) != y.get(k)]
    for k in keys:
        print(f"{k:18s} {'same' if k not in bad else 'DIFFERENT'}: {x.get(k)}"
              + ("" if k not in bad else f" vs {y.get(k)}"))  # fmt: skip
    print(f"bpr fit s: {x['bpr_fit_s']} vs {y['bpr_fit_s']}; experiment s: "
          f"{x['experiment_s']} vs {y['experiment_s']}")  # fmt: skip
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("cpu_identity.json"))
    ap.add_argument("--compare", nargs=2, type=Path)
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    print(json.dumps(run(args.out), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
