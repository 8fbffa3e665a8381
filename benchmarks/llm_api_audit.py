"""The counterfactual audit of SmolLM2 served by a third-party server vs the same model in process.

A llama-cpp-python server (``python -m llama_cpp.server``, the OpenAI-compatible server of
llama-cpp-python 0.3.36) is started on 127.0.0.1 with the offline SmolLM2-135M-Instruct GGUF
file; the same audit (same users, seeds, variants, controls) is run on the in-process model
(``CausalLM``, the GGUF weights dequantized to float32) and through the API (``EndpointLM``):

* **generation mode**: the LLM writes a top-10 list (greedy), matched to the catalog; the
  in-process model renders the chat template with the Hugging Face tokenizer, the server with the
  GGUF file's copy of the same template;
* **scoring mode**: the retriever's top-``--candidates`` items re-ranked by the mean log-likelihood of the
  title (``LLMRanker`` defaults), top-``--k`` lists; the API gets the chat template rendered here.

Both runs share ML-100K, ``random_split(ds, rng=2020)``, the retriever (``--retriever``, seed 0), the
user text (history of the last ``--history`` titles, no profile; the audit adds the fields),
``AuditConfig(attrs=["gender"], typo_seeds=2, seed=0)`` with the placebo colour and
other-history controls. The server computes with the Q4_1 weights and 8-bit activations, the
in-process model in float32, so exact equality is not expected: the tables give how far apart
the log-likelihoods and the lists are.

    python benchmarks/llm_api_audit.py [--gen-users 20] [--score-users 5] [--candidates 8] [--k 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))

SPLIT_SEED = 2020
NAME = "SmolLM2-135M-Instruct"


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:  # pragma: no cover
        return "n/a"


def start_server(log: Path, threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    from debiasrec.lm.llm import resolve_llm

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_llm(None)),
           "--model_alias", NAME, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
           "--n_threads", str(threads), "--logits_all", "true", "--verbose", "false"]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(360):
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"server did not start: {log.read_text()[-1000:]}")


def lists_of(frame: pd.DataFrame) -> dict[tuple[str, int], tuple[int, ...]]:
    out = {}
    for (v, u), g in frame.groupby(["variant", "user"]):
        out[(v, int(u))] = tuple(g.sort_values("rank").item.tolist())
    return out


def compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float, int]:
    """(share of identical lists, mean Jaccard of the two runs' lists, number of lists)."""
    la, lb = lists_of(a), lists_of(b)
    same, jac = [], []
    for key, x in la.items():
        y = lb[key]
        same.append(x == y)
        sx, sy = {i for i in x if i >= 0}, {i for i in y if i >= 0}
        jac.append(len(sx & sy) / len(sx | sy) if sx | sy else 1.0)
    return float(np.mean(same)), float(np.mean(jac)), len(same)


def audit_table(res: dict[str, pd.DataFrame], k: int) -> list[str]:
    lines = [f"| family | run | SNSR Jaccard@{k} | excess over placebo [95% CI] | p (Holm) |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for fam in ("gender", "placebo:colour", "typo", "history=other"):
        for run, r in res.items():
            v = r.set_index(["metric", "group"])
            if fam == "history=other":
                j = v.loc[(f"jaccard@{k}", fam)].value
                lines.append(f"| other history (Jaccard@{k} vs neutral) | {run} | {j:.4f} | | |")
                continue
            s = v.loc[(f"snsr_jaccard@{k}", fam)].value
            ex = v.loc[(f"excess_snsr_jaccard@{k}", fam)] if (f"excess_snsr_jaccard@{k}", fam) in v.index else None  # noqa: E501
            ex_s = "" if ex is None else f"{ex.value:+.4f} [{ex.ci_low:+.4f}, {ex.ci_high:+.4f}]"
            p = v.loc[(f"p_snsr_jaccard@{k}", fam)].value if (f"p_snsr_jaccard@{k}", fam) in v.index else float("nan")  # noqa: E501
            lines.append(f"| {fam} | {run} | {s:.4f} | {ex_s} | {p:.4f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen-users", type=int, default=20)
    ap.add_argument("--score-users", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--history", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="generate,score")
    ap.add_argument("--k", type=int, default=5, help="list length in scoring mode")
    ap.add_argument("--retriever", choices=["bpr", "itemknn"], default="bpr")
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    command = "python benchmarks/llm_api_audit.py " + " ".join(sys.argv[1:])

    from debiasrec.data import load_dataset, random_split
    from debiasrec.experiment.llm_audit import run_audit
    from debiasrec.lm.templates import TextRenderer, Variant
    from debiasrec.models import BPR, ItemKNN, LLMRanker

    tmp = Path(tempfile.mkdtemp(prefix="llm_api_audit_"))
    print(f"raw results in {tmp}", flush=True)
    ds, _ = load_dataset("ml-100k")
    split = random_split(ds, rng=SPLIT_SEED)
    retr_cls = {"bpr": BPR, "itemknn": ItemKNN}[args.retriever]
    bpr = retr_cls().fit(split.train, valid=split.valid, rng=0)
    proc, url = start_server(tmp / "server.log", args.threads)
    sections: list[str] = []
    try:
        for mode in args.modes.split(","):
            n_users = args.gen_users if mode == "generate" else args.score_users
            k = 10 if mode == "generate" else min(args.k, args.candidates - 1)
            params = {"mode": mode, "n_candidates": args.candidates, "device": "cpu",
                      "generate_max_new_tokens": args.max_new_tokens, "outside_candidates": "-inf",
                      "user_template": {"profile": [], "history": args.history}}  # fmt: skip
            endpoint = {"url": url, "model": NAME, "cache_dir": str(tmp / "api"),
                        "concurrency": 2, "timeout": 600}  # fmt: skip
            cfg = {"n_users": n_users, "attrs": ["gender"], "typo_seeds": 2, "seed": 0, "k": k,
                   "n_perm": 1000, "n_boot": 500}  # fmt: skip
            runs, lists, secs, models = {}, {}, {}, {}
            for run, extra in (("in process", {}), ("API", {"endpoint": endpoint})):
                model = LLMRanker({**params, **extra, "retriever": args.retriever}).fit(
                    split.train, rng=0, retriever=bpr
                )
                t = time.perf_counter()
                runs[run], lists[run] = run_audit(model, split, config=cfg, method=run)
                secs[run] = time.perf_counter() - t
                models[run] = model
                runs[run].to_parquet(tmp / f"{mode}-{run.replace(' ', '_')}-results.parquet")
                lists[run].to_parquet(tmp / f"{mode}-{run.replace(' ', '_')}-lists.parquet")
                print(mode, run, f"{secs[run]:.0f} s", flush=True)
            api_model = models["API"]
            usage = api_model.lm_.usage.to_dict()
            # Re-run of the API audit: every answer from the cache.
            again = LLMRanker({**params, "endpoint": endpoint, "retriever": args.retriever}).fit(
                split.train, rng=0, retriever=bpr
            )
            t = time.perf_counter()
            res2, lists2 = run_audit(again, split, config=cfg, method="API")
            rerun_s = time.perf_counter() - t
            rerun = again.lm_.usage.to_dict()
            identical = res2.equals(runs["API"]) and lists2.equals(lists["API"])
            same, jac, n_lists = compare(lists["in process"], lists["API"])
            lines = [f"### {mode} mode: {n_users} users x {len(runs['API'][runs['API'].metric == f'cf_ndcg@{k}'])} "
                     f"prompts each", ""]  # fmt: skip  # noqa: E501
            lines += audit_table(runs, k)
            lines += ["",
                      f"- Lists of the two runs (every variant x user, {n_lists} lists of {k}): "
                      f"identical {same:.1%}, mean Jaccard@{k} between them {jac:.3f}.",
                      f"- Audit time: in process {secs['in process']:.0f} s, API "
                      f"{secs['API']:.0f} s ({usage['requests']} HTTP requests, "
                      f"{usage['cache_hits']} answered from the cache, {usage['retries']} "
                      f"retries, {usage['prompt_tokens']} prompt + "
                      f"{usage['completion_tokens']} completion tokens). Re-run through the "
                      f"API: {rerun['requests']} requests, {rerun['cache_hits']} cache hits, "
                      f"{rerun_s:.1f} s, results identical: {identical}."]  # fmt: skip
            if mode == "generate":
                for run, r in runs.items():
                    v = r.set_index(["metric", "group"]).value
                    lines.append(f"- {run}: match rate of generated titles "
                                 f"{v[('gen_match_rate', 'all')]:.1%}, matched unseen items per "
                                 f"list {v[('gen_items_per_list', 'all')]:.2f} (of {k}).")  # fmt: skip
            else:
                renderer = TextRenderer(split.train, user_template=models["API"].config.user_template)
                users = np.sort(lists["API"].user.unique())
                neutral = renderer.user_texts(users, Variant("neutral", set={}))
                cs = {run: m.candidate_scores(users, neutral) for run, m in models.items()}
                a, b = cs["in process"].logp_sum, cs["API"].logp_sum
                ok = ~np.isnan(a)
                d = np.abs(a - b)[ok]
                from scipy.stats import spearmanr

                rho = [spearmanr(a[i][ok[i]], b[i][ok[i]]).statistic for i in range(len(users))]
                ma, mb = cs["in process"].scores, cs["API"].scores
                top_same = np.mean([set(np.argsort(-ma[i])[:k]) == set(np.argsort(-mb[i])[:k])
                                    for i in range(len(users))])  # fmt: skip
                gaps = np.sort(ma, axis=1)[:, ::-1]
                lines.append(
                    f"- Log-likelihood of each candidate title, neutral prompt, {ok.sum()} "
                    f"(user, candidate) pairs: |in process - API| max {d.max():.3f}, mean "
                    f"{d.mean():.3f} nats (mean |in process| {np.abs(a[ok]).mean():.2f}); "
                    f"per-user Spearman of the two score vectors mean {np.mean(rho):.3f}, min "
                    f"{np.min(rho):.3f}; same top-{k} set for {top_same:.0%} of users; median "
                    f"gap between neighbouring in-process mean scores "
                    f"{np.median(-np.diff(gaps, axis=1)):.3f} nats/token.")  # fmt: skip
            body = "\n".join(lines)
            print(body, flush=True)
            sections.append(body)
            if not args.no_write:
                from _results import write_section

                head = (
                    __doc__.split("    python")[0].strip()
                    + f"\n\nServer: llama-cpp-python 0.3.36 (llama.cpp built from source, "
                    f"GGML_NATIVE=OFF), {args.threads} threads; in process: torch "
                    f"{torch.__version__}, {args.threads} threads. 1-min load average at the "
                    f"end: {loadavg()} (the 2-core machine was shared; times are not final)."
                )
                write_section(f"LLM audit through an API vs in process, {mode} mode (SmolLM2, "
                              "llama-cpp-python server)", command, head + "\n\n" + body)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps({"tmp": str(tmp)}))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
