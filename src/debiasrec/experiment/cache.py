"""Content-addressed cache of experiment stages (split, pre-processing, training, evaluation, post).

Every stage's output is stored under ``ROOT/STAGE/KEY/`` where ``KEY`` is the SHA-256 of a JSON
payload holding everything the stage depends on: the keys of the stages it reads (so a change
anywhere upstream changes every key below it), its own config, the seed and the debiasrec
version. A folder is written under a temporary name and renamed when complete, so an interrupted
run never leaves a half-written entry. Re-running an unchanged config finds every key and
recomputes nothing; changing a post-processor's strength changes only the keys of that
post-processing stage.

Each lookup is recorded in a :class:`StageLog` (``summary.json["stages"]``): stage, label, key,
``computed`` or ``cached``, seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debiasrec import __version__


def stage_key(stage: str, payload: dict[str, Any]) -> str:
    """Hex key (24 digits) of a stage: hash of its name, payload and the library version."""
    text = json.dumps(
        {"stage": stage, "version": __version__, "payload": payload},
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
    status: str  # "computed" | "cached" | "computed (not cacheable)"
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
        return path if (path / "_complete").is_file() else None

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
            (tmp / "_complete").write_text("")
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
        """Load ``(stage, key)`` if cached, else ``compute()`` and ``save`` it.

        ``save(value, folder)`` returns False when the value cannot be stored (e.g. a model
        without persistence); the run goes on and the stage is logged as not cacheable.
        """
        t = time.perf_counter()
        found = self.folder(stage, key)
        if found is not None:
            value = load(found)
            self.log.add(stage, label, key, "cached", time.perf_counter() - t)
            return value
        value = compute()
        status = "computed"
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


__all__ = ["StageCache", "StageLog", "StageRecord", "stage_key"]
