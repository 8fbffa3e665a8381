"""Fairness without levelling down on ML-100K: group gaps, calibration and leakage frontiers.

Protocol: ML-100K, all ratings as implicit positives, one per-user random 8:1:1 split (seed 2020),
model seeds 0..4 on that split, full ranking with training (and, on test, validation) items
masked, NDCG@10. Every strength, weight and epoch is chosen on validation data only (the
self-calibration targets are validation targets); the test split is read to evaluate. Base models:
BPR (defaults) and iALS (defaults, the strongest base model available: 0.33 NDCG@10 on this split).

Parts (each writes into ``benchmarks/_out/fairness/``, stage-cached; ``--part report`` reads them
and writes the RESULTS.md section and the Pareto plots under ``docs/fairness/``):

* ``experiment``: one ``debiasrec`` experiment (``run_experiment``) with every group-gap and
  calibration method on both base models; the result folder holds ``levelling.parquet`` (who
  paid for each gap change, paired over each group's users, seed-averaged).
* ``splits``: robustness of the gender methods over random splits (split seed = model seed,
  ``--seeds``), since one split's test gap is a noisy estimate of the gap;
* ``milp``: the local search's distance from the exact (MILP) calibrated optimum on a user sample;
* ``leakage``: gender leakage of the user representations under adversarial removal, on BPR and
  on the history-only TextTwoTower, probed by fresh attackers (LR and MLP, probe seed 7) in two
  protocols: *all users* (the adversary trained with every user's label; the attacker's CV folds
  are those same users) and *held-out users* (the adversary sees the labels of a random half of
  the users only; the attacker is cross-validated on the other half).

    python benchmarks/fairness_frontier.py --part experiment [--seeds 0,1,2,3,4]
    python benchmarks/fairness_frontier.py --part leakage [--seeds 0,1,2,3,4]
    python benchmarks/fairness_frontier.py --part splits [--seeds 0,1,2,3,4]
    python benchmarks/fairness_frontier.py --part milp [--milp-users 30]
    python benchmarks/fairness_frontier.py --part report [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))

OUT = Path(__file__).parent / "_out" / "fairness"
DOCS = Path(__file__).parent.parent / "docs" / "fairness"
SPLIT_SEED = 2020
K = 10
TARGET_AUC = 0.53
PROBE_SEED = 7

GAP_G = "gap_ndcg:gender <= 0.3x"
GAP_A = "gap_ndcg:age <= 0.3x"
CKL = "miscalibration <= 0.5x"
# calibrated_dcg reaches the C_KL target at small strengths: search [0, 0.5] (same grid size)
DCG_CAL = {"target": CKL, "hi": 0.5}


def _post_entries() -> list[dict[str, Any]]:
    """Post-processing on a base model's scores: self-calibrated and on a strength grid."""
    return [
        {"kind": "group_fair", "attr": "gender", "label": "gf-g", "self_calibrate": {"target": GAP_G}},
        {"kind": "group_fair", "attr": "gender", "label": "gf-g", "sweep": [0.25, 0.5, 0.75, 1.0]},
        {"kind": "group_fair", "attr": "age", "label": "gf-age", "self_calibrate": {"target": GAP_A}},
        {"kind": "group_fair", "attr": "age", "label": "gf-age", "sweep": [0.25, 0.5, 0.75, 1.0]},
        {"kind": "calibrated", "label": "steck", "self_calibrate": {"target": CKL}},
        {"kind": "calibrated", "label": "steck", "sweep": [0.2, 0.4, 0.6, 0.8]},
        {"kind": "calibrated", "order": "score", "label": "steck-sorted", "self_calibrate": {"target": CKL}},
        {"kind": "calibrated", "order": "score", "label": "steck-sorted", "sweep": [0.4, 0.6, 0.8]},
        {"kind": "calibrated_dcg", "label": "cal-dcg", "self_calibrate": DCG_CAL},
        {"kind": "calibrated_dcg", "label": "cal-dcg", "sweep": [0.05, 0.1, 0.2, 0.4]},
        {"kind": "calibrated_dcg", "search": "greedy", "label": "cal-dcg-greedy", "self_calibrate": DCG_CAL},
        {"kind": "calibrated_dcg", "n_candidates": 200, "label": "cal-dcg-200", "self_calibrate": DCG_CAL},
    ]  # fmt: skip


