"""Generative LLM ranker on ML-100K: accuracy, length/popularity bias, personalisation, speed.

Protocol: ML-100K (``load_dataset("ml-100k")``), per-user random 8:1:1 split
``random_split(ds, rng=2020)``. Retriever: BPR with default hyper-parameters (seed 2020), whose
top-30 unseen items (training items masked; held-out items NOT forced in) are the candidates.
A fixed sample of test users (``--users``, drawn with seed 2020 among users with test items) is
scored by every method. Ranker: SmolLM2-135M-Instruct (offline GGUF, dequantized, float32),
chat-template prompt with the user text (age, gender, occupation, last 10 training titles), each
candidate title scored by its log-likelihood as the answer (packed scoring). Validation items are
masked from every list (retriever and LLM alike) before the top-10.

Rows: the retriever alone; the LLM zero-shot with summed and mean log-likelihood; both with PMI
(contextual) calibration against the content-free user text "N/A"; the same four after LoRA
fine-tuning (rank 8, q/k/v/o, ``--ft-users`` sampled users, one next-title target each, one
epoch). Personalisation: Jaccard@10 between a user's top-10 and the top-10 re-ranked with another
user's history in the prompt (same candidates; 1 = the prompt does not matter; two random
10-subsets of 30 candidates give about 0.2).

    python benchmarks/llm_ml100k.py [--users 100] [--ft-users 64] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from debiasrec.data.purify import load_dataset
from debiasrec.data.split import random_split
from debiasrec.experiment.evaluate import EvalConfig, eval_users, evaluate_topk
from debiasrec.lm.llm import CausalLM
from debiasrec.lm.templates import TextRenderer, Variant
from debiasrec.metrics.lm_bias import (
    jaccard_at_k,
    length_bias,
    mean_popularity_at_k,
    popularity_bias,
    top1_concentration,
)
from debiasrec.models import BPR, LLMRanker
from debiasrec.models.llm_ranker import CandidateScores

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

SEED, K, N_CAND = 2020, 10, 30
# Prompts carry the profile fields (age, gender, occupation) as well as the history, as in the
# FaiRLLM-style pilot; LLMRanker's default prompt has the history only.
PROFILE_TEMPLATE = {"profile": None}
SECTION = "Generative LLM ranker on ML-100K (SmolLM2-135M, BPR top-30 candidates)"


def variants(cs: CandidateScores, valid_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate scores of the four scoring rules from one pass (NaN where masked)."""
    n = np.where(cs.n_tokens > 0, cs.n_tokens, np.nan)
    out = {
        "sum": cs.logp_sum,
        "mean": cs.logp_sum / n,
        "PMI sum": cs.logp_sum - cs.prior_sum,
        "PMI mean": (cs.logp_sum - cs.prior_sum) / n,
    }
    return {k: np.where(valid_mask | (cs.items < 0), np.nan, v) for k, v in out.items()}


def top_k(items: np.ndarray, scores: np.ndarray, k: int = K) -> np.ndarray:
    s = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(items, order, axis=1)
    out[np.take_along_axis(np.isinf(s), order, axis=1)] = -1
    return out


