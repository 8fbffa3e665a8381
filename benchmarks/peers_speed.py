"""Paired, interleaved whole-process timings of debiasrec against peer libraries on ML-100K.

Each pair runs the debiasrec job and the peer's job as two fresh processes, one after the other,
alternating which goes first, so both see the same machine load; every process is pinned to one
thread (torch, OpenMP, OpenBLAS, MKL). Reported per job: the whole-process wall time (interpreter
start, imports, data, fit) measured by this parent, and the fit time the child measures around
its ``fit`` call, with ``/proc/loadavg`` before each pair. Medians and ranges over pairs.

Jobs (a peer runs only where its virtualenv exists; this script installs nothing):

* ``ials``: debiasrec iALS (its defaults) vs implicit 0.7.3 ``AlternatingLeastSquares`` with the
  same cost (128 factors, 15 iterations, 3 CG steps; implicit's ``alpha=2`` is our ``alpha=1``,
  ``regularization=20``), on the identical training matrix (ML-100K, random split seed 2020).
* ``bpr``: debiasrec BPR (defaults, early stopping on validation) vs RecBole 1.2.1 BPR (its
  defaults, early stopping on validation MRR@10), each on its own per-user random 8:1:1 split of
  ML-100K, from process start to the end of training (best epoch restored).
* ``ease``: in one process, EASE's fit (defaults) interleaved with the closed-form floor: one
  float32 Cholesky factorisation + inverse of the same 1682 x 1682 Gram matrix.

    python benchmarks/peers_speed.py [--pairs 5] [--jobs ials,bpr,ease] [--write]
        [--implicit-venv /work/peers/implicit] [--recbole-venv /work/peers/recbole]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

CHILD_OURS_IALS = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, scipy.sparse as sp, torch
torch.set_num_threads(1)
from debiasrec.data.dataset import Dataset
import pandas as pd
d = np.load(sys.argv[1])
X = sp.csr_matrix((d["data"], d["indices"], d["indptr"]), shape=tuple(d["shape"]))
u = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
ds = Dataset(u, X.indices, user_vocab=pd.Index(np.arange(X.shape[0])),
             item_vocab=pd.Index(np.arange(X.shape[1])))
from debiasrec.models import IALS
t = time.perf_counter(); IALS().fit(ds, rng=0); s = time.perf_counter() - t
print(json.dumps({"fit_s": s}))
"""

CHILD_IMPLICIT = """
import json, sys, time
import numpy as np, scipy.sparse as sp
from threadpoolctl import threadpool_limits
from implicit.cpu.als import AlternatingLeastSquares
d = np.load(sys.argv[1])
X = sp.csr_matrix((d["data"], d["indices"], d["indptr"]), shape=tuple(d["shape"]))
with threadpool_limits(1):
    m = AlternatingLeastSquares(factors=128, regularization=20.0, alpha=2.0, iterations=15,
                                random_state=0, num_threads=1, calculate_training_loss=False)
    t = time.perf_counter(); m.fit(X, show_progress=False); s = time.perf_counter() - t
print(json.dumps({"fit_s": s}))
"""

CHILD_OURS_BPR = """
import json, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from debiasrec.data import load_dataset, random_split
from debiasrec.models import BPR
ds, _ = load_dataset("ml-100k")
sp = random_split(ds, rng=2020)
t = time.perf_counter(); m = BPR().fit(sp.train, valid=sp.valid, rng=0); s = time.perf_counter() - t
print(json.dumps({"fit_s": s, "epochs": len(m.history_.epochs), "best_epoch": m.history_.best_epoch + 1}))
"""

