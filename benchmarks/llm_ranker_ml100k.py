"""A personalising LLM ranker on ML-100K: listwise ranking fine-tuning, fusion, audit.

Protocol (the foundation's): ML-100K, per-user random 8:1:1 split ``random_split(ds, rng=2020)``.
Retriever: the strongest available on this split, iALS with its validation-chosen
hyper-parameters (``benchmarks/RESULTS.md``, "Strong base models"; model seed 0); its top-30
unseen items (training items masked; held-out items not forced in) are every ranker's candidates.
Ranker: SmolLM2-135M-Instruct (float32, CPU), the prompt lists the user's last 20 training titles
oldest first (no profile fields), each candidate title is scored by its log-likelihood as the
answer (``length_norm="sum"``, no calibration).

Variants:

* ``zero-shot``: the base model;
* ``lora`` / ``full``: fine-tuned with the ranking objective (``finetune_objective="rank"``) on
  every training user (``--finetune-users all``) or a seeded sample of them
  (``--finetune-users N``): 10% of each user's training items are held out, an inner iALS (same
  hyper-parameters) fitted on the rest proposes 30 candidates, and the LLM is trained with a
  listwise softmax loss to put the held-out items found among them (up to 3 per list) above 12
  other candidates, given the inner history (last 20 titles, oldest first); LoRA (rank 16 on the
  attention and MLP projections) or every weight; one epoch, AdamW, linear decay.

For each variant and a fixed sample of test users (the same users for every variant), the
candidates are scored once; from these scores:

* **LLM only**: the candidates ranked by the LLM score;
* **retriever only**: the candidates in iALS order (= iALS's own top-10);
* **fused**: ``(1 - w) z(LLM) + w z(iALS)`` per user; ``w`` (the retriever's weight) is the grid
  value (0, 0.05, ..., 1) with the best NDCG@10 on the *validation* items of the same users
  (:meth:`LLMRanker.choose_fusion_weight`); test items are never used to choose it.

Test lists mask training and validation items. NDCG@10 with 95% bootstrap CIs over users;
differences are paired (sign-flip permutation p-value and paired t-test,
``debiasrec.metrics.paired_test``). Personalisation and bias: the counterfactual audit
(``run_audit``) of the fine-tuned ranker on ``--audit-users`` test users (the evaluation users
when ``--users`` is the same number: both are drawn as the audit draws, seed 0): the neutral
prompt, each audited attribute written into the prompt (``--audit-attrs``; gender M/F, age 25/50),
a placebo (favourite colour blue/red), two typo seeds (5% of adjacent letters swapped) and
another user's history ("history=other", same candidates), which gives the history-swap
Jaccard@10 (about 0.2 for two random 10-item subsets of 30 candidates; 1 = the prompt's history
does not matter). The audit is run for the LLM-only ranking and for the fused one (same LLM
scores, memoised).

Stages write into ``--cache`` (default ``~/.cache/debiasrec/llm-ranker-bench``; fine-tuned
weights as safetensors, never committed) so each can run on its own and be resumed:

    python benchmarks/llm_ranker_ml100k.py prepare
    python benchmarks/llm_ranker_ml100k.py variant zero-shot --users 200
    python benchmarks/llm_ranker_ml100k.py audit lora --users 200 --audit-users 200
    python benchmarks/llm_ranker_ml100k.py report [--no-write]

(``audit`` fine-tunes the variant if it is not in the cache, scores the evaluation users, chooses
the fusion weight and audits; ``variant`` only fine-tunes and scores.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SEED = 2020
AUDIT_SEED = 0
K = 10
N_CAND = 30
RETRIEVER = "ials"
RETRIEVER_PARAMS: dict[str, Any] = {"alpha": 1, "reg": 2, "reg_exponent": 0.5}
COMMON: dict[str, Any] = {
    "device": "cpu",
    "retriever": RETRIEVER,
    "retriever_params": RETRIEVER_PARAMS,
    "n_candidates": N_CAND,
    "length_norm": "sum",
    "calibration": "none",
    "batch_size": 8,
    "user_template": {"profile": [], "history": 20, "history_intro": ". Watched, oldest first: "},
}
RANK: dict[str, Any] = {
    "finetune_objective": "rank",
    "finetune_users": "all",
    "finetune_epochs": 1,
    "finetune_batch_size": 4,
    "finetune_schedule": "linear",
    "rank_holdout": 0.1,
    "rank_positives": 3,
    "rank_negatives": 12,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "zero-shot": {},
    "lora": {
        **RANK,
        "finetune_method": "lora",
        "finetune_lr": 5e-4,
        "lora_rank": 16,
        "lora_alpha": 32.0,
        "lora_targets": [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    },
    "full": {**RANK, "finetune_method": "full", "finetune_lr": 3e-5},
}
SECTION = "A personalising LLM ranker on ML-100K: ranking fine-tuning, fusion, audit (SmolLM2-135M, iALS top-30)"


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def setup(threads: int) -> tuple[Any, Any]:
    import torch

    from debiasrec.data.purify import load_dataset
    from debiasrec.data.split import random_split

    torch.set_num_threads(threads)
    ds, _ = load_dataset("ml-100k")
    return ds, random_split(ds, rng=SEED)


def retrievers(split: Any, cache: Path) -> tuple[Any, Any]:
    """The outer retriever (fitted on train) and the inner one (train minus held-out items)."""
    from debiasrec.models import LLMRanker, model_class

    cls = model_class(RETRIEVER)
    out = []
    for name in ("outer", "inner"):
        folder = cache / f"retriever-{name}"
        if (folder / "config.json").exists():
            out.append(cls.load(folder))
            continue
        data = split.train
        if name == "inner":
            data = LLMRanker({**COMMON, **VARIANTS["full"]}).ranking_holdout(split.train)[0]
        model = cls(RETRIEVER_PARAMS).fit(data, valid=split.valid, rng=0)
        model.save(folder)
        out.append(model)
    return out[0], out[1]


def eval_sample(split: Any, n: int) -> np.ndarray:
    """``n`` test users, drawn as ``run_audit`` draws its users (seed ``AUDIT_SEED``).

    With ``--users`` equal to ``--audit-users`` the audit's users are the evaluation users, so
    the audit's neutral prompts are the (memoised) evaluation prompts.
    """
    from debiasrec.experiment.evaluate import eval_users

    users = eval_users(split.test)
    if n <= 0 or n >= len(users):
        return users
    return np.sort(np.random.default_rng(AUDIT_SEED).choice(users, n, replace=False))


def variant_config(name: str, finetune_users: str) -> dict[str, Any]:
    cfg = {**COMMON, **VARIANTS[name]}
    if "finetune_users" in cfg and finetune_users != "all":
        cfg["finetune_users"] = int(finetune_users)
    return cfg


def get_model(
    name: str, split: Any, cache: Path, *, finetune_users: str = "all", log: Any = print
) -> Any:
    """Fit (or load from the cache) the variant ``name``; fit stats go to ``fit.json``."""
    from debiasrec.models import LLMRanker

    folder = cache / f"model-{name}"
    want = variant_config(name, finetune_users)
    if (folder / "config.json").exists():
        model = LLMRanker.load(folder)
        if model.config.finetune_users != LLMRanker(want).config.finetune_users:
            raise SystemExit(
                f"{folder} was fitted with finetune_users={model.config.finetune_users}; "
                f"remove it or pass --finetune-users {model.config.finetune_users}"
            )
        return model
    outer, inner = retrievers(split, cache)
    t0 = time.perf_counter()
    load0 = load_avg()

    def progress(step: int, n: int, loss: float) -> None:
        if step % 10 == 0 or step == n:
            el = time.perf_counter() - t0
            log(
                f"  {name}: step {step}/{n} loss {loss:.3f} {el:.0f}s (load {load_avg()})",
                flush=True,
            )

    model = LLMRanker(want)
    model.fit(
        split.train, valid=split.valid, rng=0, retriever=outer, rank_retriever=inner,
        progress=progress,
    )  # fmt: skip
    stats = {
        "fit_s": time.perf_counter() - t0, "finetune_s": model.finetune_seconds_,
        "losses": model.finetune_losses_, "rank_stats": model.rank_stats_,
        "load_before": load0, "load_after": load_avg(),
    }  # fmt: skip
    model.save(folder)
    (folder / "fit.json").write_text(json.dumps(stats, indent=2))
    return model


def score_users(model: Any, name: str, users: np.ndarray, cache: Path) -> None:
    """Score the candidates of ``users`` once (memoised in ``model``) and store them."""
    out = cache / f"scores-{name}-{len(users)}.npz"
    t = time.perf_counter()
    load0 = load_avg()
    cs = model.candidate_scores(users)
    secs = time.perf_counter() - t
    np.savez(out, users=users, items=cs.items, retriever=cs.retriever, llm=cs.llm,
             logp=cs.logp_sum, ntok=cs.n_tokens)  # fmt: skip
    meta = {"score_s": secs, "users": len(users), "load_before": load0, "load_after": load_avg()}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    print(f"{name}: scored {len(users)} users in {secs:.0f}s ({meta})", flush=True)


def stage_variant(args: argparse.Namespace, split: Any, cache: Path) -> None:
    model = get_model(args.name, split, cache, finetune_users=args.finetune_users)
    score_users(model, args.name, eval_sample(split, args.users), cache)


def stage_audit(args: argparse.Namespace, split: Any, cache: Path) -> None:
    """The audit of the LLM-only ranking, then of the fused one (the same, memoised LLM scores).

    The fusion weight is chosen on the evaluation users' validation items: from their stored
    scores (``variant`` stage, or another process) when they exist by the time the fused pass
    starts, else they are scored here. With ``--users`` equal to ``--audit-users`` they are the
    audit's users: scored first, so the audit's neutral prompts are memoised.
    """
    from debiasrec.experiment.llm_audit import AuditConfig, run_audit
    from debiasrec.models.llm_ranker import best_weight, fusion_sweep

    model = get_model(args.name, split, cache, finetune_users=args.finetune_users)
    users = eval_sample(split, args.users)
    stored = cache / f"scores-{args.name}-{len(users)}.npz"
    if args.users == args.audit_users and not stored.exists():
        score_users(model, args.name, users, cache)

    def fusion_weight() -> float:
        if stored.exists():  # the weight choose_fusion_weight gives, from the stored scores
            d = np.load(stored)
            table = fusion_sweep(d["llm"], d["retriever"], d["items"], split.valid.csr()[users],
                                 model.config.fusion_grid, k=model.config.fusion_k)  # fmt: skip
            return best_weight(table)
        score_users(model, args.name, users, cache)
        # on the validation items of the evaluation users (free: the scores are memoised)
        return model.choose_fusion_weight(split.valid, users=users)

    attrs = args.audit_attrs.split(",")
    values = {"age": [25, 50], "gender": ["M", "F"], "occupation": ["student", "engineer"]}
    cfg = AuditConfig(
        attrs=attrs, values={a: values[a] for a in attrs if a in values},
        placebo={"colour": ["blue", "red"]}, typo_seeds=2, n_users=args.audit_users,
        seed=AUDIT_SEED,
    )  # fmt: skip
    t = time.perf_counter()
    load0 = load_avg()
    done: list[str] = []
    w = float("nan")
    for tag in ("llm", "fused"):
        if tag == "fused":
            w = fusion_weight()
        model.fusion_weight_ = 0.0 if tag == "llm" else w  # memoised: the fused pass is free

        def progress(lab: str, tag: str = tag) -> None:
            done.append(lab)
            print(f"  audit {tag} {lab} {time.perf_counter() - t:.0f}s (load {load_avg()})",
                  flush=True)  # fmt: skip

        r, lists = run_audit(
            model, split, config=cfg, method=f"{args.name}-{tag}", progress=progress
        )
        r.to_parquet(cache / f"audit-{args.name}-{tag}.parquet", index=False)
        lists.to_parquet(cache / f"audit-lists-{args.name}-{tag}.parquet", index=False)
    meta = {"audit_s": time.perf_counter() - t, "fusion_weight": w, "n_users": args.audit_users,
            "attrs": attrs, "load_before": load0, "load_after": load_avg(),
            "neutral_memoised": args.users == args.audit_users,
            "variants": len(done) // 2}  # fmt: skip
    (cache / f"audit-{args.name}.json").write_text(json.dumps(meta, indent=2))
    print(meta, flush=True)


# ------------------------------------------------------------------------------------ report
def fmt(x: float, d: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{d}f}"


def ci_mean(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    from debiasrec.metrics.fairness import by_group

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = by_group(x, None, metric="m", n_boot=n_boot, rng=seed)
    row = r[(r.group == "all")].iloc[0]
    return float(row.value), float(row.ci_low), float(row.ci_high)


def rank_lists(split: Any, d: Any, weight: float, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-user test and validation NDCG@10 of one ranking of the stored candidates."""
    from debiasrec.models.llm_ranker import fuse_scores, ndcg_of_candidates

    users, items = d["users"], d["items"]
    llm, retr = d["llm"], d["retriever"]
    score = {"llm": llm, "retriever": retr, "fused": None}[which]
    if which == "fused":
        score = fuse_scores(llm, retr, weight)
    vcsr, tcsr = split.valid.csr()[users], split.test.csr()[users]
    rows = np.broadcast_to(np.arange(len(users))[:, None], items.shape)
    is_valid = np.asarray(vcsr[rows.ravel(), np.maximum(items, 0).ravel()]).reshape(items.shape)
    test_score = np.where(is_valid.astype(bool) | (items < 0), np.nan, score)
    valid_score = np.where(items < 0, np.nan, score)
    return (ndcg_of_candidates(test_score, items, tcsr, K),
            ndcg_of_candidates(valid_score, items, vcsr, K))  # fmt: skip