def accuracy(topk: np.ndarray, users: np.ndarray, split: Any) -> tuple[float, float]:
    cfg = EvalConfig(ks=[K], metrics=["ndcg", "recall"], beyond=[], n_boot=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_topk(topk, users, split.train, split.test, config=cfg)
    r = ev.results.set_index(["metric", "group"])["value"]
    return float(r[(f"ndcg@{K}", "all")]), float(r[(f"recall@{K}", "all")])


def fmt(x: float, d: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{d}f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100, help="test users scored by every method")
    ap.add_argument("--swap-users", type=int, default=50, help="users in the Jaccard check")
    ap.add_argument("--ft-users", type=int, default=64, help="users sampled for LoRA tuning")
    ap.add_argument("--ft-epochs", type=int, default=1)
    ap.add_argument("--ft-lr", type=float, default=1e-3)
    ap.add_argument("--speed-candidates", type=int, default=10, help="naive-vs-packed check")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--json", default=None, help="also dump raw numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    command = "python benchmarks/llm_ml100k.py " + " ".join(sys.argv[1:])
    t_all = time.perf_counter()
    notes: dict[str, Any] = {"args": vars(args)}

    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=SEED)
    train = split.train
    pop = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
    rng = np.random.default_rng(SEED)
    users = np.sort(rng.choice(eval_users(split.test), args.users, replace=False))
    swap_users = users[: args.swap_users]
    valid_csr = split.valid.csr()

    def valid_mask_of(items: np.ndarray, us: np.ndarray) -> np.ndarray:
        """Which candidates are validation items of their user (masked from every list)."""
        rows_ = np.broadcast_to(us[:, None], items.shape).ravel()
        hit = np.asarray(valid_csr[rows_, np.maximum(items, 0).ravel()]).reshape(items.shape)
        return hit.astype(bool) & (items >= 0)

    # ---------------------------------------------------------------- loading and speed
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        CausalLM(cache_dir=tmp, device="cpu").load()
        notes["dequantize_and_cache_s"] = time.perf_counter() - t
        t = time.perf_counter()
        CausalLM(cache_dir=tmp, device="cpu").load()
        notes["cached_load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    bpr = BPR().fit(train, valid=split.valid, rng=SEED)
    notes["bpr_fit_s"] = time.perf_counter() - t
    retr = bpr.recommend(users, k=K, exclude=[valid_csr]).items
    rows: dict[str, dict[str, Any]] = {}
    nd, rc = accuracy(retr, users, split)
    rows["BPR retriever alone"] = {"ndcg": nd, "recall": rc, "top10": retr}

    zero = LLMRanker(n_candidates=N_CAND, calibration="pmi", device="cpu", batch_size=8,
                     user_template=PROFILE_TEMPLATE).fit(  # fmt: skip
        train, valid=split.valid, rng=SEED, retriever=bpr
    )
    lm: CausalLM = zero.lm
    # speed: packed vs naive on the same prompt and candidates
    cand_items, _ = zero.candidates(users[:1])
    titles = [[zero.titles_[i] for i in cand_items[0][: args.speed_candidates]]]
    prompt = zero._prompts([zero.user_texts_[users[0]]])
    t = time.perf_counter()
    a = lm.score_candidates(prompt, titles, method="packed")
    packed_s = time.perf_counter() - t
    t = time.perf_counter()
    b = lm.score_candidates(prompt, titles, method="naive")
    naive_s = time.perf_counter() - t
    notes["speed"] = {
        "candidates": args.speed_candidates,
        "packed_cand_per_s": args.speed_candidates / packed_s,
        "naive_cand_per_s": args.speed_candidates / naive_s,
        "max_abs_diff": float(np.nanmax(np.abs(a.sum - b.sum))),
    }
    print(json.dumps(notes), flush=True)

    def measure(model: LLMRanker, tag: str) -> None:
        t = time.perf_counter()
        cs = model.candidate_scores(users)
        secs = time.perf_counter() - t
        notes[f"{tag}_score_s_per_user"] = secs / len(users)
        vm = valid_mask_of(cs.items, users)
        renderer = TextRenderer(
            train,
            item_template=model.config.item_template,
            user_template=model.config.user_template,
        )
        swapped = renderer.user_texts(swap_users, Variant(history_from="other"), rng=SEED)
        if swapped == [model.user_texts_[u] for u in swap_users]:
            raise RuntimeError("history swap left the texts unchanged")
        t = time.perf_counter()
        cs_swap = model.candidate_scores(swap_users, swapped)
        notes[f"{tag}_swap_s"] = time.perf_counter() - t
        vs = valid_mask_of(cs_swap.items, swap_users)
        own, other = variants(cs, vm), variants(cs_swap, vs)
        for name, sc in own.items():
            top = top_k(cs.items, sc)
            nd, rc = accuracy(top, users, split)
            item, count, _ = top1_concentration(top)
            rows[f"{tag} {name}"] = {
                "ndcg": nd,
                "recall": rc,
                "top10": top,
                "length": float(np.nanmean(length_bias(sc, cs.n_tokens.astype(float)))),
                "pop_rho": float(np.nanmean(popularity_bias(sc, cs.items, pop))),
                "top1": f"{zero.titles_[item]} ({count}/{len(users)})" if item >= 0 else "-",
                "jaccard": float(
                    np.nanmean(
                        jaccard_at_k(top_k(cs.items, sc)[: len(swap_users)],
                                     top_k(cs_swap.items, other[name]), k=K)
                    )
                ),
            }  # fmt: skip
        # the retriever's own order within the candidates, for the bias columns
        if "BPR retriever alone" in rows and "length" not in rows["BPR retriever alone"]:
            r = np.where(vm | (cs.items < 0), np.nan, cs.retriever)
            r_item, r_count, _ = top1_concentration(retr)
            rows["BPR retriever alone"].update(
                length=float(np.nanmean(length_bias(r, cs.n_tokens.astype(float)))),
                pop_rho=float(np.nanmean(popularity_bias(r, cs.items, pop))),
                top1=f"{zero.titles_[r_item]} ({r_count}/{len(users)})",
                jaccard=1.0,
            )  # fmt: skip
        print(tag, json.dumps({k: v for k, v in notes.items() if k.startswith(tag)}), flush=True)

    measure(zero, "zero-shot")
    write(rows, notes, pop, users, args, command, t_all)

    t = time.perf_counter()
    tuned = LLMRanker(
        user_template=PROFILE_TEMPLATE,
        n_candidates=N_CAND,
        calibration="pmi",
        device="cpu",
        batch_size=8,
        finetune_users=args.ft_users,
        finetune_epochs=args.ft_epochs,
        finetune_lr=args.ft_lr,
    )
    tuned.fit(train, valid=split.valid, rng=SEED, retriever=bpr)
    notes["finetune_s"] = tuned.finetune_seconds_
    notes["finetune_losses"] = tuned.finetune_losses_
    notes["finetune_fit_s"] = time.perf_counter() - t
    measure(tuned, "LoRA")
    write(rows, notes, pop, users, args, command, t_all)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "notes": notes,
                    "rows": {
                        k: {a: b for a, b in v.items() if a != "top10"} for k, v in rows.items()
                    },
                },
                indent=2,
                default=float,
            )
        )


