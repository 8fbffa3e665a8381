"""Experiment runner: config -> data -> split -> models x seeds -> evaluation -> result folder.

Result folder layout (the contract other tools read)::

    DIR/config.toml          the resolved config, re-runnable as is
    DIR/summary.json         versions, seeds, git commit, timings, dataset fingerprint, purification
    DIR/results.parquet      tidy: method, seed, metric, group, value, ci_low, ci_high, n
    DIR/recs/METHOD.parquet  user_id, item_id, rank, score (original ids, top-K per test user)
    DIR/split/{train,valid,test}.parquet
    DIR/models/METHOD/       the first seed's trained model (config.json, state.safetensors)
    DIR/report.html
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from debiasrec import __version__
from debiasrec.config import load_toml
from debiasrec.data.dataset import Dataset
from debiasrec.data.purify import PurifyConfig, PurifyReport, load_dataset
from debiasrec.data.split import Split, make_split
from debiasrec.errors import ConfigError
from debiasrec.experiment.evaluate import RESULT_COLUMNS, EvalConfig, Evaluation, evaluate_model
from debiasrec.models import model_class
from debiasrec.models.base import Recommender, Recs


class DataConfig(BaseModel):
    """Where the data comes from and how it is cleaned."""

    model_config = ConfigDict(extra="forbid")

    source: str = "ml-100k"
    users: str | None = None
    items: str | None = None
    format: str | None = None
    delimiter: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    sensitive: list[str] | None = None
    purify: PurifyConfig = Field(default_factory=PurifyConfig)

    def load_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        for key, arg in (
            ("users", "users"),
            ("items", "items"),
            ("format", "fmt"),
            ("delimiter", "delimiter"),
        ):
            if getattr(self, key) is not None:
                kw[arg] = getattr(self, key)
        if self.columns:
            kw["columns"] = self.columns
        return kw


class SplitConfig(BaseModel):
    """How interactions are split into train/valid/test."""

    model_config = ConfigDict(extra="forbid")

    method: str = "random"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 2020


class ModelSpec(BaseModel):
    """One model to train: registry name, result label and hyper-parameters."""

    model_config = ConfigDict(extra="forbid")

    model: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        cls = model_class(self.model)
        try:  # fail now, not after training the models listed before this one
            cls.Config.model_validate(self.params)
        except ValidationError as exc:
            parts = [
                "params."
                + ".".join(str(x) for x in e["loc"])
                + ": "
                + (
                    "unknown key (check the spelling)"
                    if e["type"] == "extra_forbidden"
                    else e["msg"]
                )
                for e in exc.errors()
            ]
            raise ValueError(f"model {self.model!r}: " + "; ".join(parts)) from None
        return self

    @property
    def label(self) -> str:
        return self.name or self.model


class ExperimentConfig(BaseModel):
    """A whole experiment, as written in TOML."""

    model_config = ConfigDict(extra="forbid")

    name: str = "experiment"
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec(model="pop")])
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seeds: list[int] = Field(default_factory=lambda: [0])
    recs_k: int | None = Field(None, ge=1, description="list length saved in recs/ (max ks)")

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        labels = [m.label for m in self.models]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"model names must be unique; repeated: {sorted(dup)} (set 'name')")
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if self.recs_k is not None and self.recs_k > max(self.eval.ks):
            # Lists are ranked to max(eval.ks); a longer saved list would be silently cut.
            raise ValueError(
                f"recs_k={self.recs_k} exceeds the longest evaluated list max(eval.ks)="
                f"{max(self.eval.ks)}; lower recs_k or add {self.recs_k} to eval.ks"
            )
        return self

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        return load_toml(path, cls)


@dataclass
class ExperimentResult:
    """Everything a run produced (also written to the result folder when one is given)."""

    config: ExperimentConfig | BaseModel  # an AuditConfig for ``debiasrec audit``
    dataset: Dataset
    split: Split
    results: pd.DataFrame
    evaluations: dict[tuple[str, int], Evaluation] = field(default_factory=dict)
    models: dict[tuple[str, int], Recommender] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    report: PurifyReport | None = None


def git_commit() -> str | None:
    """Commit of the debiasrec checkout, if it runs from one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    import scipy
    import torch

    return {
        "debiasrec": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
    }


