"""BPR epoch time of RecBole 1.2.1 on the scaling benchmark's data (ML-100K, 1M, 5M, 20M).

RecBole cannot be installed next to debiasrec's pinned stack (it needs its own venv), so this runs
in two steps:

1. with debiasrec's environment, write the synthetic datasets of ``benchmarks/scaling.py`` (same
   generator, sizes and seed) as RecBole atomic files::

       python benchmarks/recbole_scale.py export DIR --sizes 1e6 5e6 2e7

2. with a RecBole 1.2.1 environment, time one BPR training epoch per dataset (and ML-100K from
   RecBole's own package) and print one JSON line per run::

       /path/to/recbole-venv/bin/python benchmarks/recbole_scale.py run DIR --threads 2 \
           --dim 128 --batch 4096 > recbole_scale.jsonl

Timed: ``create_dataset`` + ``data_preparation`` (load, remap, per-user random 8:1:1 split,
samplers) as "data", and exactly one ``trainer._train_epoch`` (forward, backward, dense Adam
step, negative sampling) as "epoch". Validation is not run. The run mode imports only RecBole,
torch, numpy and pandas.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def export(folder: Path, sizes: list[int], seed: int = 0) -> None:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent))
    from scaling import synthetic_config  # the very datasets of the scaling table

    from debiasrec.data.synthetic import generate

    for n in sizes:
        name = f"syn{n // 1_000_000}m"
        ds, _ = generate(synthetic_config(n), rng=seed)
        out = folder / name
        out.mkdir(parents=True, exist_ok=True)
        csr = ds.csr()
        users = np.repeat(np.arange(ds.n_users), np.diff(csr.indptr))
        with open(out / f"{name}.inter", "w") as f:
            f.write("user_id:token\titem_id:token\n")
            block = 1_000_000
            for lo in range(0, len(users), block):
                hi = min(lo + block, len(users))
                rows = np.column_stack([users[lo:hi], csr.indices[lo:hi]])
                np.savetxt(f, rows, fmt="%d", delimiter="\t")
        print(f"wrote {out} ({len(users):,} interactions, {ds.n_users:,} users)", flush=True)


def run(folder: Path, names: list[str], threads: int, dim: int, batch: int) -> None:
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(threads)
    for name in names:
        cfg = {
            "seed": 0,
            "reproducibility": True,
            "use_gpu": False,
            "show_progress": False,
            "embedding_size": dim,
            "train_batch_size": batch,
            "epochs": 1,
            "eval_args": {
                "split": {"RS": [0.8, 0.1, 0.1]},
                "group_by": "user",
                "order": "RO",
                "mode": "full",
            },  # fmt: skip
            "checkpoint_dir": str(folder / "saved"),
            "log_wandb": False,
        }
        if name != "ml-100k":
            cfg["data_path"] = str(folder)
            cfg["load_col"] = {"inter": ["user_id", "item_id"]}
        config = Config(model="BPR", dataset=name, config_dict=cfg)
        init_seed(config["seed"], config["reproducibility"])
        t = time.perf_counter()
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        data_s = time.perf_counter() - t
        model = BPR(config, train_data._dataset)
        trainer = Trainer(config, model)
        t = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch_idx=0, show_progress=False)
        epoch_s = time.perf_counter() - t
        print(json.dumps({
            "dataset": name, "interactions": int(dataset.inter_num), "users": int(dataset.user_num),
            "items": int(dataset.item_num), "train": len(train_data._dataset),
            "dim": dim, "batch": batch, "threads": threads,
            "data_s": round(data_s, 2), "epoch_s": round(epoch_s, 2), "loss": float(loss),
            "peak_rss_mib_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }), flush=True)  # fmt: skip
        del dataset, train_data, model, trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["export", "run"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 5e6, 2e7])
    ap.add_argument("--datasets", nargs="+", default=None, help="run: names (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    if args.mode == "export":
        export(args.folder, [int(s) for s in args.sizes])
    else:
        names = args.datasets or ["ml-100k"] + sorted(
            (p.name for p in args.folder.glob("syn*m") if p.is_dir()),
            key=lambda s: int(s[3:-1]),
        )
        run(args.folder, names, args.threads, args.dim, args.batch)


if __name__ == "__main__":
    main()