def write(
    rows: dict[str, dict[str, Any]],
    notes: dict[str, Any],
    pop: np.ndarray,
    users: np.ndarray,
    args: argparse.Namespace,
    command: str,
    t_all: float,
) -> None:
    lines = [
        f"| method | NDCG@{K} | Recall@{K} | length bias (Spearman score vs tokens) | "
        "popularity Spearman (score vs pop) | mean pop of top-10 | top-1 item (users) | "
        "Jaccard@10 own vs swapped history |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {fmt(r['ndcg'], 4)} | {fmt(r['recall'], 4)} | {fmt(r.get('length', np.nan))} "
            f"| {fmt(r.get('pop_rho', np.nan))} "
            f"| {fmt(float(np.nanmean(mean_popularity_at_k(r['top10'], pop, k=K))), 1)} "
            f"| {r.get('top1', '')} | {fmt(r.get('jaccard', np.nan))} |"
        )
    sp = notes.get("speed", {})
    ft = notes.get("finetune_losses")
    body = "\n".join(
        [
            __doc__.split("    python")[0].strip(),
            "",
            f"Test users: {len(users)} (same for every row); Jaccard over the first "
            f"{args.swap_users} of them. Fine-tuning: {args.ft_users} users x 1 target, "
            f"{args.ft_epochs} epoch(s), lr {args.ft_lr}, batch 4, {args.threads} threads.",
            "",
            *lines,
            "",
            "Speed and cost (wall clock, CPU, "
            f"{args.threads} torch threads; other processes shared the 2 cores, so absolute "
            "times are inflated and noisy):",
            "",
            f"- dequantize GGUF + write safetensors cache: {fmt(notes.get('dequantize_and_cache_s'), 1)} s;"
            f" load from the cache: {fmt(notes.get('cached_load_s'), 1)} s",
            f"- packed vs naive on one prompt x {sp.get('candidates')} candidates: "
            f"{fmt(sp.get('packed_cand_per_s'), 2)} vs {fmt(sp.get('naive_cand_per_s'), 2)} "
            f"candidates/s (max |difference| of log-likelihoods {fmt(sp.get('max_abs_diff'), 6)})",
            f"- zero-shot scoring of {N_CAND} candidates: "
            f"{fmt(notes.get('zero-shot_score_s_per_user'), 2)} s per user (packed, batch 8, "
            "including the PMI prior, computed once per item)",
            f"- LoRA fine-tuning: {fmt(notes.get('finetune_s'), 0)} s; training loss per epoch "
            f"(nats/token): {', '.join(fmt(x, 3) for x in ft) if ft else 'pending'}; "
            f"fine-tuned scoring {fmt(notes.get('LoRA_score_s_per_user'), 2)} s per user",
            f"- BPR fit {fmt(notes.get('bpr_fit_s'), 1)} s; whole benchmark "
            f"{fmt(time.perf_counter() - t_all, 0)} s",
        ]
    )
    print(body, flush=True)
    if not args.no_write:
        write_section(SECTION, command, body)


if __name__ == "__main__":
    main()