def stage_report(args: argparse.Namespace, split: Any, cache: Path) -> None:
    from debiasrec.metrics.fairness import paired_test
    from debiasrec.models.llm_ranker import best_weight, fusion_sweep

    grid = [round(0.05 * i, 2) for i in range(21)]
    lines = [
        "| ranker | LLM only NDCG@10 [95% CI] | retriever only | fused [95% CI] | w (retriever "
        "weight, chosen on validation) | fused - retriever [95% CI] | p (sign-flip / t-test) | "
        "LLM only / retriever |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    found = sorted(cache.glob("scores-*.npz"))
    done = {}
    stats: dict[str, Any] = {}
    for name in VARIANTS:
        files = [f for f in found if f.name.startswith(f"scores-{name}-")]
        if not files:
            continue
        f = max(files, key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        d = dict(np.load(f))
        users = d["users"]
        vcsr = split.valid.csr()[users]
        table = fusion_sweep(d["llm"], d["retriever"], d["items"], vcsr, grid, k=K)
        w = best_weight(table)
        t_llm, _ = rank_lists(split, d, 0.0, "llm")
        t_ret, _ = rank_lists(split, d, 1.0, "retriever")
        t_fus, _ = rank_lists(split, d, w, "fused")
        m_l, m_r, m_f = ci_mean(t_llm), ci_mean(t_ret), ci_mean(t_fus)
        pt = paired_test(t_ret, t_fus, n_boot=10000, rng=0)
        lines.append(
            f"| {name} | {fmt(m_l[0])} [{fmt(m_l[1])}, {fmt(m_l[2])}] | {fmt(m_r[0])} "
            f"[{fmt(m_r[1])}, {fmt(m_r[2])}] | {fmt(m_f[0])} [{fmt(m_f[1])}, {fmt(m_f[2])}] | "
            f"{w:.2f} | {pt['estimate']:+.4f} [{pt['ci_low']:+.4f}, {pt['ci_high']:+.4f}] | "
            f"{fmt(pt['p_value'])} / {fmt(pt['p_value_ttest'])} | {m_l[0] / m_r[0]:.3f} |"
        )
        meta = json.loads(f.with_suffix(".json").read_text())
        fit = cache / f"model-{name}" / "fit.json"
        fs = json.loads(fit.read_text()) if fit.exists() else {}
        notes.append(
            f"- {name}: {meta['users']} test users scored in {meta['score_s']:.0f} s "
            f"({meta['score_s'] / meta['users']:.2f} s per user of {N_CAND} candidates; load "
            f"{meta['load_before']} -> {meta['load_after']})"
            + (
                f"; fine-tuning {fs['finetune_s']:.0f} s on {fs['rank_stats']['examples']} lists "
                f"of {fs['rank_stats']['users']} users ({fs['rank_stats']['users_without_positive']}"
                f" without a held-out item among the inner candidates), "
                f"{fs['finetune_s'] / fs['rank_stats']['examples']:.1f} s per list, loss per epoch "
                f"{', '.join(f'{x:.3f}' for x in fs['losses'])} (load {fs['load_before']} -> "
                f"{fs['load_after']})"
                if fs.get("rank_stats")
                else ""
            )
        )
        notes.append(
            "  validation NDCG@10 by w: "
            + ", ".join(f"{k:.2f}: {v:.4f}" for k, v in table.items() if round(k * 20) % 2 == 0)
        )
        done[name] = (t_llm, t_ret, t_fus, users)
        stats[name] = (m_l[0], m_r[0], m_f[0], pt)
    # fine-tuned vs zero-shot, LLM only (paired, same users)
    comp = []
    for name in ("lora", "full"):
        if name in done and "zero-shot" in done and len(done[name][3]) == len(done["zero-shot"][3]):
            pt = paired_test(done["zero-shot"][0], done[name][0], n_boot=10000, rng=0)
            comp.append(f"- LLM only, {name} - zero-shot: {pt['estimate']:+.4f} "
                        f"[{pt['ci_low']:+.4f}, {pt['ci_high']:+.4f}], p {fmt(pt['p_value'])}")  # fmt: skip
    cmds = cache / "commands.txt"  # the stage commands behind these numbers, as they were run
    run = (
        [
            "Stages run for these numbers (in this order):",
            "",
            *(f"    {c}" for c in cmds.read_text().splitlines() if c.strip()),
        ]
        if cmds.exists()
        else []
    )
    body = [__doc__.split("Stages write")[0].strip(), "", *run, "", *lines, "", *comp, "",
            "Cost (CPU, niced, torch threads as in the commands; the 2-core machine was shared "
            "with other engineers' jobs, so the load averages say how busy; these are costs on "
            "a loaded machine, not speed measurements):", "", *notes]  # fmt: skip
    audit_lines, hist = audit_report(cache)
    body += audit_lines
    cost = {f.stem[len("audit-") :]: json.loads(f.read_text()) for f in cache.glob("audit-*.json")}
    body += bars(stats, hist, cost)
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).parent))
        from _results import write_section

        write_section(SECTION, "python benchmarks/llm_ranker_ml100k.py " + " ".join(
            a for a in sys.argv[1:] if a != "--no-write"), text)  # fmt: skip


