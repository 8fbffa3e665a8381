"""Candidate-scoring throughput of CausalLM: the previous packed path vs the shared-prefix path.

Workload (the LLM ranker's): ML-100K, ``random_split(ds, rng=2020)``, BPR (seed 2020) top-30
unseen items of the first ``--prompts`` test users (drawn with seed 2020) as candidates; each
prompt is ``LLMRanker``'s default instruction around the user text (age, gender, occupation and
the last 10 training titles), in the model's chat template. Every method scores the same prompts
and candidates; the table gives candidates per second (best of ``--repeats`` timed runs after
one warm-up run; methods interleaved) and the largest difference of the log-probabilities from the packed path.

Models: ``smollm2`` (the offline SmolLM2-135M-Instruct, dequantized) or a randomly initialised
Llama of a given shape (``--shape smollm2`` = SmolLM2's 576 x 30 layers, ``1b`` = Llama-3.2-1B's
2048 x 16 layers, 32 heads, 8 KV heads, 8192 MLP; the vocabulary is SmolLM2's 49,152 tokens), so a
GPU run needs no weights:

    python benchmarks/llm_throughput.py --model smollm2 --threads 2                 # CPU
    python benchmarks/llm_throughput.py --model random --shape 1b --device cuda \\
        --dtype bfloat16 --prompts 256 --batch-size 64                              # one GPU

Timings need a quiet machine: the 1-minute load average before and after is printed and written
with the numbers, which are marked "not final" when it is above 1.5 (CPU runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

SEED, N_CAND = 2020, 30
SHAPES = {
    "smollm2": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, intermediate_size=1536),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, intermediate_size=8192),
}  # fmt: skip


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


def workload(
    n_prompts: int, n_cand: int, retriever: str = "bpr"
) -> tuple[list[str], list[list[str]]]:
    """Prompts (user turns) and candidate titles of the LLM ranker on ML-100K."""
    from debiasrec.data.purify import load_dataset
    from debiasrec.data.split import random_split
    from debiasrec.experiment.evaluate import eval_users
    from debiasrec.lm.templates import TextRenderer, UserTemplate
    from debiasrec.models import model_class
    from debiasrec.models.llm_ranker import LLMRankerConfig

    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=SEED)
    rng = np.random.default_rng(SEED)
    users = np.sort(rng.choice(eval_users(split.test), n_prompts, replace=False))
    bpr = model_class(retriever)().fit(split.train, valid=split.valid, rng=SEED)
    items = bpr.recommend(users, k=n_cand).items
    renderer = TextRenderer(split.train, user_template=UserTemplate(profile=None))
    titles = renderer.titles()
    instr = LLMRankerConfig().instruction
    prompts = [instr.format(user=t) for t in renderer.user_texts(users)]
    cands = [[titles[i] for i in row if i >= 0] for row in items]
    return prompts, cands


def build_lm(args: argparse.Namespace):
    from debiasrec.lm.llm import CausalLM

    if args.model == "smollm2":
        lm = CausalLM(device=args.device, dtype=args.dtype).load()
        return lm, "SmolLM2-135M-Instruct (dequantized GGUF)"
    import transformers

    from debiasrec.lm.api import load_tokenizer

    tok = load_tokenizer(None)  # SmolLM2's tokenizer and chat template
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
        **SHAPES[args.shape],
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(cfg).to(getattr(torch, args.dtype))
    model.eval()
    n = sum(p.numel() for p in model.parameters()) / 1e6
    lm = CausalLM.from_objects(model, tok, device=args.device)
    return lm, f"random Llama, shape {args.shape} ({n:.0f}M parameters)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["smollm2", "random"], default="smollm2")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--candidates", type=int, default=N_CAND)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--methods", default="packed,shared")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--retriever", default="bpr", help="candidate generator (pop: a quick check)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    command = "python benchmarks/llm_throughput.py " + " ".join(sys.argv[1:])
    prompts, cands = workload(args.prompts, args.candidates, args.retriever)
    lm, desc = build_lm(args)
    n_cand = sum(len(c) for c in cands)
    load_before = loadavg()
    rows = []
    methods = args.methods.split(",")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for method in methods:  # warm-up
        lm.score_candidates(prompts[: args.batch_size], cands[: args.batch_size], method=method,
                            batch_size=args.batch_size)  # fmt: skip
    best = dict.fromkeys(methods, float("inf"))
    sums = {}
    for rep in range(args.repeats):  # interleaved, so load changes hit every method alike
        for method in methods:
            sync()
            t = time.perf_counter()
            lp = lm.score_candidates(prompts, cands, method=method, batch_size=args.batch_size)
            sync()
            best[method] = min(best[method], time.perf_counter() - t)
            sums[method] = lp.sum
            print(f"repeat {rep} {method}: {time.perf_counter() - t:.2f} s", flush=True)
    for method in methods:
        diff = float(np.nanmax(np.abs(sums[method] - sums[methods[0]])))
        rows.append((method, best[method], n_cand / best[method], diff))
    load_after = loadavg()
    base = rows[0][2]
    dev = args.device + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda")
                         else f", {args.threads} torch threads")  # fmt: skip
    lines = [
        f"Model: {desc}; device {dev}; dtype {args.dtype}; {args.prompts} prompts x "
        f"{args.candidates} candidates ({n_cand} candidates), batch {args.batch_size}, best of "
        f"{args.repeats} interleaved runs after a warm-up. Load average (1 min) before / after: "
        f"{load_before:.2f} / {load_after:.2f}"
        + (" - the machine was busy: NOT FINAL" if args.device == "cpu"
           and max(load_before, load_after) > 1.5 else "") + ".",
        "",
        "| method | seconds | candidates/s | speed-up | max abs diff of log-probs vs first |",
        "| --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for method, secs, cps, diff in rows:
        lines.append(f"| {method} | {secs:.2f} | {cps:.1f} | {cps / base:.2f}x | {diff:.1e} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        from _results import write_section

        name = (f"LLM candidate-scoring throughput ({args.model}"
                f"{'' if args.model == 'smollm2' else ' ' + args.shape}, {args.device}, "
                f"{args.dtype})")  # fmt: skip
        write_section(name, command, body)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
