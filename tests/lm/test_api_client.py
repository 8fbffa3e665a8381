"""The API backend's failure handling, retries, cache and key handling, against real HTTP servers.

A small scripted server (``http.server`` in a thread, on 127.0.0.1) plays the failures: 429 with
Retry-After, 500s, malformed JSON, a slow answer, a wrong model name, a rejected key. Agreement
with the in-process model is tested against a real third-party server in test_api_server.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("httpx")


from debiasrec.errors import ConfigError  # noqa: E402
from debiasrec.lm.api import EndpointError, EndpointLM, EndpointSettings, OpenAIClient  # noqa: E402

OK = {
    "choices": [{"text": "hi", "index": 0}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}
SECRET = "sk-test-SECRET-4242"


class Scripted:
    """A real HTTP server answering from a script: per request, ``(status, body, headers, delay)``.

    When the script runs out, the last entry repeats. ``GET /v1/models`` lists ``models``.
    """

    def __init__(self, script, models=("m",)) -> None:
        self.script = list(script)
        self.models = None if models is None else list(models)
        self.requests: list[tuple[str, dict, dict]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # keep test output clean
                pass

            def _answer(self, status, body, headers) -> None:
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path.endswith("/models") and outer.models is not None:
                    self._answer(200, {"data": [{"id": m} for m in outer.models]}, {})
                else:
                    self._answer(404, {"error": {"message": "no such route"}}, {})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                with lock:
                    outer.requests.append((self.path, dict(self.headers), body))
                    step = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                status, resp, headers, delay = (*step, {}, 0.0)[:4] if len(step) < 4 else step
                try:
                    time.sleep(delay)
                    if callable(resp):
                        resp = resp(body)
                finally:
                    # counted out before the answer is sent: once the client has the answer it
                    # may send its next request, which must not find this one still counted
                    with lock:
                        outer.in_flight -= 1
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer(status, resp, headers)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def posts(self) -> int:
        return len(self.requests)


def client(url, tmp_path, sleeps=None, **kw) -> OpenAIClient:
    settings = EndpointSettings(url=url, model="m", cache_dir=str(tmp_path / "cache"),
                                backoff=0.1, **kw)  # fmt: skip
    return OpenAIClient(settings, sleep=(sleeps.append if sleeps is not None else time.sleep))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_429_with_retry_after_is_retried_and_recorded(tmp_path) -> None:
    sleeps: list[float] = []
    script = [(429, {"error": {"message": "slow down"}}, {"Retry-After": "2"}, 0), (200, OK)]
    with Scripted(script) as srv:
        c = client(srv.url, tmp_path, sleeps)
        resp = c.post("completions", {"model": "m", "prompt": "x"})
    assert resp["choices"][0]["text"] == "hi"
    assert srv.posts == 2
    assert sleeps == [2.0]  # the server's Retry-After, not our backoff
    u = c.usage.to_dict()
    assert u["retries"] == 1 and u["requests"] == 3  # GET /models, then 429, 200
    assert u["prompt_tokens"] == 3 and u["completion_tokens"] == 1
    assert "HTTP 429: slow down" in u["retry_reasons"][0]


def test_500s_back_off_exponentially_then_one_clear_error(tmp_path) -> None:
    sleeps: list[float] = []
    with Scripted([(500, {"error": {"message": "boom"}})]) as srv:
        c = client(srv.url, tmp_path, sleeps, max_retries=3)
        with pytest.raises(EndpointError) as ei:
            c.post("completions", {"model": "m", "prompt": "x"})
    msg = str(ei.value)
    assert srv.url + "/completions" in msg and "HTTP 500: boom" in msg
    assert "gave up after 4 attempts" in msg
    assert srv.posts == 4 and c.usage.retries == 3
    # backoff 0.1 * 2^attempt with jitter in [0.5, 1] of it
    for a, s in enumerate(sleeps):
        assert 0.05 * 2**a <= s <= 0.1 * 2**a


def test_server_down_is_one_clear_error(tmp_path) -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{free_port()}/v1"
    c = client(url, tmp_path, sleeps, max_retries=2)
    with pytest.raises(EndpointError, match="cannot connect.*is the server running.*3 attempts"):
        c.post("completions", {"model": "m", "prompt": "x"})
    assert len(sleeps) == 2


def test_timeout_is_retried_then_reported(tmp_path) -> None:
    with Scripted([(200, OK, {}, 1.5)]) as srv:
        c = client(srv.url, tmp_path, [], timeout=0.3, max_retries=1)
        with pytest.raises(EndpointError, match="no answer within the 0.3 s timeout"):
            c.post("completions", {"model": "m", "prompt": "x"})
        assert srv.posts == 2


def test_malformed_json_is_one_clear_error_without_retry(tmp_path) -> None:
    with Scripted([(200, b"<html>not json{")]) as srv:
        c = client(srv.url, tmp_path, [])
        with pytest.raises(EndpointError, match="not JSON.*OpenAI-compatible"):
            c.post("completions", {"model": "m", "prompt": "x"})
        assert srv.posts == 1
    with Scripted([(200, {"object": "list"})]) as srv:
        c = client(srv.url, tmp_path, [])
        with pytest.raises(EndpointError, match="without 'choices'"):
            c.post("completions", {"model": "m", "prompt": "x"})


def test_wrong_model_name_is_a_config_error_without_retry(tmp_path) -> None:
    # the server lists its models: refused before any completion request
    with Scripted([(200, OK)], models=["SmolLM2"]) as srv:
        c = client(srv.url, tmp_path, [])
        with pytest.raises(ConfigError, match=r"does not serve model 'm'.*\['SmolLM2'\]"):
            c.post("completions", {"model": "m", "prompt": "x"})
        assert srv.posts == 0
    # no /models route; the completion answers 404 naming the model (vLLM, OpenAI)
    err = {"error": {"message": "The model `m` does not exist.", "code": 404}}
    with Scripted([(404, err)], models=None) as srv:
        c = client(srv.url, tmp_path, [])
        with pytest.raises(ConfigError, match="does not serve model 'm' .HTTP 404.: The model"):
            c.post("completions", {"model": "m", "prompt": "x"})
        assert srv.posts == 1


def test_rejected_key_names_the_variable_not_the_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    with Scripted([(401, {"error": {"message": "invalid api key"}})]) as srv:
        c = client(srv.url, tmp_path, [], api_key_env="MY_KEY")
        with pytest.raises(ConfigError) as ei:
            c.post("completions", {"model": "m", "prompt": "x"})
        assert srv.posts == 1
        assert srv.requests[0][1]["Authorization"] == f"Bearer {SECRET}"
    assert "MY_KEY" in str(ei.value) and SECRET not in str(ei.value)
    monkeypatch.delenv("MY_KEY")
    with Scripted([(401, {"error": {"message": "no key"}})]) as srv:
        c = client(srv.url, tmp_path, [], api_key_env="MY_KEY")
        with pytest.raises(ConfigError, match="set the API key in the environment variable MY_KEY"):
            c.post("completions", {"model": "m", "prompt": "x"})
        assert "Authorization" not in srv.requests[0][1]


def test_cache_makes_a_rerun_free_and_identical_and_never_holds_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    n = {"i": 0}

    def counter(body):
        n["i"] += 1
        return {"choices": [{"text": f"answer {n['i']}"}], "usage": {"prompt_tokens": 2}}

    with Scripted([(200, counter)]) as srv:
        a = client(srv.url, tmp_path)
        first = a.post_many("completions", [{"model": "m", "prompt": p} for p in "abc"])
        b = client(srv.url, tmp_path)  # a new process would see the same files
        again = b.post_many("completions", [{"model": "m", "prompt": p} for p in "abc"])
        other = b.post("completions", {"model": "m", "prompt": "a", "temperature": 1})
    assert first == again and srv.posts == 4
    assert b.usage.cache_hits == 3 and b.usage.requests == 2  # GET /models on the miss + POST
    assert other["choices"][0]["text"] == "answer 4"  # another parameter: another request
    files = list((tmp_path / "cache").rglob("*"))
    assert sum(f.suffix == ".json" for f in files) == 4
    assert not [f for f in files if ".tmp" in f.name]  # atomic writes leave no temp files
    for f in files:
        if f.is_file():
            assert SECRET not in f.read_text()


def test_concurrency_is_bounded_and_order_kept(tmp_path) -> None:
    # each answer takes 0.5 s: with 3 workers, 9 requests overlap (never more than 3 at once)
    with Scripted([(200, lambda body: {"choices": [{"text": body["prompt"]}]}, {}, 0.5)]) as srv:
        c = client(srv.url, tmp_path, concurrency=3, cache=False)
        out = c.post_many("completions", [{"model": "m", "prompt": str(i)} for i in range(9)])
    assert [o["choices"][0]["text"] for o in out] == [str(i) for i in range(9)]
    assert srv.max_in_flight <= 3
    assert srv.max_in_flight >= 2, "requests did not overlap"


def test_settings_are_validated() -> None:
    assert EndpointSettings(url="http://h:8000", model="m").url == "http://h:8000/v1"
    assert EndpointSettings(url="https://api.x/v1/", model="m").url == "https://api.x/v1"
    with pytest.raises(ValueError, match="http"):
        EndpointSettings(url="h:8000", model="m")
    with pytest.raises(ValueError, match="extra_body"):
        EndpointSettings(url="http://h", model="m", extra_body={"prompt": "x"})
    with pytest.raises(ValueError):
        EndpointSettings(url="http://h", model="m", concurrency=0)


# ---------------------------------------------------------------------------- EndpointLM parsing
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    pytest.importorskip("transformers")
    from debiasrec.testing.tiny_lm import save_tiny_causal_lm

    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "m")


def echo_answer(lm: EndpointLM, extra_tokens: int = 1):
    """An answer in the OpenAI completions format: echoed prompt + one generated token, with
    log-probability -(index + 1) / 100 per token, byte-level tokens as the tiny tokenizer has."""

    def answer(body):
        ids = lm.tokenizer(body["prompt"], add_special_tokens=False)["input_ids"]
        toks = [lm.tokenizer.decode([t]) for t in ids] + ["!"] * extra_tokens
        offs = list(np.cumsum([0] + [len(t) for t in toks[:-1]]))
        lps = [None] + [-(k + 1) / 100 for k in range(1, len(toks))]
        return {"choices": [{"text": body["prompt"] + "!", "logprobs": {
            "tokens": toks, "token_logprobs": lps, "text_offset": [int(o) for o in offs]}}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": extra_tokens}}  # fmt: skip

    return answer


def test_scoring_sums_the_candidate_tokens_of_the_echo(tmp_path, tiny_folder) -> None:
    with Scripted([(200, None)]) as srv:
        lm = EndpointLM({"url": srv.url, "model": "m", "cache_dir": str(tmp_path / "c")},
                        tokenizer=str(tiny_folder))  # fmt: skip
        srv.script = [(200, echo_answer(lm))]
        lp = lm.score_candidates(["hello", "hi"], [["Heat", "A"], ["Fargo"]])
    prompt = lm.format_prompt("hello")
    n_p = len(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    # "Heat" + <|im_end|>: 5 tokens at echo indices n_p .. n_p + 4
    expect = -sum(k + 1 for k in range(n_p, n_p + 5)) / 100
    assert lp.sum[0, 0] == pytest.approx(expect)
    assert lp.n_tokens.tolist() == [[5, 2], [6, 0]]
    assert np.isnan(lp.sum[1, 1])
    sent = next(r[2] for r in srv.requests if r[2]["prompt"].endswith("Heat<|im_end|>"))
    assert sent["echo"] is True and sent["logprobs"] == 1 and sent["max_tokens"] == 1
    assert sent["prompt"] == prompt + "Heat<|im_end|>"  # chat template applied here


def test_scoring_without_prompt_logprobs_says_so(tmp_path, tiny_folder) -> None:
    with Scripted([(200, {"choices": [{"text": "x", "logprobs": None}]})]) as srv:
        lm = EndpointLM({"url": srv.url, "model": "m", "cache_dir": str(tmp_path / "c")},
                        tokenizer=str(tiny_folder))  # fmt: skip
        with pytest.raises(EndpointError, match="no prompt log-probabilities.*--mode generate"):
            lm.score_candidates(["hello"], [["Heat"]])


def test_generation_sends_chat_messages(tmp_path) -> None:
    answer = {"choices": [{"message": {"role": "assistant", "content": "1. Heat\n2. Fargo"}}],
              "usage": {"prompt_tokens": 20, "completion_tokens": 6}}  # fmt: skip
    with Scripted([(200, answer)]) as srv:
        lm = EndpointLM({"url": srv.url, "model": "m", "cache_dir": str(tmp_path / "c")},
                        system_prompt="Be brief.", seed=3)  # fmt: skip
        out = lm.generate(["List 2 movies."], max_new_tokens=40)
    assert out == ["1. Heat\n2. Fargo"]
    body = srv.requests[0][2]
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "List 2 movies."}]  # fmt: skip
    assert body["temperature"] == 0 and body["max_tokens"] == 40 and body["seed"] == 3
    assert lm.usage.completion_tokens == 6
