"""Content-addressed cache of experiment stages (split, pre-processing, training, evaluation, post).

Every stage's output is stored under ``ROOT/STAGE/KEY/`` where ``KEY`` is the SHA-256 of a JSON
payload holding everything the stage depends on: the keys of the stages it reads (so a change
anywhere upstream changes every key below it), its own config, the seed, the debiasrec version
and a hash of debiasrec's source code (:func:`code_hash`), so a fixed metric or model never
returns stale cached numbers and no version needs bumping by hand. Re-running an unchanged
config with unchanged code finds every key and recomputes nothing; changing a post-processor's
strength changes only the keys of that post-processing stage.

Durability: an entry is written under a temporary name; every file is flushed to disk
(``fsync``) and listed with its size and SHA-256 in ``_manifest.json`` before the folder is
renamed into place and marked complete, so an interrupted run never leaves a half-written
entry. A complete entry whose files no longer match its manifest (truncated, edited, missing)
is detected when it is read, recomputed and replaced, with a :class:`CacheWarning`; so is an
entry whose loader fails.

Each lookup is recorded in a :class:`StageLog` (``summary.json["stages"]``): stage, label, key,
``computed``, ``cached`` or ``recomputed (corrupt entry)``, seconds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debiasrec import __version__

MANIFEST = "_manifest.json"
COMPLETE = "_complete"


class CacheWarning(UserWarning):
    """A cache entry was unreadable or corrupt and was recomputed."""


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """SHA-256 (16 hex digits) of every ``.py`` file of the installed debiasrec package.

    Part of every stage key: any change to the library's code invalidates cached stages.
    """
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def stage_key(stage: str, payload: dict[str, Any]) -> str:
    """Hex key (24 digits) of a stage: hash of its name, payload, version and code hash."""
    text = json.dumps(
        {"stage": stage, "version": __version__, "code": code_hash(), "payload": payload},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class StageRecord:
    """One stage lookup."""

    stage: str
    label: str
    key: str
    status: str  # "computed" | "cached" | "computed (not cacheable)" | "recomputed (...)"
    seconds: float


@dataclass
class StageLog:
    """What each stage of a run did (computed or loaded from the cache)."""

    records: list[StageRecord] = field(default_factory=list)

    def add(self, stage: str, label: str, key: str, status: str, seconds: float) -> None:
        self.records.append(StageRecord(stage, label, key, status, round(seconds, 4)))

    def count(self, stage: str, status: str = "computed") -> int:
        """How many ``stage`` lookups had ``status`` (``computed`` counts non-cacheable ones)."""
        return sum(1 for r in self.records if r.stage == stage and r.status.startswith(status))

    def to_list(self) -> list[dict[str, Any]]:
        return [r.__dict__.copy() for r in self.records]

    def totals(self) -> dict[str, dict[str, int]]:
        """``{stage: {"computed": n, "cached": m}}``."""
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            d = out.setdefault(r.stage, {"computed": 0, "cached": 0})
            d["cached" if r.status == "cached" else "computed"] += 1
        return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name not in (MANIFEST, COMPLETE)
    )


def write_manifest(folder: Path) -> None:
    """Flush every file of ``folder`` to disk and record its size and SHA-256."""
    entries = {}
    for p in _files(folder):
        _fsync(p)
        entries[str(p.relative_to(folder))] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    manifest = folder / MANIFEST
    manifest.write_text(json.dumps(entries, indent=1, sort_keys=True))
    _fsync(manifest)


def verify_manifest(folder: Path) -> str | None:
    """None when ``folder`` matches its manifest, else what is wrong."""
    try:
        entries = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return f"no readable manifest ({exc})"
    present = {str(p.relative_to(folder)) for p in _files(folder)}
    if set(entries) != present:
        return f"files differ from the manifest ({sorted(set(entries) ^ present)[:3]})"
    for rel, meta in entries.items():
        path = folder / rel
        if path.stat().st_size != meta["size"]:
            return f"{rel} has {path.stat().st_size} bytes, {meta['size']} were written"
        if _sha256(path) != meta["sha256"]:
            return f"{rel} does not match its checksum"
    return None


class StageCache:
    """Stage outputs on disk under ``root`` (None: nothing is cached, everything computed)."""

    def __init__(self, root: str | Path | None, log: StageLog | None = None) -> None:
        self.root = None if root is None else Path(root)
        self.log = log or StageLog()

    def folder(self, stage: str, key: str) -> Path | None:
        """The complete entry of ``(stage, key)``, or None when absent (or caching is off)."""
        if self.root is None:
            return None
        path = self.root / stage / key
        return path if (path / COMPLETE).is_file() else None

    @contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path | None]:
        """A temporary folder to fill; renamed to the entry on success, removed on error."""
        if self.root is None:
            yield None
            return
        final = self.root / stage / key
        tmp = self.root / stage / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            yield tmp
            write_manifest(tmp)
            (tmp / COMPLETE).write_text("")
            _fsync(tmp / COMPLETE)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def get_or_compute(
        self,
        stage: str,
        label: str,
        key: str,
        compute: Callable[[], Any],
        save: Callable[[Any, Path], bool],
        load: Callable[[Path], Any],
    ) -> Any:
        """Load ``(stage, key)`` if cached and intact, else ``compute()`` and ``save`` it.

        ``save(value, folder)`` returns False when the value cannot be stored (e.g. a model
        without persistence); the run goes on and the stage is logged as not cacheable. A
        corrupt or unloadable entry is recomputed with a :class:`CacheWarning`.
        """
        t = time.perf_counter()
        found = self.folder(stage, key)
        status = "computed"
        if found is not None:
            problem = verify_manifest(found)
            if problem is None:
                try:
                    value = load(found)
                except Exception as exc:  # a loader failing on an entry = a corrupt entry
                    problem = f"could not be read ({type(exc).__name__}: {exc})"
                else:
                    self.log.add(stage, label, key, "cached", time.perf_counter() - t)
                    return value
            warnings.warn(
                f"cache entry {found} ({stage} of {label}) is corrupt: {problem}; recomputing it",
                CacheWarning,
                stacklevel=2,
            )
            shutil.rmtree(found, ignore_errors=True)
            status = "recomputed (corrupt entry)"
        value = compute()
        try:
            with self.writing(stage, key) as tmp:
                if tmp is not None and not save(value, tmp):
                    raise _Skip
        except _Skip:
            status = "computed (not cacheable)"
        self.log.add(stage, label, key, status, time.perf_counter() - t)
        return value


class _Skip(Exception):
    """Internal: abandon writing an entry (``writing`` removes the temporary folder)."""


__all__ = [
    "CacheWarning",
    "StageCache",
    "StageLog",
    "StageRecord",
    "code_hash",
    "stage_key",
    "verify_manifest",
    "write_manifest",
]