def prepare_data(cfg: ExperimentConfig) -> tuple[Dataset, PurifyReport, Split]:
    """Load, purify and split as configured."""
    ds, report = load_dataset(
        cfg.data.source,
        purify_config=cfg.data.purify,
        sensitive=cfg.data.sensitive,
        **cfg.data.load_kwargs(),
    )
    split = make_split(ds, cfg.split.method, cfg.split.ratios, rng=cfg.split.seed)
    return ds, report, split


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    *,
    on_event: Callable[[str], None] | None = None,
    progress: bool = False,
    prepared: tuple[Dataset, PurifyReport, Split] | None = None,
) -> ExperimentResult:
    """Run every model for every seed and evaluate on the test split.

    Args:
        cfg: the experiment.
        out: result folder to write (created); None keeps everything in memory.
        on_event: called with short progress messages (the CLI prints them).
        progress: show per-epoch progress bars for torch models.
        prepared: already loaded ``(dataset, report, split)`` to reuse.
    """
    say = on_event or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ds, report, split = prepared or prepare_data(cfg)
    timings["data"] = time.perf_counter() - t0
    say(
        f"data: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions; "
        f"split {len(split.train)}/{len(split.valid)}/{len(split.test)}"
    )
    for name in [*(cfg.eval.attrs or []), *cfg.eval.intersections]:
        ds.user_groups(name)  # unknown attribute -> DataError before any training
    rows: list[pd.DataFrame] = []
    evals: dict[tuple[str, int], Evaluation] = {}
    models: dict[tuple[str, int], Recommender] = {}
    recs_frames: dict[str, list[pd.DataFrame]] = {}
    k_save = cfg.recs_k or max(cfg.eval.ks)
    for spec in cfg.models:
        cls = model_class(spec.model)
        for seed in cfg.seeds:
            params = dict(spec.params)
            if progress and "train" in cls.Config.model_fields:
                params.setdefault("train", {})
                params["train"] = {**params["train"], "progress": True}
            model = cls(params)
            t = time.perf_counter()
            model.fit(split.train, valid=split.valid, rng=seed)
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            ev = evaluate_model(
                model._score_block, split.train, split.valid, split.test, config=cfg.eval, rng=seed
            )
            eval_s = time.perf_counter() - t
            timings[f"{spec.label}/seed{seed}/fit"] = fit_s
            timings[f"{spec.label}/seed{seed}/eval"] = eval_s
            res = ev.results.copy()
            res.insert(0, "seed", seed)
            res.insert(0, "method", spec.label)
            rows.append(res)
            evals[(spec.label, seed)] = ev
            models[(spec.label, seed)] = model
            assert ev.scores is not None
            recs = Recs(users=ev.users, items=ev.topk[:, :k_save], scores=ev.scores[:, :k_save])
            frame = recs.to_frame(ds)
            frame.insert(0, "seed", seed)
            recs_frames.setdefault(spec.label, []).append(frame)
            shown = f"ndcg@{cfg.eval.ks[0]}"
            ndcg = res[(res.metric == shown) & (res.group == "all")]["value"]
            msg = f"{spec.label} seed {seed}: fit {fit_s:.1f}s, eval {eval_s:.2f}s"
            if len(ndcg):
                msg += f", {shown} {float(ndcg.iloc[0]):.4f}"
            say(msg)
    results = (
        pd.concat(rows, ignore_index=True)[RESULT_COLUMNS]
        if rows
        else pd.DataFrame(columns=RESULT_COLUMNS)
    )
    timings["total"] = time.perf_counter() - t0
    result = ExperimentResult(cfg, ds, split, results, evals, models, timings, report)
    if out is not None:
        write_result_folder(result, Path(out), recs_frames)
        save_models(result, Path(out), say)
    return result


