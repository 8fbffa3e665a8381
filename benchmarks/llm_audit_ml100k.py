"""Counterfactual audit of the LLM ranker (SmolLM2-135M; zero-shot or LoRA fine-tuned) on ML-100K.

FaiRLLM's protocol with controls (``debiasrec.experiment.llm_audit.run_audit``): BPR top-30
candidates (split seed 2020, model seed 0), re-ranked by SmolLM2-135M-Instruct (mean log-likelihood
of the title, no calibration — the ``LLMRanker`` defaults) under the neutral prompt, gender M/F,
four ages, a placebo colour (4 values), 2 typo seeds and another user's history. Jaccard@10,
PRAG*@10 against the neutral list; SNSR across values; excess over the placebo with a paired
user-bootstrap CI; within-user permutation p-values (Holm).

    python benchmarks/llm_audit_ml100k.py [--users 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from debiasrec.data import load_dataset, random_split
from debiasrec.experiment.llm_audit import run_audit
from debiasrec.models import LLMRanker

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--finetune-users", type=int, default=0,
                    help="LoRA fine-tune on this many sampled users first (0: zero-shot)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=2020)
    t = time.perf_counter()
    model = LLMRanker(finetune_users=args.finetune_users).fit(split.train, valid=split.valid, rng=0)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    cfg = {"n_users": args.users, "attrs": ["gender", "age"], "values": {"age": [20, 30, 45, 60]},
           "typo_seeds": 2, "seed": 0}  # fmt: skip
    res, _ = run_audit(model, split, config=cfg, method="llm_ranker")
    audit_s = time.perf_counter() - t
    v = res.set_index(["metric", "group"])
    lines = ["| attribute | SNSR Jaccard@10 | SNSR PRAG*@10 | excess over placebo [95% CI] | "
             "p (Holm) |", "|---|---|---|---|---|"]  # fmt: skip
    for fam in ("gender", "age", "placebo:colour", "typo"):
        ex = (
            v.loc[("excess_snsr_jaccard@10", fam)]
            if ("excess_snsr_jaccard@10", fam) in v.index
            else None
        )
        ex_s = "–" if ex is None else f"{ex.value:+.4f} [{ex.ci_low:+.4f}, {ex.ci_high:+.4f}]"
        p = (
            v.loc[("p_snsr_jaccard@10", fam)].value
            if ("p_snsr_jaccard@10", fam) in v.index
            else float("nan")
        )
        lines.append(f"| {fam} | {v.loc[('snsr_jaccard@10', fam)].value:.4f} | "
                     f"{v.loc[('snsr_prag@10', fam)].value:.4f} | {ex_s} | {p:.4f} |")  # fmt: skip
    jac = res[(res.metric == "jaccard@10")].set_index("group").value
    ndcg = res[(res.metric == "cf_ndcg@10")].set_index("group").value
    body = "\n".join([
        f"{args.users} sampled test users, {args.threads} torch threads, CPU. "
        + (f"LoRA fine-tuned on {args.finetune_users} sampled users (LLMRanker defaults: rank 8, "
           "1 epoch, 1 target per user). " if args.finetune_users else "Zero-shot. ")
        + f"Retriever fit + LLM load{' + fine-tuning' if args.finetune_users else ''} "
        f"{fit_s:.0f} s; audit ({len(ndcg)} prompts per user) {audit_s:.0f} s.",
        "",
        *lines,
        "",
        f"Mean Jaccard@10 vs neutral: gender=F {jac.get('gender=F', float('nan')):.3f}, "
        f"gender=M {jac.get('gender=M', float('nan')):.3f}, typo=0 {jac.get('typo=0'):.3f}, "
        f"other history {jac.get('history=other'):.3f}. cf_ndcg@10: neutral "
        f"{ndcg['neutral']:.4f}, other history {ndcg['history=other']:.4f}.",
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        kind = (
            f"LoRA fine-tuned ({args.finetune_users} users)" if args.finetune_users else "zero-shot"
        )
        cmd = f"python benchmarks/llm_audit_ml100k.py --users {args.users} --threads {args.threads}"
        if args.finetune_users:
            cmd += f" --finetune-users {args.finetune_users}"
        write_section(f"Counterfactual audit of the {kind} LLM ranker (ML-100K)", cmd, body)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
