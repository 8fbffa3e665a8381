"""Language models behind an OpenAI-compatible HTTP API, as recommenders and audit targets.

:class:`EndpointLM` has the interface of the in-process :class:`~debiasrec.lm.llm.CausalLM`
where it applies, so :class:`~debiasrec.models.llm_ranker.LLMRanker` and the counterfactual audit
use either one:

* **generation** (:meth:`EndpointLM.generate`): ``POST {url}/chat/completions`` with the user turn
  (and the system prompt when one is set), greedy (``temperature=0``). Works with any
  chat-completions server: vLLM, SGLang, llama.cpp's server, llama-cpp-python, Ollama, hosted APIs.
* **candidate scoring** (:meth:`EndpointLM.score_candidates`): for every (prompt, candidate) pair,
  ``POST {url}/completions`` with the raw text ``chat_template(prompt) + candidate + end-of-turn``
  (the chat template is applied here, with the served model's Hugging Face tokenizer, so the text
  is exactly what the in-process model scores), ``echo=true, logprobs=1, max_tokens=1``; the
  candidate's log-probability is the sum of the echoed prompt-token log-probabilities of its
  tokens. This needs a server that returns prompt-token log-probabilities (vLLM's and
  llama-cpp-python's completions do; llama.cpp's own ``llama-server``, Ollama and most hosted
  chat APIs do not, and the error says so).

Reliability: at most ``concurrency`` requests in flight (a thread pool), a per-request
``timeout``, retries with exponential backoff and jitter on connection errors, time-outs, HTTP 408,
409, 429 and 5xx (a ``Retry-After`` header is respected), then one :class:`EndpointError` naming
the URL and the last status. A wrong model name, a rejected key or a malformed request (HTTP 400,
401, 403, 404, 422) is a :class:`~debiasrec.errors.ConfigError` at once, without retries; a body
that is not the JSON an OpenAI-compatible server sends is an :class:`EndpointError`.

Every successful answer is cached on disk, keyed by the SHA-256 of the full request (URL and JSON
body: model, prompt, every parameter), so a re-run of an audit sends nothing and gets identical
answers. The API key is read from the environment variable ``api_key_env`` and only ever put in
the ``Authorization`` header: it is not part of the cache key, the cache files, the settings,
the usage counts or any message. :class:`Usage` counts requests sent, cache hits, retries and the
prompt / completion tokens the server reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from debiasrec.errors import ConfigError, DebiasrecError, MissingDependencyError
from debiasrec.lm.encoder import default_cache_dir, quiet_transformers
from debiasrec.lm.llm import CandidateLogProbs, dequantized_dir, resolve_llm

_API_EXTRA = "pip install 'debiasrec[api]'"
_RETRY_STATUS = {408, 409, 425, 429}
_MAX_RETRY_AFTER = 300.0


class EndpointError(DebiasrecError):
    """The server did not give a usable answer (down, overloaded, failing, or malformed JSON)."""


class EndpointSettings(BaseModel):
    """Where the model is served and how to talk to it.

    ``url`` is the API base as OpenAI clients take it, e.g. ``http://127.0.0.1:8000/v1`` (a URL
    without a path gets ``/v1``); requests go to ``{url}/completions``, ``{url}/chat/completions``
    and ``{url}/models``. ``extra_body`` adds request fields a server understands (e.g.
    ``{"top_k": 1}``); they are part of the cache key.
    """

    model_config = ConfigDict(extra="forbid")

    url: str
    model: str = Field(min_length=1, description="the served model name")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="environment variable holding the API key (never stored)"
    )
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    max_retries: int = Field(4, ge=0)
    backoff: float = Field(0.5, ge=0, description="first retry delay in seconds, doubled each time")
    max_backoff: float = Field(30.0, ge=0)
    concurrency: int = Field(4, ge=1, description="requests in flight at once")
    cache: bool = True
    cache_dir: str | None = Field(None, description="None: <debiasrec cache>/api")
    check_model: bool = Field(
        True, description="ask GET {url}/models first and refuse a model the server does not list"
    )
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"endpoint URL must be http(s)://host[:port][/path], got {v!r}")
        path = parts.path.rstrip("/") or "/v1"
        return f"{parts.scheme}://{parts.netloc}{path}"

    @field_validator("extra_body")
    @classmethod
    def _extra(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(v) & {"model", "prompt", "messages"})
        if clash:
            raise ValueError(f"extra_body cannot set {clash}")
        return v


@dataclass
class Usage:
    """What an :class:`OpenAIClient` has done (thread-safe counters)."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    retry_reasons: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: Any) -> None:
        with self._lock:
            for k, v in counts.items():
                if k == "retry_reason":
                    if len(self.retry_reasons) < 50:
                        self.retry_reasons.append(v)
                else:
                    setattr(self, k, getattr(self, k) + v)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests, "cache_hits": self.cache_hits,
                "retries": self.retries, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
                "retry_reasons": list(self.retry_reasons),
            }  # fmt: skip