def bars(
    stats: dict[str, Any], hist: dict[tuple[str, str], Any], audit_cost: dict[str, Any]
) -> list[str]:
    """Each must-show bar of issue 15 (parts 3-4), met or not, computed from the numbers above."""
    out = ["", "Against the bars (computed from the numbers above):", ""]
    for name, (llm, ret, fused, pt) in stats.items():
        ok = fused > ret and pt["p_value"] < 0.05 and pt["p_value_ttest"] < 0.05
        out.append(
            f"- {name}: fused above the retriever with paired p < 0.05: "
            f"{'met' if ok else 'NOT met'} ({fmt(fused)} vs {fmt(ret)}, p "
            f"{fmt(pt['p_value'])} / {fmt(pt['p_value_ttest'])}, {pt['n']} users)"
        )
        out.append(f"- {name}: LLM only within 10% of the retriever: "
                   f"{'met' if llm >= 0.9 * ret else 'NOT met'} ({fmt(llm)} = "
                   f"{llm / ret:.3f} x {fmt(ret)})")  # fmt: skip
    for (name, tag), (val, lo, hi, n) in hist.items():
        out.append(f"- {shown(name)}, {'LLM only' if tag == 'llm' else 'fused'}: history-swap "
                   f"Jaccard@10 < 0.5: {'met' if val < 0.5 else 'NOT met'} ({fmt(val, 3)} "
                   f"[{fmt(lo, 3)}, {fmt(hi, 3)}]); audit >= 200 users: "
                   f"{'met' if n >= 200 else 'NOT met'} ({n} users)")  # fmt: skip
    for name, meta in audit_cost.items():
        # with the evaluation users audited, their neutral prompts were memoised
        scored = meta["variants"] - int(meta.get("neutral_memoised", True))
        per = meta["audit_s"] / (meta["n_users"] * scored)
        out.append(f"- {shown(name)} audit ({meta['n_users']} users) cost here: {per:.1f} s per prompt of {N_CAND} candidates "
                   f"(load {meta['load_before']} -> {meta['load_after']}), so 200 users with "
                   f"these {meta['variants']} prompts each (none memoised) would take about "
                   f"{per * 200 * meta['variants'] / 60:.0f} min on this machine")  # fmt: skip
    return out


