"""The API backend against a real third-party OpenAI-compatible server: llama-cpp-python's.

The test starts ``python -m llama_cpp.server`` on 127.0.0.1 (a free port) with the offline
SmolLM2-135M-Instruct GGUF file, waits until it answers, and stops it afterwards. The server
runs the Q4_1 weights quantised (and quantises activations to 8 bits in its matrix products);
the in-process model runs the same weights dequantised to float32, so log-probabilities agree
only approximately: the test bounds the difference and checks that candidates the in-process
model separates clearly are ordered the same way by the server.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

INSTALL = "pip install 'llama-cpp-python[server]==0.3.36' (with CMAKE_ARGS=-DGGML_NATIVE=OFF)"
if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip(f"llama-cpp-python is not installed: {INSTALL}", allow_module_level=True)
pytest.importorskip("httpx")
pytest.importorskip("transformers")

from debiasrec.lm.api import EndpointLM, EndpointSettings  # noqa: E402
from debiasrec.lm.llm import DEFAULT_LLM, CausalLM, resolve_llm  # noqa: E402

SECRET = "sk-never-written-0987"
PROMPTS = [
    "User: gender female. Recently watched: Toy Story; Fargo.\n\nRecommend one movie this user "
    "will watch next. Answer with the title only.",
    "User: no profile.\n\nRecommend one movie. Answer with the title only.",
]
CANDS = [["Star Wars", "Heat", "The Usual Suspects", "Babe"], ["Jaws", "Casablanca", "Fargo"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, log file) of a llama-cpp-python server serving SmolLM2 on 127.0.0.1."""
    import httpx

    try:
        gguf = resolve_llm(None)
    except Exception as exc:  # the offline model package is missing
        pytest.skip(str(exc))
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
           "--model_alias", DEFAULT_LLM, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "1024", "--n_threads", "2", "--logits_all", "true", "--verbose", "false"]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within 180 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def local() -> CausalLM:
    return CausalLM(device="cpu").load()


def endpoint(url: str, cache: Path, **kw) -> EndpointLM:
    return EndpointLM(EndpointSettings(url=url, model=DEFAULT_LLM, cache_dir=str(cache),
                                       concurrency=2, **kw))  # fmt: skip


def test_scoring_over_the_api_agrees_with_the_in_process_model(server, local, tmp_path,
                                                               monkeypatch) -> None:  # fmt: skip
    url, _ = server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    api = endpoint(url, tmp_path / "cache")
    assert api.format_prompt(PROMPTS[0]) == local.format_prompt(PROMPTS[0])
    got = api.score_candidates(PROMPTS, CANDS)
    ref = local.score_candidates(PROMPTS, CANDS)
    np.testing.assert_array_equal(got.n_tokens, ref.n_tokens)  # same tokens scored
    ok = ~np.isnan(ref.sum)
    diff = np.abs(got.sum - ref.sum)[ok]
    # Q4_1 weights with 8-bit activations on the server vs float32 weights in process.
    assert diff.max() < 2.5, (got.sum, ref.sum)
    assert np.mean(diff / np.abs(ref.sum[ok])) < 0.1
    for i in range(len(PROMPTS)):
        r, g = ref.sum[i][ok[i]], got.sum[i][ok[i]]
        for a in range(len(r)):
            for b in range(len(r)):
                if r[a] > r[b] + 3.0:  # clearly separated in process: same order on the server
                    assert g[a] > g[b], (i, a, b, r, g)
    assert api.usage.requests >= 7 and api.usage.prompt_tokens > 0
    # A re-run reads the cache: nothing is sent and the numbers are identical.
    again = endpoint(url, tmp_path / "cache")
    np.testing.assert_array_equal(again.score_candidates(PROMPTS, CANDS).sum, got.sum)
    assert again.usage.requests == 0 and again.usage.cache_hits == 7
    for f in (tmp_path / "cache").rglob("*.json"):
        assert SECRET not in f.read_text()


def test_generation_over_the_api_is_matched_to_titles(server, tmp_path) -> None:
    from debiasrec.lm.matching import parse_list

    url, _ = server
    api = endpoint(url, tmp_path / "cache")
    out = api.generate(["List 5 famous movies, one title per line, titles only."],
                       max_new_tokens=60)  # fmt: skip
    assert len(out) == 1 and len(parse_list(out[0])) >= 2
    assert api.usage.completion_tokens > 0


def test_wrong_model_name_on_the_real_server(server, tmp_path) -> None:
    from debiasrec.errors import ConfigError

    url, _ = server
    api = EndpointLM({"url": url, "model": "gpt-9", "cache_dir": str(tmp_path / "c")})
    with pytest.raises(ConfigError, match=f"does not serve model 'gpt-9'.*{DEFAULT_LLM}"):
        api.generate(["hi"], max_new_tokens=2)


def test_cli_audit_through_the_endpoint(server, tmp_path, monkeypatch) -> None:
    """``debiasrec llm-audit --endpoint``: a result folder, usage counts, and no key anywhere."""
    import json

    import pandas as pd

    from debiasrec.cli import main

    url, _ = server
    monkeypatch.setenv("MY_KEY", SECRET)
    monkeypatch.setenv("DEBIASREC_CACHE", str(tmp_path / "dr-cache"))
    params = json.dumps({"retriever": "pop", "generate_max_new_tokens": 60,
                         "user_template": {"profile": [], "history": 3}})  # fmt: skip
    out = tmp_path / "audit"
    args = ["llm-audit", "--endpoint", url, "--model", DEFAULT_LLM, "--mode", "generate",
            "--api-key-env", "MY_KEY", "--api-cache", str(tmp_path / "api"), "--users", "2",
            "--attrs", "gender", "--n-perm", "20", "--params", params, "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["api"]["model"] == DEFAULT_LLM and summary["api"]["requests"] > 0
    assert summary["api"]["api_key_env"] == "MY_KEY"
    assert summary["generation"]["listed"] > 0
    res = pd.read_parquet(out / "results.parquet")
    rate = res[(res.metric == "gen_match_rate") & (res.group == "all")].value.iloc[0]
    assert 0 <= rate <= 1
    assert {"snsr_jaccard@10", "p_snsr_jaccard@10", "excess_snsr_jaccard@10"} <= set(res.metric)
    # the written config re-runs from the cache: no new request, identical results
    assert (
        main(["llm-audit", "--config", str(out / "config.toml"), "--out", str(tmp_path / "b")]) == 0
    )
    again = json.loads((tmp_path / "b" / "summary.json").read_text())["api"]
    assert again["requests"] == 0 and again["cache_hits"] > 0
    pd.testing.assert_frame_equal(res, pd.read_parquet(tmp_path / "b" / "results.parquet"))
    for root in (out, tmp_path / "api", tmp_path / "b"):
        for f in Path(root).rglob("*"):
            if f.is_file():
                assert SECRET.encode() not in f.read_bytes(), f
    assert os.environ["MY_KEY"] == SECRET