def _closing(attr: str) -> list[dict[str, Any]]:
    """Group-fair re-ranking after a levelling-up method (gap target on validation)."""
    target = GAP_G if attr == "gender" else GAP_A
    return [
        {"kind": "group_fair", "attr": attr, "label": "gf", "self_calibrate": {"target": target}}
    ]


def methods(models: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "bpr" in models:
        act = {"kind": "activity_reweight", "beta": 0.5}
        dro = {"kind": "group_dro", "attr": "gender", "eta": 0.01}
        out += [
            {"name": "bpr-post", "model": "bpr", "post": _post_entries()},
            {"name": "bpr-act", "model": "bpr", "pre": [act]},
            {"name": "bpr-reweight", "model": "bpr", "pre": [{"kind": "group_reweight", "attr": "gender"}]},
            {"name": "bpr-dro", "model": "bpr", "inproc": [dro]},
            {"name": "bpr-act-dro", "model": "bpr", "pre": [act], "inproc": [dro], "post": _closing("gender")},
            {"name": "bpr-gv", "model": "bpr", "inproc": [{"kind": "group_validation", "attr": "gender", "reweight_eta": 1.0}]},
            {
                "name": "bpr-worst",
                "model": "bpr",
                "params": {"train": {"select_metric": f"valid_worst_ndcg@{K}_gender"}},
                "inproc": [{"kind": "group_validation", "attr": "gender"}],
            },
            {"name": "bpr-dro-act", "model": "bpr", "inproc": [{"kind": "group_dro", "activity": True, "eta": 0.01}]},
            {"name": "bpr-dro-age", "model": "bpr", "inproc": [{"kind": "group_dro", "attr": "age", "eta": 0.01}], "post": _closing("age")},
        ]  # fmt: skip
    if "ials" in models:
        act = {"kind": "activity_reweight", "beta": 0.5}
        rw = {"kind": "group_reweight", "attr": "gender"}
        out += [
            {"name": "ials-post", "model": "ials", "post": _post_entries()},
            {"name": "ials-act", "model": "ials", "pre": [act]},
            {"name": "ials-reweight", "model": "ials", "pre": [rw], "post": _closing("gender")},
            {"name": "ials-act-reweight", "model": "ials", "pre": [act, rw], "post": _closing("gender")},
            {"name": "ials-reweight-age", "model": "ials", "pre": [{"kind": "group_reweight", "attr": "age"}], "post": _closing("age")},
        ]  # fmt: skip
    return out


def experiment_config(seeds: list[int], models: list[str]) -> Any:
    from debiasrec.experiment.config import ExperimentConfig

    return ExperimentConfig.model_validate(
        {
            "name": "fairness-frontier",
            "data": {"source": "ml-100k", "sensitive": ["gender", "age"]},
            "split": {"method": "random", "ratios": [0.8, 0.1, 0.1], "seed": SPLIT_SEED},
            "models": [{"kind": m} for m in models],
            "methods": methods(models),
            "eval": {
                "ks": [K],
                "metrics": ["ndcg", "miscalibration", "leakage"],
                "attrs": ["gender", "age"],
                "n_boot": 500,
            },
            "seeds": seeds,
            "explain_users": 0,
        }
    )


def part_experiment(args: argparse.Namespace) -> None:
    from debiasrec.experiment.runner import run_experiment

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    cfg = experiment_config(seeds, models)
    t0 = time.perf_counter()
    load = Path("/proc/loadavg").read_text().split()[:3]
    result = run_experiment(
        cfg,
        OUT / args.run,
        cache=OUT / "cache",
        on_event=lambda m: print(f"[{time.perf_counter() - t0:7.0f}s] {m}", flush=True),
    )
    meta = {
        "seconds": time.perf_counter() - t0,
        "load_start": load,
        "load_end": Path("/proc/loadavg").read_text().split()[:3],
        "stages": result.stages.totals(),
    }
    (OUT / f"{args.run}_meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta, indent=1))


def splits_config(seed: int) -> Any:
    """Robustness check: the gender methods on split ``seed`` with model seed ``seed``."""
    from debiasrec.experiment.config import ExperimentConfig

    act = {"kind": "activity_reweight", "beta": 0.5}
    gf = [
        {"kind": "group_fair", "attr": "gender", "label": "gf", "self_calibrate": {"target": GAP_G}}
    ]
    return ExperimentConfig.model_validate(
        {
            "name": f"fairness-splits-{seed}",
            "data": {"source": "ml-100k", "sensitive": ["gender", "age"]},
            "split": {"method": "random", "ratios": [0.8, 0.1, 0.1], "seed": seed},
            "models": [{"kind": "bpr"}, {"kind": "ials"}],
            "methods": [
                {"name": "bpr-post", "model": "bpr", "post": gf},
                {"name": "bpr-act-dro", "model": "bpr", "pre": [act], "inproc": [{"kind": "group_dro", "attr": "gender", "eta": 0.01}], "post": gf},
                {"name": "ials-post", "model": "ials", "post": gf},
                {"name": "ials-reweight", "model": "ials", "pre": [{"kind": "group_reweight", "attr": "gender"}], "post": gf},
            ],
            "eval": {"ks": [K], "metrics": ["ndcg"], "attrs": ["gender"], "n_boot": 500},
            "seeds": [seed],
            "explain_users": 0,
        }
    )  # fmt: skip


def part_splits(args: argparse.Namespace) -> None:
    from debiasrec.experiment.runner import run_experiment

    torch.set_num_threads(1)
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        run_experiment(
            splits_config(seed),
            OUT / f"split{seed}",
            cache=OUT / "cache",
            on_event=lambda m, t0=t0: print(f"[{time.perf_counter() - t0:7.0f}s] {m}", flush=True),
        )


def part_milp(args: argparse.Namespace) -> None:
    """How far the greedy and the local search are from the MILP optimum (a user sample)."""
    from debiasrec.data import load_dataset, random_split
    from debiasrec.debias.post import CalibratedDCGReranker, RerankContext, candidates
    from debiasrec.debias.post.calibrated_dcg import calibrated_dcg_gap
    from debiasrec.models import BPR
    from debiasrec.models.base import Recs

    torch.set_num_threads(1)
    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=SPLIT_SEED)
    model = BPR().fit(split.train, valid=split.valid, rng=0)
    ctx = RerankContext.from_datasets(split.train, split.valid)
    vusers = np.flatnonzero(split.valid.user_counts() > 0)
    tusers = np.flatnonzero(split.test.user_counts() > 0)
    vcand = candidates(model.score, vusers, n=100, exclude=[split.train.csr()])
    cand = candidates(model.score, tusers, n=100, exclude=[split.train.csr(), split.valid.csr()])
    pick = np.sort(
        np.random.default_rng(0).choice(len(tusers), size=args.milp_users, replace=False)
    )
    sub = Recs(cand.users[pick], cand.items[pick], cand.scores[pick])
    rows = []
    for lam in (0.1, 0.3):
        r = CalibratedDCGReranker(strength=lam, k=K, milp_time_limit=60.0).fit(ctx, vcand)
        t = time.perf_counter()
        gap = calibrated_dcg_gap(r, sub, ctx)
        rows.append(
            {"strength": lam, "users": len(pick), "seconds": time.perf_counter() - t, **gap}
        )
        print(rows[-1], flush=True)
    pd.DataFrame(rows).to_parquet(OUT / "milp.parquet", index=False)


# ---------------------------------------------------------------------------------- leakage
def _masked(train: Any, hidden: np.ndarray, attr: str = "gender") -> Any:
    """``train`` with ``attr`` missing for the ``hidden`` user codes (labels the adversary
    never sees)."""
    table = train.user_table.copy()
    col = table[attr].astype(object)
    col.iloc[hidden] = None
    table[attr] = col
    return train.replace(user_table=table)


def part_leakage(args: argparse.Namespace) -> None:
    from debiasrec.data import load_dataset, random_split
    from debiasrec.debias.inproc import Adversarial
    from debiasrec.experiment.evaluate import EvalConfig, evaluate_model
    from debiasrec.metrics.leakage import leakage
    from debiasrec.models import BPR, TextTwoTower

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=SPLIT_SEED)
    gender = ds.user_groups("gender")
    codes = np.asarray(gender.codes)
    rows_path = OUT / "leakage.parquet"
    done = pd.read_parquet(rows_path) if rows_path.exists() else pd.DataFrame()
    rows = [] if done.empty else done.to_dict("records")
    have = {(r["model"], r["protocol"], r["seed"]) for r in rows}
    sel = {"select_constraint": {"leak_auc_gender": TARGET_AUC}}

    def probe(z: np.ndarray, users: np.ndarray) -> dict[str, float]:
        lab = pd.Categorical.from_codes(codes[users], categories=gender.categories)
        return {
            "auc_lr": float(leakage(z[users], lab, rng=PROBE_SEED)["auc"]),
            "auc_mlp": float(leakage(z[users], lab, probe="mlp", rng=PROBE_SEED)["auc"]),
        }

    def ndcg(model: Any) -> float:
        ev = evaluate_model(
            model.score_tensor, split.train, split.valid, split.test,
            config=EvalConfig(ks=[K], metrics=["ndcg"], attrs=[], n_boot=0),
        )  # fmt: skip
        return float(ev.results.set_index(["metric", "group"])["value"][(f"ndcg@{K}", "all")])

    def t2t(**kw: Any) -> Any:
        cache = {"cache_dir": args.cache} if args.cache else {}
        return TextTwoTower(profile=False, **cache, **kw)

    variants = [
        ("BPR", lambda: BPR(), False),
        ("BPR + Adversarial(λ=0.02)", lambda: BPR(train=sel, strategies=[Adversarial(attrs=["gender"], strength=0.02)]), True),
        ("BPR + Adversarial(λ=0.05)", lambda: BPR(train=sel, strategies=[Adversarial(attrs=["gender"], strength=0.05)]), True),
        ("TextTwoTower (history only)", lambda: t2t(), False),
        ("TextTwoTower (history only) + Adversarial(λ=0.1)", lambda: t2t(train=sel, strategies=[Adversarial(attrs=["gender"], strength=0.1)]), True),
        ("TextTwoTower (history only) + Adversarial(λ=1)", lambda: t2t(train=sel, strategies=[Adversarial(attrs=["gender"], strength=1.0)]), True),
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    hidden = np.sort(rng.permutation(ds.n_users)[ds.n_users // 2 :])
    for name, make, adversarial in variants:
        protocols = ["all users", "held-out users"] if adversarial else ["all users"]
        for protocol in protocols:
            for seed in seeds:
                if (name, protocol, seed) in have:
                    continue
                train = split.train if protocol == "all users" else _masked(split.train, hidden)
                t = time.perf_counter()
                model = make().fit(train, valid=split.valid, rng=seed)
                fit_s = time.perf_counter() - t
                z = model.user_embeddings()
                row: dict[str, Any] = {
                    "model": name,
                    "protocol": protocol,
                    "seed": seed,
                    "ndcg": ndcg(model),
                    "fit_s": fit_s,
                    "selection": model.history_.selection if adversarial else "metric",
                    "load": Path("/proc/loadavg").read_text().split()[0],
                }
                row.update(probe(z, np.arange(ds.n_users)))
                held = probe(z, hidden)
                row["auc_lr_heldout"], row["auc_mlp_heldout"] = held["auc_lr"], held["auc_mlp"]
                rows.append(row)
                print(
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
                    flush=True,
                )
                pd.DataFrame(rows).to_parquet(rows_path, index=False)


# ---------------------------------------------------------------------------------- report
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--part", choices=["experiment", "leakage", "splits", "milp", "report"], required=True
    )
    ap.add_argument("--milp-users", type=int, default=30)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--models", default="bpr,ials")
    ap.add_argument("--cache", default=None, help="TextTwoTower embedding cache")
    ap.add_argument(
        "--run", default="run", help="result folder name under benchmarks/_out/fairness"
    )
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    # Library warnings (degenerate groups, probe folds) are expected on small groups; they are
    # recorded by the runner, not printed for every seed.
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.part == "experiment":
        part_experiment(args)
    elif args.part == "leakage":
        part_leakage(args)
    elif args.part == "splits":
        part_splits(args)
    elif args.part == "milp":
        part_milp(args)
    else:
        from _fairness_report import report

        report(args)


if __name__ == "__main__":
    main()