CHILD_RECBOLE_BPR = """
import json, os, time, tempfile
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
import torch
torch.set_num_threads(1)
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import BPR
from recbole.trainer import Trainer
from recbole.utils import init_seed
cfg = {"seed": 2020, "reproducibility": True, "use_gpu": False, "show_progress": False,
       "checkpoint_dir": tempfile.mkdtemp(), "log_wandb": False,
       "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO",
                     "mode": "full"}}
config = Config(model="BPR", dataset="ml-100k", config_dict=cfg)
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train, valid, test = data_preparation(config, dataset)
model = BPR(config, train._dataset)
trainer = Trainer(config, model)
t = time.perf_counter(); trainer.fit(train, valid, saved=True, show_progress=False)
s = time.perf_counter() - t
print(json.dumps({"fit_s": s, "epochs": len(trainer.train_loss_dict)}))
"""


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _run(python: str, code: str, args: list[str], cwd: str) -> dict:
    env = {**os.environ, **ONE_THREAD, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    out = subprocess.run([python, "-c", code, *args], env=env, cwd=cwd, capture_output=True,
                         text=True, check=False)  # fmt: skip
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_s"] = wall
    return res


def paired(name_a: str, job_a: tuple, name_b: str, job_b: tuple, pairs: int) -> list[dict]:
    rows = []
    for p in range(pairs):
        load = _load()
        order = [(name_a, job_a), (name_b, job_b)] if p % 2 == 0 else [(name_b, job_b), (name_a, job_a)]
        res = {}
        for name, job in order:
            res[name] = _run(*job)
            print(f"pair {p}: {name} {res[name]}  (load before pair: {load})", flush=True)
        rows.append({"pair": p, "load": load, **res})
    return rows


def _med(rows: list[dict], name: str, key: str) -> tuple[float, float, float]:
    import statistics

    vals = [r[name][key] for r in rows]
    return statistics.median(vals), min(vals), max(vals)


def _fmt(t: tuple[float, float, float], unit: str = "s") -> str:
    return f"{t[0]:.2f} {unit} ({t[1]:.2f}-{t[2]:.2f})"


def ease_pairs(pairs: int) -> tuple[list[dict], str]:
    import numpy as np
    import torch

    from debiasrec.data import load_dataset, random_split
    from debiasrec.models import EASE

    torch.set_num_threads(1)
    ds, _ = load_dataset("ml-100k")
    train = random_split(ds, rng=2020).train
    x = train.csr()
    g0 = torch.from_numpy((x.T @ x).toarray().astype(np.float32))
    rows = []
    for p in range(pairs):
        load = _load()
        res = {}
        for which in (("ease", "floor") if p % 2 == 0 else ("floor", "ease")):
            t = time.perf_counter()
            if which == "ease":
                EASE().fit(train)
            else:
                g = g0.clone()
                g.diagonal().add_(300.0)
                torch.cholesky_inverse(torch.linalg.cholesky(g))
            res[which] = {"fit_s": time.perf_counter() - t}
        rows.append({"pair": p, "load": load, **res})
        print(rows[-1], flush=True)
    return rows, f"{x.shape[1]} items"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--jobs", default="ials,ease,bpr")
    ap.add_argument("--implicit-venv", default="/work/peers/implicit")
    ap.add_argument("--recbole-venv", default="/work/peers/recbole")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    jobs = args.jobs.split(",")
    ours_py = sys.executable
    src = str(HERE.parent / "src")
    os.environ["PYTHONPATH"] = src + os.pathsep + os.environ.get("PYTHONPATH", "")
    lines, notes = [], []
    tmp = tempfile.mkdtemp()
    if "ials" in jobs:
        import numpy as np

        from debiasrec.data import load_dataset, random_split

        x = random_split(load_dataset("ml-100k")[0], rng=2020).train.csr()
        npz = str(Path(tmp) / "train.npz")
        np.savez(npz, data=x.data, indices=x.indices, indptr=x.indptr, shape=np.array(x.shape))
        imp = Path(args.implicit_venv) / "bin" / "python"
        if imp.exists():
            rows = paired("debiasrec iALS", (ours_py, CHILD_OURS_IALS, [npz], tmp),
                          "implicit ALS", (str(imp), CHILD_IMPLICIT, [npz], tmp), args.pairs)
            a, b = _med(rows, "debiasrec iALS", "fit_s"), _med(rows, "implicit ALS", "fit_s")
            wa, wb = _med(rows, "debiasrec iALS", "wall_s"), _med(rows, "implicit ALS", "wall_s")
            ratio = sorted(r["debiasrec iALS"]["fit_s"] / r["implicit ALS"]["fit_s"] for r in rows)
            lines.append(f"| iALS, 128 factors, 15 iterations, 3 CG steps (ML-100K train) | "
                         f"{_fmt(a)} | {_fmt(wa)} | implicit 0.7.3 ALS: {_fmt(b)} | {_fmt(wb)} | "
                         f"{ratio[len(ratio) // 2]:.2f} ({ratio[0]:.2f}-{ratio[-1]:.2f}) | "
                         + ", ".join(r["load"].split()[0] for r in rows) + " |")
        else:
            notes.append(f"implicit: no venv at {args.implicit_venv}, not run")
    if "ease" in jobs:
        rows, what = ease_pairs(args.pairs)
        a, b = _med(rows, "ease", "fit_s"), _med(rows, "floor", "fit_s")
        ratio = sorted(r["ease"]["fit_s"] / r["floor"]["fit_s"] for r in rows)
        lines.append(f"| EASE fit, reg 300 ({what}; Gram + Cholesky inverse + B) | {_fmt(a)} | – "
                     f"| floor: one float32 Cholesky inverse of the {what} Gram: {_fmt(b)} | – | "
                     f"{ratio[len(ratio) // 2]:.2f} ({ratio[0]:.2f}-{ratio[-1]:.2f}) | "
                     + ", ".join(r["load"].split()[0] for r in rows) + " |")
    if "bpr" in jobs:
        rb = Path(args.recbole_venv) / "bin" / "python"
        if rb.exists():
            rows = paired("debiasrec BPR", (ours_py, CHILD_OURS_BPR, [], tmp),
                          "RecBole BPR", (str(rb), CHILD_RECBOLE_BPR, [], tmp), args.pairs)
            a, b = _med(rows, "debiasrec BPR", "fit_s"), _med(rows, "RecBole BPR", "fit_s")
            wa, wb = _med(rows, "debiasrec BPR", "wall_s"), _med(rows, "RecBole BPR", "wall_s")
            ratio = sorted(r["debiasrec BPR"]["wall_s"] / r["RecBole BPR"]["wall_s"] for r in rows)
            ep_a = [r["debiasrec BPR"]["fit_s"] / r["debiasrec BPR"]["epochs"] for r in rows]
            ep_b = [r["RecBole BPR"]["fit_s"] / r["RecBole BPR"]["epochs"] for r in rows]
            lines.append(
                f"| BPR to the end of early stopping (defaults; fit s / epochs incl. validation: "
                f"{sorted(ep_a)[len(ep_a) // 2] * 1000:.0f} ms vs {sorted(ep_b)[len(ep_b) // 2] * 1000:.0f} ms"
                f"; epochs {rows[0]['debiasrec BPR']['epochs']} vs {rows[0]['RecBole BPR']['epochs']}) | "
                f"{_fmt(a)} | {_fmt(wa)} | RecBole 1.2.1 BPR: {_fmt(b)} | {_fmt(wb)} | "
                f"{ratio[len(ratio) // 2]:.2f} ({ratio[0]:.2f}-{ratio[-1]:.2f}) (whole process) | "
                + ", ".join(r["load"].split()[0] for r in rows) + " |"
            )  # fmt: skip
        else:
            notes.append(f"RecBole: no venv at {args.recbole_venv}, not run")
    loads = [float(x.split("|")[-2].split(",")[0]) for x in lines if x.count("|") > 6]
    final = all(v <= 1.5 for v in loads) if loads else False
    body = (
        f"{args.pairs} alternating pairs per row, 1 thread everywhere, fresh processes. Ratio = "
        "debiasrec / peer per pair (fit time unless noted), median (range). "
        + ("" if final else "**Not final: the machine was loaded (1-minute load averages in the "
           "last column; other engineers share the 2 cores); to be re-run on a quiet machine.** ")
        + "\n\n| job | debiasrec fit | debiasrec whole process | peer fit | peer whole process "
        "| ratio | 1-min load before each pair |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(lines) + ("\n\n" + "; ".join(notes) if notes else "")
    )  # fmt: skip
    print(body)
    if args.write:
        write_section = __import__("_results").write_section
        write_section("Paired speed vs implicit and RecBole (ML-100K, 1 thread)",
                      "python benchmarks/peers_speed.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
