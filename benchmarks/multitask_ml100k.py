"""Multi-task learning on ML-100K: does training BPR jointly with related tasks make it fairer
and better? (issue #6)

Protocol: all 100k ratings as implicit positives; for each seed s a per-user random 8:1:1 split
(``random_split(ds, rng=s)``) and model seed s; BPR with its default hyper-parameters (dim 128,
early stopping on validation NDCG@10); full-ranking NDCG@10 on test with training and
validation items masked. Per-user NDCG@10 is grouped by gender (M/F), age (7 ML-1M bands) and
activity (training interactions: cold = bottom quartile, active = top quartile, mid = the rest;
``debiasrec.data.groups.activity_groups``); a gap is max - min of the group means. Each cell:
mean over the seeds and the 95 % t-interval across seeds; deltas are paired per seed.

Auxiliary tasks (``MultiTask`` strategy, heads on BPR's embeddings; fixed task weight 1,
except 0.1 for like and rating: with weight 1 they cut seed-0 NDCG@10 from 0.305 to 0.206, with
0.1 to 0.286 -- the only weight tuning done): genre = multi-label genres of an item from its
embedding; rating-sentiment = like (rating >= 4) and rating regression of a training pair from
``[p_u, q_i, p_u*q_i]``;
text-sentiment = fresh/rotten of Rotten Tomatoes snippets (80 % of the 12,808, the rest
held out) and liked (rating >= 4) of Women's Clothing reviews (a fixed random 9,000 of the 22,642
with text; 60 % train / 10 % validation / 30 % test, re-split per seed), both through frozen
all-MiniLM-L6-v2 features and trainable adapters. "text-only head" is the same adapter + tower
trained alone (Adam, lr 1e-3, 1,500 steps of 256) for comparison.

    python benchmarks/multitask_ml100k.py [--seeds 0,1,2,3,4] [--variants all]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from debiasrec.data import load_dataset, random_split
from debiasrec.data.groups import activity_groups
from debiasrec.data.text_corpora import load_clothing_reviews, load_rotten_tomatoes
from debiasrec.debias.inproc.multitask import MultiTask, TextTaskData
from debiasrec.experiment.evaluate import EvalConfig, evaluate_model
from debiasrec.metrics.fairness import by_group, classifier_by_group
from debiasrec.metrics.leakage import t_interval
from debiasrec.models import BPR
from debiasrec.models.heads import MLP, TextAdapter, init_parameters
from debiasrec.random import torch_generator

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

N_CLOTHING = 9000
GENRE = [{"kind": "genre"}]
SENT = [{"kind": "like", "weight": 0.1}, {"kind": "rating", "weight": 0.1}]
TEXT = [{"kind": "text", "name": "rt"}, {"kind": "text", "name": "clothing"}]
ALL = GENRE + SENT + TEXT

#: name -> MultiTask keyword arguments (None: plain BPR)
VARIANTS: dict[str, dict[str, Any] | None] = {
    "BPR (single task)": None,
    "+ genre": {"tasks": GENRE},
    "+ rating-sentiment": {"tasks": SENT},
    "+ text-sentiment": {"tasks": TEXT},
    "+ all, shared-bottom, fixed": {"tasks": ALL},
    "+ all, MMoE, fixed": {"tasks": ALL, "architecture": "mmoe"},
    "+ all, MMoE, uncertainty": {"tasks": ALL, "architecture": "mmoe", "weighting": "uncertainty"},
    "+ all, MMoE, PCGrad": {"tasks": ALL, "architecture": "mmoe", "gradient": "pcgrad"},
}
ATTRS = ("gender", "age", "activity")


def fmt(vals: list[float], digits: int = 4) -> str:
    m, lo, hi = t_interval(np.array(vals))
    if not np.isfinite(lo):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def text_corpora(encode: Callable[[list[str]], np.ndarray]) -> dict[str, Any]:
    """Encoder features and labels of both corpora (the fixed clothing subset)."""
    rt = load_rotten_tomatoes()
    cl = load_clothing_reviews()
    idx = np.sort(np.random.default_rng(0).permutation(len(cl))[:N_CLOTHING])
    cl = cl.iloc[idx].reset_index(drop=True)
    return {
        "rt_x": encode(rt["text"].tolist()),
        "rt_y": rt["label"].to_numpy(),
        "cl_x": encode(cl["text"].tolist()),
        "cl_y": cl["label"].to_numpy(),
        "cl_age": cl["age_group"],
    }


def text_split(corp: dict[str, Any], seed: int) -> tuple[dict[str, TextTaskData], np.ndarray]:
    """Per-seed text tasks and the clothing test rows."""
    g = np.random.default_rng(10_000 + seed)
    n_rt = len(corp["rt_y"])
    p = g.permutation(n_rt)
    tr, va = p[: int(0.8 * n_rt)], p[int(0.8 * n_rt) :]
    rt = TextTaskData(corp["rt_x"][tr], corp["rt_y"][tr], corp["rt_x"][va], corp["rt_y"][va])
    n_cl = len(corp["cl_y"])
    q = g.permutation(n_cl)
    a, b = int(0.6 * n_cl), int(0.7 * n_cl)
    x, y = corp["cl_x"], corp["cl_y"]
    cl = TextTaskData(x[q[:a]], y[q[:a]], x[q[a:b]], y[q[a:b]])
    return {"rt": rt, "clothing": cl}, q[b:]


def text_only_head(
    data: TextTaskData, seed: int, steps: int = 1500, batch: int = 256
) -> Callable[[np.ndarray], np.ndarray]:
    """Adapter + tower of the same sizes as MultiTask's, trained alone; returns predict_proba."""
    gen = torch_generator(seed)
    net = torch.nn.Sequential(
        TextAdapter(data.features.shape[1], 64), torch.nn.ReLU(), MLP(64, 1, [32])
    )
    init_parameters(net, gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.as_tensor(data.features)
    y = torch.as_tensor(data.labels, dtype=torch.float32)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        i = torch.from_numpy(rng.choice(len(y), size=batch, replace=False))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[i]).squeeze(1), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()

    def predict(f: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(net(torch.as_tensor(f)).squeeze(1)).numpy()

    return predict


def text_metrics(prob: np.ndarray, y: np.ndarray, age: pd.Categorical) -> dict[str, float]:
    df = classifier_by_group(y, (prob >= 0.5).astype(int), age, attr="age")
    v = df.set_index(["metric", "group"])["value"]
    out = {"t_acc": float(v[("accuracy", "all")]), "t_eod": float(v[("eod", "age")])}
    out["t_gap_acc"] = float(v[("gap_accuracy", "age")])
    for label in age.categories:
        out[f"t_acc_{label}"] = float(v[("accuracy", f"age={label}")])
        out[f"t_tpr_{label}"] = float(v[("tpr", f"age={label}")])
    return out


def measure(model: BPR, split: Any, groups: dict[str, pd.Categorical]) -> dict[str, float]:
    ecfg = EvalConfig(ks=[10], metrics=["ndcg"], beyond=[], attrs=[], n_boot=0)
    ev = evaluate_model(model.score_tensor, split.train, split.valid, split.test, config=ecfg)
    users = ev.per_user["user"].to_numpy()
    nd = ev.per_user["ndcg@10"].to_numpy()
    sub = {
        a: pd.Categorical.from_codes(np.asarray(c.codes)[users], c.categories)
        for a, c in groups.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tidy = by_group({"ndcg": nd}, sub, n_boot=0).set_index(["metric", "group"])["value"]
    out = {"ndcg": float(tidy[("ndcg", "all")])}
    for a in ATTRS:
        out[f"gap_{a}"] = float(tidy[("gap_ndcg", a)])
        for label in groups[a].categories:
            out[f"ndcg_{a}={label}"] = float(tidy[("ndcg", f"{a}={label}")])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--variants", default="all", help="comma-separated indices into VARIANTS")
    ap.add_argument("--cache", default=None, help="JSON file of finished (variant, seed) rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument(
        "--report-only", action="store_true", help="train nothing: report the cached runs"
    )
    ap.add_argument("--note", default="", help="sentence added to the written section")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    seeds = [int(s) for s in args.seeds.split(",")]
    names = list(VARIANTS)
    if args.variants != "all":
        names = [names[int(i)] for i in args.variants.split(",")]
    cache: dict[str, dict[str, float]] = {}
    if args.cache and Path(args.cache).exists():
        cache = json.loads(Path(args.cache).read_text())

    from debiasrec.lm.encoder import SentenceEncoder

    need_text = any(
        VARIANTS[n] is not None and any(t["kind"] == "text" for t in VARIANTS[n]["tasks"])
        for n in names
    )
    corp: dict[str, Any] = {}
    encode_s = 0.0
    if need_text:
        enc = SentenceEncoder()
        t = time.perf_counter()
        corp = text_corpora(lambda texts: enc.encode(texts))
        encode_s = time.perf_counter() - t
    ds, _ = load_dataset("ml-100k")
    # rows[name][seed]: finished runs (from the cache or trained now)
    rows: dict[str, dict[int, dict[str, float]]] = {n: {} for n in names}
    text_only: dict[int, dict[str, float]] = {}
    for seed in seeds:
        split = random_split(ds, rng=seed)
        groups = {
            "gender": split.train.user_groups("gender"),
            "age": split.train.user_groups("age"),
            "activity": activity_groups(split.train),
        }
        if need_text:
            tdata, test_rows = text_split(corp, seed)
            cl_x, cl_y = corp["cl_x"][test_rows], corp["cl_y"][test_rows]
            cats = corp["cl_age"].cat.categories
            cl_age = pd.Categorical(corp["cl_age"].to_numpy()[test_rows], categories=cats)
            key = f"text-only|{seed}"
            if key not in cache and not args.report_only:
                predict = text_only_head(tdata["clothing"], seed)
                cache[key] = text_metrics(predict(cl_x), cl_y, cl_age)
                if args.cache:
                    Path(args.cache).write_text(json.dumps(cache))
            if key in cache:
                text_only[seed] = cache[key]
        for name in names:
            key = f"{name}|{seed}"
            if key not in cache and not args.report_only:
                kw = VARIANTS[name]
                strategies = []
                if kw is not None:
                    texts = {
                        t["name"]: tdata[t["name"]] for t in kw["tasks"] if t["kind"] == "text"
                    }
                    strategies = [MultiTask(**kw, text_data=texts)]
                t = time.perf_counter()
                model = BPR(strategies=strategies).fit(split.train, valid=split.valid, rng=seed)
                r = measure(model, split, groups)
                r["fit_s"] = time.perf_counter() - t
                r["epochs"] = len(model.history_.epochs)
                if strategies and "clothing" in strategies[0].text_data:
                    r.update(
                        text_metrics(strategies[0].predict_text("clothing", cl_x), cl_y, cl_age)
                    )
                    rt = tdata["rt"]
                    p = strategies[0].predict_text("rt", rt.valid_features)
                    r["rt_acc"] = float(np.mean((p >= 0.5) == (rt.valid_labels == 1)))
                if strategies and strategies[0].config.weighting == "uncertainty":
                    r.update({f"s_{g}": v for g, v in strategies[0].log_variances().items()})
                cache[key] = r
                if args.cache:
                    Path(args.cache).write_text(json.dumps(cache))
            if key not in cache:
                continue
            r = cache[key]
            rows[name][seed] = r
            print(
                f"{name} seed {seed}: " + " ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True
            )
    rows = {n: rs for n, rs in rows.items() if rs}
    body = report(rows, text_only, corp, need_text)
    body = (
        __doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0]
        + f"\n\nSeeds {seeds} (the 'seeds' column says which finished for each variant; deltas "
        "are paired on the seeds both runs have). Timings (fit s: median seconds per fit, incl. "
        "validation) were measured with 1 torch thread while other processes shared the "
        "machine's 2 cores (load average 8-12), so they are several times the unloaded times, "
        "noisy, and only roughly comparable within this table. Encoding the texts took "
        f"{encode_s:.0f} s in this run (the on-disk cache makes later runs fast)."
        + (f" {args.note}" if args.note else "")
        + "\n\n"
        + body
    )
    print(body)
    if not args.no_write:
        write_section(
            "Multi-task learning on ML-100K",
            "python benchmarks/multitask_ml100k.py",
            body,
        )


def _paired(
    rs: dict[int, dict[str, float]], base: dict[int, dict[str, float]], key: str
) -> np.ndarray:
    common = sorted(set(rs) & set(base))
    return np.array([rs[s][key] - base[s][key] for s in common])


def report(
    rows: dict[str, dict[int, dict[str, float]]],
    text_only: dict[int, dict[str, float]],
    corp: dict[str, Any],
    need_text: bool,
) -> str:
    """Markdown tables of accuracy, group gaps, per-group changes and text-head fairness."""
    base = rows.get("BPR (single task)")
    lines = [
        "| variant | seeds | NDCG@10 | Δ NDCG@10 vs BPR | gender gap | age gap | activity gap "
        "| fit s | epochs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_seed in rows.items():
        rs = list(by_seed.values())
        delta = (
            "–"
            if base is None or name == "BPR (single task)"
            else fmt(list(_paired(by_seed, base, "ndcg")))
        )
        lines.append(
            f"| {name} | {','.join(str(s) for s in sorted(by_seed))} | "
            f"{fmt([r['ndcg'] for r in rs])} | {delta} | "
            + " | ".join(fmt([r[f"gap_{a}"] for r in rs]) for a in ATTRS)
            + f" | {np.median([r['fit_s'] for r in rs]):.0f}"
            f" | {np.median([r['epochs'] for r in rs]):.0f} |"
        )
    out = (
        "**Recommendation accuracy and group gaps** (NDCG@10 gap = max - min group mean):\n\n"
        + "\n".join(lines)
    )
    if base is not None:
        group_keys = [k for k in next(iter(base.values())) if k.startswith("ndcg_")]
        who = [
            "| variant | " + " | ".join(k.removeprefix("ndcg_") for k in group_keys) + " |",
            "|---|" + "---|" * len(group_keys),
            "| BPR (single task), NDCG@10 | "
            + " | ".join(f"{np.mean([b[k] for b in base.values()]):.4f}" for k in group_keys)
            + " |",
        ]
        for name, by_seed in rows.items():
            if name == "BPR (single task)":
                continue
            cells = []
            for k in group_keys:
                m, lo, hi = t_interval(_paired(by_seed, base, k))
                mark = "*" if np.isfinite(lo) and (lo > 0 or hi < 0) else ""
                cells.append(f"{m:+.4f}{mark}")
            who.append(f"| {name}, Δ | " + " | ".join(cells) + " |")
        out += (
            "\n\n**Who gains**: change of each group's mean NDCG@10 vs BPR, mean over the "
            "paired seeds (* = the 95 % t-interval of the per-seed change excludes 0):\n\n"
            + "\n".join(who)
        )
    if need_text:
        ages = list(corp["cl_age"].cat.categories)
        text_rows = [("text-only head (no recommender)", list(text_only.values()))] + [
            (n, list(rs.values())) for n, rs in rows.items() if "t_acc" in next(iter(rs.values()))
        ]
        tl = [
            "| head | seeds | accuracy | "
            + " | ".join(f"acc {a}" for a in ages)
            + " | accuracy gap (age) | EOD (TPR gap, age) | RT accuracy |",
            "|---|---|---|" + "---|" * len(ages) + "---|---|---|",
        ]
        for name, rs in text_rows:
            rt_acc = fmt([r["rt_acc"] for r in rs], 3) if "rt_acc" in rs[0] else "–"
            tl.append(
                f"| {name} | {len(rs)} | {fmt([r['t_acc'] for r in rs], 3)} | "
                + " | ".join(f"{np.mean([r[f't_acc_{a}'] for r in rs]):.3f}" for a in ages)
                + f" | {fmt([r['t_gap_acc'] for r in rs], 3)}"
                f" | {fmt([r['t_eod'] for r in rs], 3)} | {rt_acc} |"
            )
        n_test = N_CLOTHING - int(0.7 * N_CLOTHING)
        majority = float(np.mean(corp["cl_y"]))
        out += (
            f"\n\n**Text sentiment head** on {n_test} held-out clothing reviews per seed "
            f"(positive = rating >= 4; majority-class accuracy {majority:.3f}); per-age-group "
            "accuracy (mean over seeds), accuracy gap and equal-opportunity difference (max - "
            "min TPR over age groups); RT accuracy on the 2,562 held-out Rotten Tomatoes "
            "snippets:\n\n" + "\n".join(tl)
        )
    unc = [
        (n, rs)
        for n, rs in rows.items()
        if any(k.startswith("s_") for k in next(iter(rs.values())))
    ]
    for name, rs in unc:
        keys = [k for k in next(iter(rs.values())) if k.startswith("s_")]
        vals = ", ".join(f"{k[2:]} {np.mean([r[k] for r in rs.values()]):+.2f}" for k in keys)
        out += f"\n\nLearned log-variances s_k of '{name}' (mean over seeds): {vals}."
    return out


if __name__ == "__main__":
    main()