def save_models(
    result: ExperimentResult, out: Path, say: Callable[[str], None] = lambda _m: None
) -> None:
    """Save the first seed's models to ``out/models/METHOD/`` (what ``debiasrec serve`` loads)."""
    first = list(getattr(result.config, "seeds", None) or [0])[0]
    for (label, seed), model in result.models.items():
        if seed != first:
            continue
        try:
            model.save(out / "models" / label)
        except NotImplementedError as exc:
            say(f"{label}: model not saved ({exc})")


def _absolute_paths(cfg: BaseModel) -> BaseModel:
    """``cfg`` with relative paths of existing input files made absolute.

    The saved config must re-run from any working directory; dataset names (``"ml-100k"``) and
    paths that do not exist are kept as written.
    """

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            return str(Path(value).expanduser().resolve())
        return value

    if isinstance(cfg, ExperimentConfig):
        d = cfg.data
        data = d.model_copy(update={k: fix(getattr(d, k)) for k in ("source", "users", "items")})
        return cfg.model_copy(update={"data": data})
    paths = [k for k in ("recs", "test", "users", "items", "train") if k in type(cfg).model_fields]
    return cfg.model_copy(update={k: fix(getattr(cfg, k)) for k in paths})


def write_result_folder(
    result: ExperimentResult,
    out: Path,
    recs_frames: dict[str, list[pd.DataFrame]] | None = None,
    *,
    extra_summary: dict[str, Any] | None = None,
) -> None:
    """Write the result-folder contract (see module docstring).

    ``result.config`` is an :class:`ExperimentConfig` or another config model (the audit's); run
    metadata it lacks (name, seeds, split seed) is taken from what it has. ``extra_summary`` is
    merged into ``summary.json``.
    """
    from debiasrec.config import dump_toml
    from debiasrec.report.html import write_report

    cfg = result.config
    name = getattr(cfg, "name", None) or "audit"
    seeds = list(getattr(cfg, "seeds", None) or [getattr(cfg, "seed", 0)])
    split_cfg = getattr(cfg, "split", None)
    out.mkdir(parents=True, exist_ok=True)
    dump_toml(_absolute_paths(cfg), out / "config.toml")
    result.split.save(out / "split")
    result.results.to_parquet(out / "results.parquet", index=False)
    if recs_frames:
        (out / "recs").mkdir(exist_ok=True)
        for label, frames in recs_frames.items():
            pd.concat(frames, ignore_index=True).to_parquet(
                out / "recs" / f"{label}.parquet", index=False
            )
    summary = {
        "name": name,
        "versions": versions(),
        "git_commit": git_commit(),
        "seeds": seeds,
        "split_seed": None if split_cfg is None else split_cfg.seed,
        "dataset": {
            "name": result.dataset.name,
            "fingerprint": result.dataset.fingerprint(),
            "n_users": result.dataset.n_users,
            "n_items": result.dataset.n_items,
            "n_interactions": result.dataset.n_interactions,
            "sensitive": result.dataset.schema.sensitive_names,
        },
        "split_sizes": {
            p: len(d) for p, d in zip(("train", "valid", "test"), result.split, strict=True)
        },
        "timings_s": result.timings,
        "purification": result.report.to_dict() if result.report is not None else None,
        "training": {
            f"{label}/seed{seed}": m.history_.to_dict()
            for (label, seed), m in result.models.items()
            if hasattr(m, "history_")
        },
        **(extra_summary or {}),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    write_report(out)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def load_config(path: str | Path) -> ExperimentConfig:
    """Load and validate an experiment TOML (raises :class:`ConfigError` naming the bad field)."""
    return ExperimentConfig.from_toml(path)


__all__ = [
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ExperimentResult",
    "ModelSpec",
    "SplitConfig",
    "load_config",
    "prepare_data",
    "run_experiment",
    "save_models",
    "write_result_folder",
]
