"""The result folder: the contract that reports, comparisons, ``serve`` and other tools read.

Layout (``--out DIR``)::

    DIR/config.toml          the resolved config, re-runnable as is
    DIR/summary.json         versions, seeds, git commit, timings, dataset fingerprint, purification
    DIR/results.parquet      tidy: method, seed, metric, group, value, ci_low, ci_high, n
    DIR/recs/METHOD.parquet  user_id, item_id, rank, score (original ids, top-K per test user)
    DIR/split/               {train,valid,test}.parquet (original ids) + users, items, dataset.json
    DIR/models/METHOD/       the first seed's trained model (config.json, state.safetensors)
    DIR/aggregate.parquet    mean and CI over seeds (method, metric, group)
    DIR/tests.parquet        paired tests of each method against its base model, per seed
    DIR/frontier.parquet     accuracy vs each fairness metric, Pareto-optimal methods flagged
    DIR/levelling.parquet    per method and attribute: change of the base model's worse-off and
                             better-off groups (paired CIs) and the levelling-down verdict
    DIR/explanations.parquet, DIR/calibration.parquet   transparency tables of sample users
    DIR/report.html, DIR/report.md   written by ``debiasrec report`` / the CLI after the run
    DIR/cache/               the stage cache (unless another folder is given)

Safety: a run never writes outside ``DIR``: every name that becomes a path (method labels, model
names) is one safe path component, checked when the config is validated and again when the path
is made (:func:`safe_path`). Freshness: a run refuses a non-empty ``DIR`` unless it holds an
earlier run of the same config, or ``overwrite=True``; its outputs are written into a staging
folder inside ``DIR`` and moved into place when complete, and whatever the new run does not
produce (the outputs of methods no longer configured, an old report) is removed, so no stale
file survives. The stage cache (``DIR/cache``) is kept: its entries are content-addressed.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel

from debiasrec.config import dump_data
from debiasrec.errors import ConfigError
from debiasrec.experiment.jsonutil import json_default
from debiasrec.experiment.methods import LABEL_RE

#: Top-level entries a run keeps in its folder whatever it produces.
KEEP = ("cache",)


def safe_path(root: Path, *parts: str) -> Path:
    """``root/parts...``, each part one safe path component, staying inside ``root``.

    Raises:
        ConfigError: a part that is empty, absolute, ``.``/``..``, or holds a separator.
    """
    for part in parts:
        if not isinstance(part, str) or not LABEL_RE.match(part) or part in (".", ".."):
            raise ConfigError(
                f"{part!r} cannot name a file of the result folder: use letters, digits, '.', "
                "'_', '-' or '=' (no path separators, no leading dot)"
            )
    path = root.joinpath(*parts)
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ConfigError(f"{path} would be written outside the result folder {root}")
    return path


def config_text(cfg: BaseModel) -> str:
    """The resolved config as TOML (what ``config.toml`` holds)."""
    return tomli_w.dumps(dump_data(cfg))


class ResultFolder:
    """A run's output folder: checked before the run, filled through a staging folder.

    Args:
        out: the result folder.
        overwrite: replace the results of another run (or other files) in ``out``.
    """

    def __init__(self, out: str | Path, *, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self._staging: Path | None = None

    def check(self, cfg: BaseModel, *, cache: Path | None = None) -> None:
        """Refuse ``out`` unless it is absent, empty, holds only a cache, holds an earlier run of
        the same config, or ``overwrite`` was given. Call before anything runs.

        Raises:
            ConfigError: the folder holds something else (the message says what to do).
        """
        out = self.out
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder")
        if not out.exists() or self.overwrite:
            return
        entries = {p.name for p in out.iterdir() if not p.name.startswith(".staging-")}
        if cache is not None and cache.resolve().parent == out.resolve():
            entries.discard(cache.name)
        if not entries - set(KEEP):
            return
        previous = out / "config.toml"
        if previous.is_file() and (out / "summary.json").is_file():
            try:
                same = previous.read_text(encoding="utf-8") == config_text(cfg)
            except (OSError, UnicodeDecodeError):
                same = False
            if same:
                return
            raise ConfigError(
                f"--out {out} holds the results of a run of another config; choose another "
                "folder, or pass --overwrite to replace them (outputs the new run does not "
                "produce are removed; the stage cache is kept)"
            )
        raise ConfigError(
            f"--out {out} is not empty and holds no debiasrec run ({sorted(entries)[:5]}); "
            "choose another folder or pass --overwrite to replace its contents"
        )

    @property
    def staging(self) -> Path:
        """The folder outputs are written into until :meth:`commit`."""
        if self._staging is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._staging = self.out / f".staging-{uuid.uuid4().hex[:8]}"
            self._staging.mkdir()
        return self._staging

    def path(self, *parts: str) -> Path:
        """A safe path inside the staging folder (parent folders created)."""
        path = safe_path(self.staging, *parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, keep: Iterable[str] = KEEP) -> None:
        """Move the staged outputs into ``out`` and remove everything else but ``keep``."""
        staging = self.staging
        produced = {p.name for p in staging.iterdir()}
        for name in produced:
            target = self.out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(staging / name, target)
        staging.rmdir()
        self._staging = None
        keep = set(keep)
        for p in self.out.iterdir():
            if p.name in produced or p.name in keep or p.name.startswith(".staging-"):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def abort(self) -> None:
        """Remove the staging folder (the previous outputs stay as they were)."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def write_json(self, name: str, data: Any) -> None:
        self.path(name).write_text(json.dumps(data, indent=2, default=json_default))


def resolve_config(cfg: BaseModel) -> BaseModel:
    """The resolved config written beside results: relative paths of existing input files
    made absolute, and the metrics an unspecified ``eval.metrics`` selected, named.

    The saved config must re-run from any working directory, and say what was computed;
    dataset names (``"ml-100k"``) and paths that do not exist are kept as written.
    """
    from debiasrec.metrics.registry import default_metrics

    ev = getattr(cfg, "eval", None)
    if ev is not None and getattr(ev, "metrics", "") is None:
        cfg = cfg.model_copy(update={"eval": ev.model_copy(update={"metrics": default_metrics()})})

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            return str(Path(value).expanduser().resolve())
        return value

    data = getattr(cfg, "data", None)
    if data is not None and hasattr(data, "source"):
        new = data.model_copy(
            update={k: fix(getattr(data, k)) for k in ("source", "users", "items")}
        )
        return cfg.model_copy(update={"data": new})
    paths = [k for k in ("recs", "test", "users", "items", "train") if k in type(cfg).model_fields]
    return cfg.model_copy(update={k: fix(getattr(cfg, k)) for k in paths})


__all__ = ["KEEP", "ResultFolder", "resolve_config", "config_text", "safe_path"]
