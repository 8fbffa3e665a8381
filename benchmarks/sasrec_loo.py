"""SASRec on ML-100K, temporal leave-one-out, full ranking: debiasrec vs RecBole 1.2.1 (same split).

Three steps; the second runs in a RecBole 1.2.1 virtualenv (RecBole cannot be installed next to
debiasrec's pinned stack) and is skipped when that venv does not exist:

1. ``python benchmarks/sasrec_loo.py export DIR`` (debiasrec's env): the leave-one-out split of
   :func:`debiasrec.data.split.leave_one_out_split` (per user, by timestamp with row order
   breaking ties: last interaction test, second-to-last valid) written as ``DIR/split/*.parquet``
   and as the RecBole atomic file ``DIR/ml100k_loo/ml100k_loo.inter`` whose ``timestamp`` is
   each interaction's rank in its user's sequence, so RecBole's own ``LS: valid_and_test``
   split with ``order: TO`` is exactly the same split (checked in step 3).
2. ``<recbole venv>/bin/python benchmarks/sasrec_loo.py recbole DIR [--epochs N]``: RecBole's
   SASRec with its default hyper-parameters and the CE loss (``train_neg_sample_args: None``),
   early stopping on validation NDCG@10; then its raw full-ranking scores of every test user
   (its own test input: the last 50 items of train + valid) written to ``DIR/recbole_scores.npy``
   with the item-id order, and its own test metrics to ``DIR/recbole.json``.
3. ``python benchmarks/sasrec_loo.py ours DIR`` (``table DIR`` rebuilds the table from the last
   ``ours`` run's ``DIR/ours.json`` and RecBole's scores, without refitting): debiasrec's SASRec fitted on the same split,
   its inference history extended by the validation item (``extend_history``), and both
   libraries' scores evaluated by the same evaluator (debiasrec's ``evaluate_model``: train and
   valid items masked, full ranking over all items), plus BPR, iALS and EASE as non-sequential
   references on the same split. Writes a section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

MAX_LEN = 50


def export(folder: Path) -> None:
    import numpy as np

    from debiasrec.data import load_dataset
    from debiasrec.data.split import leave_one_out_split

    ds, _ = load_dataset("ml-100k")
    split = leave_one_out_split(ds)
    split.save(folder / "split")
    order = np.lexsort((np.arange(ds.n_interactions), ds.timestamps, ds.users))
    users = ds.users[order]
    starts = np.searchsorted(users, np.arange(ds.n_users))
    rank = np.arange(ds.n_interactions) - starts[users]
    out = folder / "ml100k_loo"
    out.mkdir(parents=True, exist_ok=True)
    uid = ds.user_vocab.take(users).to_numpy()
    iid = ds.item_vocab.take(ds.items[order]).to_numpy()
    with open(out / "ml100k_loo.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, i, r in zip(uid, iid, rank, strict=True):
            f.write(f"{u}\t{i}\t{r}\n")
    print(f"wrote {out} and {folder / 'split'}")


def recbole(folder: Path, epochs: int, threads: int) -> None:
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import numpy as np
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(threads)
    cfg = {
        "seed": 2020, "reproducibility": True, "use_gpu": False, "show_progress": False,
        "data_path": str(folder), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": MAX_LEN, "loss_type": "CE", "train_neg_sample_args": None,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                      "mode": "full"},
        "metrics": ["NDCG", "Recall", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
        "epochs": epochs, "stopping_step": 10, "checkpoint_dir": str(folder / "saved"),
        "log_wandb": False,
    }  # fmt: skip
    config = Config(model="SASRec", dataset="ml100k_loo", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = SASRec(config, train_data._dataset)
    trainer = Trainer(config, model)
    t = time.perf_counter()
    _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.perf_counter() - t
    result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    model.eval()
    uid_field = dataset.uid_field
    users, rows = [], []
    with torch.no_grad():
        for batch in test_data:
            inter = batch[0]
            scores = model.full_sort_predict(inter.to(model.device)).view(len(inter), -1)
            users.append(inter[uid_field].numpy())
            rows.append(scores.numpy().astype(np.float32))
    users_arr = np.concatenate(users)
    np.save(folder / "recbole_scores.npy", np.concatenate(rows))
    info = {
        "users": [str(x) for x in dataset.id2token(uid_field, users_arr)],
        "items": [str(x) for x in dataset.id2token(dataset.iid_field, np.arange(dataset.item_num))],
        "test": {k: float(v) for k, v in result.items()},
        "best_valid": {k: float(v) for k, v in best_valid.items()},
        "fit_s": fit_s, "epochs_run": len(trainer.train_loss_dict),
        "train_samples": len(train_data._dataset), "threads": threads, "max_epochs": epochs,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }  # fmt: skip
    (folder / "recbole.json").write_text(json.dumps(info))
    print(json.dumps({k: v for k, v in info.items() if k not in ("users", "items")}))


def ours(
    folder: Path, threads: int, write: bool, epochs: int | None, lr: float | None, refit: bool
) -> None:
    import pandas as pd
    import torch

    sys.path.insert(0, str(Path(__file__).parent))

    from debiasrec.data import load_dataset
    from debiasrec.data.split import split_from_frames
    from debiasrec.experiment.evaluate import EvalConfig, evaluate_model
    from debiasrec.metrics.leakage import leakage
    from debiasrec.models import model_class

    torch.set_num_threads(threads)
    ds, _ = load_dataset("ml-100k", sensitive=["gender", "age"])
    split = split_from_frames(
        ds, *(pd.read_parquet(folder / "split" / f"{p}.parquet") for p in ("train", "valid", "test"))
    )
    ecfg = EvalConfig(ks=[10], metrics=["ndcg", "recall", "mrr"], beyond=[], n_boot=0)
    keys = [("ndcg@10", "all"), ("recall@10", "all"), ("mrr@10", "all"),
            ("gap_ndcg@10", "gender"), ("gap_ndcg@10", "age")]  # fmt: skip

    def measure(score_fn, emb):  # noqa: ANN001, ANN202
        ev = evaluate_model(score_fn, split.train, split.valid, split.test, config=ecfg)
        r = ev.results.set_index(["metric", "group"])["value"]
        leak = float("nan") if emb is None else leakage(
            emb, ds.user_groups("gender"), folds=5, rng=1)["auc"]  # fmt: skip
        return [float(r[k]) for k in keys] + [leak]

    cache = folder / "ours.json"
    if not refit and cache.exists():  # mode "table": our rows from the last "ours" run
        saved = json.loads(cache.read_text())
        rows, load = [tuple(r) for r in saved["rows"]], saved["load"]
        return _table(folder, ds, rows, load, threads, measure, write)
    rows = []
    load = Path("/proc/loadavg").read_text().split()[:3]
    train_kw: dict = {}
    if epochs is not None:
        train_kw["epochs"] = epochs
    if lr is not None:
        train_kw["lr"] = lr
    sas_kw = {"train": train_kw} if train_kw else {}
    for name, kw in (("ials", {}), ("ease", {}), ("bpr", {}), ("sasrec", sas_kw)):
        t = time.perf_counter()
        model = model_class(name)(kw).fit(split.train, valid=split.valid, rng=0)
        fit_s = time.perf_counter() - t
        note = f"`{kw}`" if kw else "defaults"
        if name == "sasrec":
            h = model.history_
            note += f"; best epoch {h.best_epoch + 1} of {len(h.epochs)}; test reads train + valid"
            model.extend_history(split.valid)
        emb = model.user_embeddings() if model.has_embeddings else None
        rows.append((f"debiasrec {name}", *measure(model._score_block, emb), fit_s, note))
        print(rows[-1], flush=True)
    cache.write_text(json.dumps({"rows": rows, "load": load}))
    _table(folder, ds, rows, load, threads, measure, write)


def _table(folder, ds, rows, load, threads, measure, write) -> None:  # noqa: ANN001
    import numpy as np
    import pandas as pd
    from _results import write_section

    rb_json = folder / "recbole.json"
    rb_note = "RecBole was not run (no RecBole venv or no scores in DIR)."
    if rb_json.exists():
        info = json.loads(rb_json.read_text())
        raw = np.load(folder / "recbole_scores.npy")
        ucodes = ds.user_vocab.get_indexer(pd.Index(info["users"]).astype(ds.user_vocab.dtype))
        item_tokens = pd.Index(info["items"][1:]).astype(ds.item_vocab.dtype)  # 0 is [PAD]
        icodes = ds.item_vocab.get_indexer(item_tokens)
        if (ucodes < 0).any() or (icodes < 0).any():
            raise SystemExit("RecBole's ids do not map onto ML-100K's")
        full = np.full((ds.n_users, ds.n_items), -np.inf, dtype=np.float32)
        full[np.ix_(ucodes, icodes)] = raw[:, 1:]
        t = info["test"]
        rows.append(("RecBole 1.2.1 SASRec (CE)", *measure(lambda u: full[u], None),
                     info["fit_s"],
                     f"RecBole's own evaluator (no history masking): NDCG@10 "
                     f"{t.get('ndcg@10', float('nan')):.4f}, Recall@10 "
                     f"{t.get('recall@10', float('nan')):.4f}; {info['epochs_run']} epoch(s) run "
                     f"(max {info['max_epochs']}), {info['threads']} thread(s), load "
                     f"{' '.join(info['loadavg'])}"))  # fmt: skip
        rb_note = (
            f"RecBole: {info['train_samples']:,} training samples (one per prefix), its SASRec "
            "defaults (2 layers, 2 heads, hidden 64, inner 256, dropout 0.5, max length 50, "
            "batch 2048, Adam lr 1e-3), CE loss over all items (`train_neg_sample_args: None`)."
        )
    def cell(v: float) -> str:
        return "–" if np.isnan(v) else f"{v:.4f}"

    body = (
        "ML-100K, temporal leave-one-out (per user, by timestamp with row order breaking ties: "
        "last interaction test, second-to-last valid; identical for both libraries), full "
        "ranking over all 1,682 items with the user's train and valid items masked, one evaluator "
        "(debiasrec's) for both libraries' scores. SASRec reads the last 50 items of "
        "train + valid at test time. Gaps: max - min test NDCG@10 over gender / age groups; "
        "leakage: 5-fold CV AUC of a logistic-regression probe for gender on the user "
        f"embeddings. Model seed 0, {threads} torch thread(s); load average at start "
        f"{' '.join(load)} (fit seconds indicative only).\n\n"
        "| model | NDCG@10 | Recall@10 (= HR@10) | MRR@10 | gender gap | age gap | gender AUC "
        "(LR, embeddings) | fit s | notes |\n|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(f"| {r[0]} | " + " | ".join(cell(v) for v in r[1:7])
                    + f" | {r[7]:.0f} | {r[8]} |" for r in rows)
        + "\n\n" + rb_note
    )  # fmt: skip
    print(body)
    if write:
        write_section("SASRec on ML-100K leave-one-out vs RecBole 1.2.1 (same split)",
                      "python benchmarks/sasrec_loo.py " + " ".join(sys.argv[1:]), body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["export", "recbole", "ours", "table"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None, help="ours: SASRec learning rate")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.mode == "export":
        export(args.folder)
    elif args.mode == "recbole":
        recbole(args.folder, args.epochs or 300, args.threads)
    else:
        ours(args.folder, args.threads, args.write, args.epochs, args.lr, args.mode == "ours")


if __name__ == "__main__":
    main()