def _require_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"httpx is needed to call an API: {_API_EXTRA}") from exc
    return httpx


def _detail(response: Any, limit: int = 300) -> str:
    """A short, single-line description of an error body (the server's message when JSON)."""
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = msg if isinstance(msg, str) else json.dumps(msg)
    except (ValueError, AttributeError):
        text = response.text
    text = " ".join(str(text).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _ascii(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii())


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), _MAX_RETRY_AFTER)


class OpenAIClient:
    """Cached, retrying, concurrent JSON requests to an OpenAI-compatible server.

    Args:
        settings: :class:`EndpointSettings`.
        seed: seed of the retry jitter (no global random state).
        sleep: the function that waits between retries (tests pass a recorder).
    """

    def __init__(
        self,
        settings: EndpointSettings,
        *,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.usage = Usage()
        self._sleep = sleep
        self._jitter = random.Random(seed)
        self._jitter_lock = threading.Lock()
        self._http: Any = None
        self._models_checked = False
        self._check_lock = threading.Lock()
        root = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir() / "api"
        self.cache_dir = root

    # ------------------------------------------------------------------ plumbing
    def _client(self) -> Any:
        if self._http is None:
            httpx = _require_httpx()
            self._http = httpx.Client(timeout=self.settings.timeout)
        return self._http

    def _headers(self) -> dict[str, str]:
        env = self.settings.api_key_env
        key = os.environ.get(env) if env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def cache_key(self, path: str, body: dict[str, Any]) -> str:
        """SHA-256 of the full request: URL and JSON body (never the key, which is a header)."""
        blob = json.dumps(
            {"url": f"{self.settings.url}/{path}", "body": body}, sort_keys=True,
            ensure_ascii=False, separators=(",", ":"),
        )  # fmt: skip
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_file(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        if not self.settings.cache:
            return None
        f = self._cache_file(key)
        try:
            return json.loads(f.read_text(encoding="utf-8"))["response"]
        except (OSError, ValueError, KeyError):
            return None

    def _cache_put(self, key: str, path: str, body: dict[str, Any], resp: dict[str, Any]) -> None:
        if not self.settings.cache:
            return
        f = self._cache_file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f"{f.name}.tmp{os.getpid()}.{threading.get_ident()}")
        record = {"url": f"{self.settings.url}/{path}", "body": body, "response": resp}
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, f)  # atomic: readers see a whole file or none

    def _delay(self, attempt: int) -> float:
        s = self.settings
        with self._jitter_lock:
            u = self._jitter.random()
        return min(s.max_backoff, s.backoff * 2**attempt) * (0.5 + 0.5 * u)

    # ------------------------------------------------------------------ requests
    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One request with retries; returns the decoded JSON object."""
        httpx = _require_httpx()
        s = self.settings
        url = f"{s.url}/{path}"
        client = self._client()
        attempts = s.max_retries + 1
        for attempt in range(attempts):
            wait: float | None = None
            start = time.perf_counter()
            try:
                if method == "GET":
                    r = client.get(url, headers=self._headers())
                else:
                    r = client.post(url, json=body, headers=self._headers())
            except httpx.TimeoutException:
                reason = f"no answer within the {s.timeout:g} s timeout"
            except httpx.TransportError as exc:
                reason = f"cannot connect ({type(exc).__name__}: {exc}); is the server running?"
            else:
                self.usage.add(requests=1, seconds=time.perf_counter() - start)
                code = r.status_code
                if 200 <= code < 300:
                    try:
                        data = r.json()
                    except ValueError:
                        raise EndpointError(
                            f"{url} answered HTTP {code} with a body that is not JSON: "
                            f"{_detail(r, 120)!r}; is this an OpenAI-compatible API base URL?"
                        ) from None
                    if not isinstance(data, dict):
                        raise EndpointError(f"{url} answered JSON that is not an object")
                    return data
                detail = _detail(r)
                if code in (401, 403):
                    env = s.api_key_env
                    hint = (
                        f"set the API key in the environment variable {env}"
                        if env and not os.environ.get(env)
                        else f"check the API key in {env}" if env else "give --api-key-env"
                    )  # fmt: skip
                    raise ConfigError(f"{url} refused the request (HTTP {code}): {detail}; {hint}")
                if code in (400, 404, 422):
                    if "model" in detail.lower():
                        raise ConfigError(
                            f"{url} does not serve model {s.model!r} (HTTP {code}): {detail}"
                        )
                    raise ConfigError(
                        f"{url} rejected the request (HTTP {code}): {detail}"
                        + ("; check the endpoint base URL (e.g. http://host:8000/v1)"
                           if code == 404 else "")
                    )  # fmt: skip
                if code not in _RETRY_STATUS and code < 500:
                    raise EndpointError(f"{url} answered HTTP {code}: {detail}")
                reason = f"HTTP {code}: {detail}"
                wait = _retry_after(r)
            if attempt + 1 == attempts:
                raise EndpointError(
                    f"{url}: {reason} (gave up after {attempts} attempt"
                    f"{'s' if attempts > 1 else ''})"
                )
            delay = self._delay(attempt) if wait is None else wait
            self.usage.add(retries=1, retry_reason=f"{path}: {reason}; retry in {delay:.2f} s")
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``{url}/{path}``: from the cache, else the server (then cached)."""
        key = self.cache_key(path, body)
        hit = self._cache_get(key)
        if hit is not None:
            self.usage.add(cache_hits=1)
            return hit
        self.check_model()
        resp = self._send("POST", path, body)
        if not isinstance(resp.get("choices"), list) or not resp["choices"]:
            raise EndpointError(
                f"{self.settings.url}/{path} answered JSON without 'choices': "
                f"{json.dumps(resp)[:200]}"
            )
        u = resp.get("usage") or {}
        self.usage.add(
            prompt_tokens=int(u.get("prompt_tokens") or 0),
            completion_tokens=int(u.get("completion_tokens") or 0),
        )
        self._cache_put(key, path, body, resp)
        return resp

    def post_many(self, path: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`post` for every body, ``concurrency`` at a time; answers in input order."""
        if not bodies:
            return []
        workers = min(self.settings.concurrency, len(bodies))
        if workers == 1:
            return [self.post(path, b) for b in bodies]
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = [pool.submit(self.post, path, b) for b in bodies]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def models(self) -> list[str]:
        """Model ids the server lists at ``GET {url}/models``."""
        data = self._send("GET", "models", None).get("data")
        if not isinstance(data, list):
            raise EndpointError(f"{self.settings.url}/models answered JSON without a 'data' list")
        return [str(m.get("id")) for m in data if isinstance(m, dict)]

    def check_model(self) -> None:
        """Refuse, once, a model the server does not list (when ``check_model`` is on)."""
        if self._models_checked or not self.settings.check_model:
            return
        with self._check_lock:
            if self._models_checked:
                return
            try:
                served = self.models()
            except ConfigError:  # the server has no /models route: skip the check
                served = []
            self._models_checked = True
        if served and self.settings.model not in served:
            raise ConfigError(
                f"{self.settings.url} does not serve model {self.settings.model!r}; it serves "
                f"{served[:10]}"
            )


def load_tokenizer(name: str | None, *, cache_dir: str | Path | None = None) -> Any:
    """The Hugging Face tokenizer of a model: a folder, a hub id, or a ``.gguf`` file.

    For a GGUF file the dequantized-weights folder :class:`~debiasrec.lm.llm.CausalLM` writes is
    used when present; otherwise the tokenizer is read from the GGUF file itself.
    """
    from debiasrec.lm.llm import _require

    transformers = _require("transformers")
    src = resolve_llm(name)
    try:
        with quiet_transformers():
            if isinstance(src, Path) and src.suffix == ".gguf":
                folder = dequantized_dir(src, cache_dir)
                if (folder / "tokenizer_config.json").is_file():
                    return transformers.AutoTokenizer.from_pretrained(str(folder))
                _require("gguf")
                return transformers.AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
            return transformers.AutoTokenizer.from_pretrained(str(src))
    except OSError as exc:
        raise ConfigError(
            f"cannot load the tokenizer of {name!r} ({src}): {exc}. Scoring over an API applies "
            "the model's chat template here: give its tokenizer as a local folder or .gguf file "
            "(tokenizer=...), or a hub id with network access"
        ) from exc


class EndpointLM:
    """A language model served behind an OpenAI-compatible API (see the module docstring).

    Args:
        settings: :class:`EndpointSettings` (URL, model name, retries, cache...).
        tokenizer: the served model's tokenizer (folder, hub id or ``.gguf``) for the chat
            template and the end-of-turn token in scoring mode; ``None``: ``settings.model``
            (the offline SmolLM2 name resolves to its packaged GGUF file).
        cache_dir: debiasrec cache root for the tokenizer of a GGUF file.
        system_prompt: system message (``None``: the chat template's default, as in process).
        use_chat_template: render prompts with the tokenizer's chat template (scoring mode).
        append_eos: score the end-of-turn token after each candidate (as ``CausalLM`` does).
        score_max_tokens: ``max_tokens`` of the scoring requests (some servers refuse 0).
        seed: ``seed`` field sent with generation requests (``None``: not sent) and the retry
            jitter seed.
        sleep: waiting function between retries (tests).

    Example:
        >>> lm = EndpointLM(EndpointSettings(url="http://127.0.0.1:8000/v1", model="m"))  # doctest: +SKIP
        >>> lm.generate(["List 3 movies."])  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: EndpointSettings | dict[str, Any],
        *,
        tokenizer: str | None = None,
        cache_dir: str | Path | None = None,
        system_prompt: str | None = None,
        use_chat_template: bool = True,
        append_eos: bool = True,
        score_max_tokens: int = 1,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = (
            settings
            if isinstance(settings, EndpointSettings)
            else EndpointSettings.model_validate(settings)
        )
        if score_max_tokens < 0:
            raise ConfigError("score_max_tokens must be >= 0")
        self.model_name = self.settings.model
        self.tokenizer_name = tokenizer
        self.cache_dir = cache_dir
        self.system_prompt = system_prompt
        self.use_chat_template = use_chat_template
        self.append_eos = append_eos
        self.score_max_tokens = score_max_tokens
        self.seed = seed
        self.client = OpenAIClient(self.settings, seed=seed or 0, sleep=sleep)
        self._tok: Any = None

    @property
    def usage(self) -> Usage:
        """Requests, cache hits, retries and tokens so far."""
        return self.client.usage

    def load(self) -> EndpointLM:
        """Nothing to load (the tokenizer loads on first use in scoring mode)."""
        return self

    @property
    def tokenizer(self) -> Any:
        if self._tok is None:
            self._tok = load_tokenizer(
                self.tokenizer_name or self.settings.model, cache_dir=self.cache_dir
            )
        return self._tok

    # ------------------------------------------------------------------ text
    def messages(self, text: str) -> list[dict[str, str]]:
        """The chat messages of a user turn ``text``."""
        msgs = []
        if self.system_prompt is not None:
            msgs.append({"role": "system", "content": self.system_prompt})
        msgs.append({"role": "user", "content": text})
        return msgs

    def format_prompt(self, text: str) -> str:
        """``text`` as a user turn in the tokenizer's chat template (or ``text`` itself)."""
        tok = self.tokenizer
        if self.use_chat_template and getattr(tok, "chat_template", None):
            return str(
                tok.apply_chat_template(
                    self.messages(text), tokenize=False, add_generation_prompt=True
                )
            )
        return text

    def _candidate(self, text: str) -> tuple[str, int]:
        """(candidate text + end-of-turn text, number of tokens the server should score)."""
        if not text:
            raise ConfigError("a candidate is empty; give non-empty text")
        tok = self.tokenizer
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        eos = tok.eos_token if self.append_eos else None
        return text + (eos or ""), len(ids) + (1 if eos else 0)

    # ------------------------------------------------------------------ scoring
    def _score_body(self, prompt: str) -> dict[str, Any]:
        return {
            **self.settings.extra_body,
            "model": self.settings.model,
            "prompt": prompt,
            "max_tokens": self.score_max_tokens,
            "temperature": 0,
            "echo": True,
            "logprobs": 1,
        }

    def _candidate_logprob(
        self, resp: dict[str, Any], prompt: str, cand: str, n_tokens: int
    ) -> float:
        """Sum of the echoed log-probabilities of the candidate's last ``n_tokens`` tokens."""
        url = f"{self.settings.url}/completions"
        choice = resp["choices"][0]
        lp = choice.get("logprobs") if isinstance(choice, dict) else None
        if not isinstance(lp, dict) or not isinstance(lp.get("token_logprobs"), list):
            raise EndpointError(
                f"{url} returned no prompt log-probabilities (echo=true, logprobs=1): this server "
                "cannot score candidates; use generation mode (--mode generate) or a server that "
                "echoes prompt log-probabilities (vLLM, llama-cpp-python)"
            )
        values = lp["token_logprobs"]
        offsets = lp.get("text_offset")
        full = len(prompt) + len(cand)
        # The echoed prompt's entries come first, then the generated tokens (the server's
        # completion token count; without usage, the entries whose text offset lies in the
        # prompt). Offsets alone are not enough: some servers print special tokens as "".
        usage = resp.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            n_prompt = len(values) - usage["completion_tokens"]
        elif isinstance(offsets, list) and len(offsets) == len(values):
            n_prompt = sum(1 for o in offsets if isinstance(o, int) and o < full)
        else:
            n_prompt = len(values) - self.score_max_tokens
        picked = values[n_prompt - n_tokens : n_prompt] if n_prompt >= n_tokens else []
        if len(picked) != n_tokens or any(not isinstance(v, (int, float)) for v in picked):
            raise EndpointError(
                f"{url}: cannot find the {n_tokens} log-probabilities of candidate {cand!r} in "
                f"the echoed prompt ({len(values)} entries); the server must echo every prompt "
                "token's log-probability"
            )
        tokens = lp.get("tokens")
        if isinstance(tokens, list) and len(tokens) == len(values):
            # Servers may print special tokens (the end-of-turn) as empty text, and a token
            # holding part of a multi-byte character as nothing (or as "bytes:..."): compare
            # the ASCII characters only.
            pieces = [str(t) for t in tokens[n_prompt - n_tokens : n_prompt]]
            got = "".join(t for t in pieces if not t.startswith("bytes:"))
            eos = self.tokenizer.eos_token or ""
            if _ascii(got) not in (_ascii(cand), _ascii(cand[: len(cand) - len(eos)])):
                raise EndpointError(
                    f"{url} tokenised candidate {cand!r} as {got!r}: the served model's tokenizer "
                    "differs from the one used here; give the served model's tokenizer"
                )
        return float(sum(picked))

    def score_candidates(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        batch_size: int = 8,
        formatted: bool = False,
        method: str | None = None,
    ) -> CandidateLogProbs:
        """Log-probabilities of ``candidates[i][j]`` as the answer to ``prompts[i]``.

        One completions request per (prompt, candidate), ``concurrency`` in flight; ``batch_size``
        and ``method`` are accepted for interface compatibility with ``CausalLM`` and unused.
        """
        del batch_size, method
        if len(prompts) != len(candidates):
            raise ConfigError(
                f"score_candidates: {len(prompts)} prompts but {len(candidates)} candidate lists"
            )
        texts = list(prompts) if formatted else [self.format_prompt(p) for p in prompts]
        n = len(texts)
        width = max((len(c) for c in candidates), default=0)
        total = np.full((n, width), np.nan)
        counts = np.zeros((n, width), dtype=np.int64)
        jobs: list[tuple[int, int, str, str, int]] = []
        memo: dict[str, tuple[str, int]] = {}
        for i, cs in enumerate(candidates):
            for j, c in enumerate(cs):
                if c not in memo:
                    memo[c] = self._candidate(c)
                cand, m = memo[c]
                jobs.append((i, j, texts[i], cand, m))
        answers = self.client.post_many(
            "completions", [self._score_body(p + c) for _, _, p, c, _ in jobs]
        )
        for (i, j, p, c, m), resp in zip(jobs, answers, strict=True):
            total[i, j] = self._candidate_logprob(resp, p, c, m)
            counts[i, j] = m
        return CandidateLogProbs(sum=total, n_tokens=counts)

    # ------------------------------------------------------------------ generation
    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = 128, batch_size: int = 8
    ) -> list[str]:
        """Greedy chat completions of ``prompts`` (each a user turn); ``batch_size`` is unused."""
        del batch_size
        if max_new_tokens < 1:
            raise ConfigError("generate: max_new_tokens must be >= 1")
        bodies = []
        for p in prompts:
            body = {
                **self.settings.extra_body,
                "model": self.settings.model,
                "messages": self.messages(p),
                "max_tokens": max_new_tokens,
                "temperature": 0,
            }
            if self.seed is not None:
                body["seed"] = self.seed
            bodies.append(body)
        out = []
        url = f"{self.settings.url}/chat/completions"
        for resp in self.client.post_many("chat/completions", bodies):
            choice = resp["choices"][0]
            msg = choice.get("message") if isinstance(choice, dict) else None
            content = msg.get("content") if isinstance(msg, dict) else None
            if content is None and isinstance(msg, dict) and "content" in msg:
                content = ""  # an empty answer (e.g. refused): counted as no titles
            if not isinstance(content, str):
                raise EndpointError(f"{url} answered without choices[0].message.content")
            out.append(content)
        return out