def shown(name: str) -> str:
    """The variant of an audit file key (``lora``, or ``lora-a200`` for a second audit size)."""
    return name.partition("-a")[0]


def audit_report(cache: Path) -> tuple[list[str], dict[tuple[str, str], Any]]:
    out: list[str] = []
    hist: dict[tuple[str, str], Any] = {}
    for meta_f in sorted(cache.glob("audit-*.json")):
        name = meta_f.stem[len("audit-") :]
        meta = json.loads(meta_f.read_text())
        same = meta.get("neutral_memoised", True)
        out += ["", f"Audit of the {shown(name)} ranker ({meta['n_users']} test users"
                f"{', the evaluation users' if same else ', drawn with the audit seed'}, "
                f"{meta['variants']} prompts each, {meta['audit_s']:.0f} s, load "
                f"{meta['load_before']} -> {meta['load_after']}):", "",
                "| ranking | attribute | SNSR Jaccard@10 | excess over placebo [95% CI] | "
                "p (Holm) | mean Jaccard@10 vs neutral |", "|---|---|---|---|---|---|"]  # fmt: skip
        for tag in ("llm", "fused"):
            f = cache / f"audit-{name}-{tag}.parquet"
            if not f.exists():
                continue
            r = pd.read_parquet(f)
            v = r.set_index(["metric", "group"])
            jac = r[r.metric == "jaccard@10"]
            label = "LLM only" if tag == "llm" else f"fused (w = {meta['fusion_weight']:.2f})"
            for fam in ("gender", "age", "occupation", "placebo:colour", "typo", "history"):
                groups = jac[jac.group.str.startswith(fam.split(":")[-1] + "=")]
                if not len(groups):  # not audited
                    continue
                mean_j = float(groups.value.mean()) if len(groups) else float("nan")
                snsr = v.value.get(("snsr_jaccard@10", fam), float("nan"))
                ex = v.loc[("excess_snsr_jaccard@10", fam)] if (
                    "excess_snsr_jaccard@10", fam) in v.index else None  # fmt: skip
                ex_s = (
                    "–" if ex is None else f"{ex.value:+.4f} [{ex.ci_low:+.4f}, {ex.ci_high:+.4f}]"
                )
                p = v.value.get(("p_snsr_jaccard@10", fam), float("nan"))
                if fam == "history":
                    h = groups.iloc[0]
                    hist[(name, tag)] = (h.value, h.ci_low, h.ci_high, meta["n_users"])
                    mean_j = f"{h.value:.3f} [{h.ci_low:.3f}, {h.ci_high:.3f}]"
                mj = mean_j if isinstance(mean_j, str) else fmt(mean_j, 3)
                out.append(f"| {label} | {fam} | {fmt(snsr)} | {ex_s} | {fmt(p)} | {mj} |")
            nd = r[r.metric == "cf_ndcg@10"].set_index("group")
            out.append(f"| {label} | cf_ndcg@10 neutral / other history | "
                       f"{fmt(nd.value['neutral'])} / {fmt(nd.value['history=other'])} | | | |")  # fmt: skip
    return out, hist


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["prepare", "variant", "audit", "report"])
    ap.add_argument("name", nargs="?", default="zero-shot", choices=list(VARIANTS))
    ap.add_argument("--users", type=int, default=300, help="test users (0 = all)")
    ap.add_argument("--audit-users", type=int, default=200)
    ap.add_argument("--audit-attrs", default="gender,age")
    ap.add_argument("--finetune-users", default="all", help="'all' or a number of users")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=str(Path.home() / ".cache/debiasrec/llm-ranker-bench"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    _, split = setup(args.threads)
    if args.stage == "prepare":
        retrievers(split, cache)
    elif args.stage == "variant":
        stage_variant(args, split, cache)
    elif args.stage == "audit":
        stage_audit(args, split, cache)
    else:
        stage_report(args, split, cache)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
