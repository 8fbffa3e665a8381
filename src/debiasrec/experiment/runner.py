"""Experiment runner: config -> data -> split -> models x seeds -> evaluation -> result folder.

The stages live in :mod:`debiasrec.experiment.stages` (each cached by content hash, see
:mod:`debiasrec.experiment.cache`), the config in :mod:`debiasrec.experiment.config`, the
methods in :mod:`debiasrec.experiment.methods`, the cross-run analysis in
:mod:`debiasrec.experiment.analysis` and the result-folder contract in
:mod:`debiasrec.experiment.results`. This module orchestrates them; the report is written by
the caller (the CLI) once the run, its models included, is safely on disk.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from debiasrec import __version__
from debiasrec.data.dataset import Dataset
from debiasrec.data.purify import PurifyReport
from debiasrec.data.split import Split
from debiasrec.errors import ConfigError
from debiasrec.experiment.analysis import analyse
from debiasrec.experiment.cache import StageCache, StageLog, code_hash
from debiasrec.experiment.config import (
    DataConfig,
    ExperimentConfig,
    ModelSpec,
    SplitConfig,
    load_config,
)
from debiasrec.experiment.evaluate import RESULT_COLUMNS, Evaluation
from debiasrec.experiment.methods import PostVariant, TrainedVariant
from debiasrec.experiment.results import ResultFolder, config_text, resolve_config
from debiasrec.experiment.stages.data import (
    cached_split,
    check_attrs,
    load_data,
    prepare_data,
    split_key_of,
)
from debiasrec.experiment.stages.evaluate import eval_stage
from debiasrec.experiment.stages.fit import components_payload, fit_key, fit_stage, pre_chain
from debiasrec.experiment.stages.post import post_stage
from debiasrec.models.base import Recommender, Recs


@dataclass
class ExperimentResult:
    """Everything a run produced (also written to the result folder when one is given)."""

    config: ExperimentConfig | BaseModel  # an AuditConfig for ``debiasrec audit``
    dataset: Dataset
    split: Split
    results: pd.DataFrame
    evaluations: dict[tuple[str, int], Evaluation] = field(default_factory=dict)
    models: dict[tuple[str, int], Recommender[Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    report: PurifyReport | None = None
    stages: StageLog = field(default_factory=StageLog)
    analysis: dict[str, pd.DataFrame] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    recs: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)
    histories: dict[str, Any] = field(default_factory=dict)


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
        "code_hash": code_hash(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
    }


class _Run:
    """The state one run accumulates, and how each model, method and seed adds to it."""

    def __init__(
        self, cfg: ExperimentConfig, ds: Dataset, split: Split, split_key: str, sc: StageCache,
        say: Callable[[str], None], progress: bool,
    ) -> None:  # fmt: skip
        self.cfg, self.ds, self.split, self.split_key = cfg, ds, split, split_key
        self.sc, self.say, self.progress = sc, say, progress
        self.result = ExperimentResult(cfg, ds, split, pd.DataFrame(columns=RESULT_COLUMNS))
        self.rows: list[pd.DataFrame] = []
        self.explain_models: dict[str, Recommender[Any]] = {}
        self.fitted: dict[str, tuple[Recommender[Any], float]] = {}
        self.reported_fits: dict[str, str] = {}
        self.k_save = cfg.recs_k or max(cfg.eval.ks)
        self.shown = f"ndcg@{cfg.eval.ks[0]}"

    # ------------------------------------------------------------------ recording
    def record(self, label: str, seed: int, ev: Evaluation, base: str | None) -> None:
        res = ev.results.copy()
        res.insert(0, "seed", seed)
        res.insert(0, "method", label)
        self.rows.append(res)
        self.result.evaluations[(label, seed)] = ev
        if base is not None:
            self.result.baselines[label] = base
        assert ev.scores is not None  # every evaluation of a run keeps the listed scores
        recs = Recs(
            users=ev.users, items=ev.topk[:, : self.k_save], scores=ev.scores[:, : self.k_save]
        )
        frame = recs.to_frame(self.ds)
        frame.insert(0, "seed", seed)
        self.result.recs.setdefault(label, []).append(frame)

    def value(self, ev: Evaluation) -> str:
        v = ev.results[(ev.results.metric == self.shown) & (ev.results.group == "all")]["value"]
        return f", {self.shown} {float(v.iloc[0]):.4f}" if len(v) else ""

    # ------------------------------------------------------------------ one run
    def run(self, spec: ModelSpec, variant: TrainedVariant | None, seed: int) -> None:
        cfg, timings = self.cfg, self.result.timings
        label = spec.label if variant is None else variant.label
        pre = [] if variant is None else variant.pre
        inproc = [] if variant is None else variant.inproc
        params = spec.config if variant is None else variant.params
        train, pre_key, pre_reports = pre_chain(
            self.sc, self.split, self.split_key, pre, seed, label
        )
        key = fit_key(pre_key, spec.kind, params, inproc, seed)
        t = time.perf_counter()
        if key in self.fitted:
            model, _ = self.fitted[key]
            note = "fit reused"
        else:
            n_cached = self.sc.log.count("fit", "cached")
            model, hist = fit_stage(
                self.sc, key, spec.kind, params, inproc, train, self.split.valid, seed,
                self.progress, label,
            )  # fmt: skip
            fit_s = time.perf_counter() - t
            self.fitted[key] = (model, fit_s)
            if hist is not None:
                self.result.histories[f"{label}/seed{seed}"] = hist
            cached = self.sc.log.count("fit", "cached") > n_cached
            note = "fit cached" if cached else f"fit {fit_s:.1f}s"
        timings[f"{label}/seed{seed}/fit"] = time.perf_counter() - t
        plain = variant is None or variant.report_plain
        if plain and key in self.reported_fits and variant is not None:
            # The same trained model is already reported (another method shares the pre and
            # inproc levels): its post results are reported, not a duplicate row.
            plain = False
            self.say(f"{label} seed {seed}: same model as {self.reported_fits[key]}")
        if plain:
            self.reported_fits.setdefault(key, label)
            t = time.perf_counter()
            ev = eval_stage(self.sc, key, model, self.split, cfg.eval, seed, label)
            eval_s = time.perf_counter() - t
            timings[f"{label}/seed{seed}/eval"] = eval_s
            self.record(label, seed, ev, None if variant is None else spec.label)
            self.result.models[(label, seed)] = model
            self.explain_models[label] = model
            self.say(f"{label} seed {seed}: {note}, eval {eval_s:.2f}s{self.value(ev)}")
            if variant is not None:
                self.result.methods[label] = _info(variant, spec, None, pre_reports)
        for post_label, pv in [] if variant is None else variant.post:
            t = time.perf_counter()
            ev, info = post_stage(self.sc, key, model, self.split, cfg, pv, seed, post_label)
            post_s = time.perf_counter() - t
            timings[f"{post_label}/seed{seed}/post"] = post_s
            self.record(post_label, seed, ev, spec.label)
            self.explain_models[post_label] = model
            assert variant is not None
            entry = _info(variant, spec, pv, pre_reports)
            calibrations = dict(self.result.methods.get(post_label, {}).get("self_calibration", {}))
            if info:
                calibrations[str(seed)] = info
            if calibrations:
                entry["self_calibration"] = calibrations
            self.result.methods[post_label] = entry
            self.say(f"{post_label} seed {seed}: post {post_s:.2f}s{self.value(ev)}")

    def finish(self) -> ExperimentResult:
        res = self.result
        res.results = (
            pd.concat(self.rows, ignore_index=True)[RESULT_COLUMNS]
            if self.rows
            else pd.DataFrame(columns=RESULT_COLUMNS)
        )
        t = time.perf_counter()
        res.analysis = analyse(
            self.cfg, self.split, res.results, res.evaluations, res.baselines, self.explain_models
        )
        res.timings["analysis"] = time.perf_counter() - t
        return res


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    *,
    on_event: Callable[[str], None] | None = None,
    progress: bool = False,
    prepared: tuple[Dataset, PurifyReport, Split] | None = None,
    cache: str | Path | None = None,
    overwrite: bool = False,
) -> ExperimentResult:
    """Run every model and debiasing method for every seed and evaluate on the test split.

    Stages (split, pre-processing, training, evaluation, post-processing) are cached on disk by
    content hash (see :mod:`debiasrec.experiment.cache`): in ``cache`` when given, else in
    ``out/cache``; an in-memory run (``out=None``, no ``cache``) caches nothing. What each stage
    did is in ``ExperimentResult.stages`` (and ``summary.json["stages"]``).

    Args:
        cfg: the experiment.
        out: result folder to write (see :mod:`debiasrec.experiment.results`); None keeps
            everything in memory. The report is not written here: call
            :func:`debiasrec.report.html.write_report` (the CLI does) once the run is on disk.
        on_event: called with short progress messages (the CLI prints them).
        progress: show progress bars (runs, and epochs of torch models) on stderr.
        prepared: already loaded ``(dataset, report, split)`` to reuse.
        cache: stage cache folder (default ``out/cache``).
        overwrite: replace what ``out`` holds when it is not an earlier run of this config.

    Raises:
        ConfigError: ``out`` holds another run or other files (without ``overwrite``).
    """
    say = on_event or (lambda _msg: None)
    folder = None if out is None else ResultFolder(out, overwrite=overwrite)
    resolved = resolve_config(cfg)
    root = Path(cache) if cache is not None else (Path(out) / "cache" if out is not None else None)
    if folder is not None:
        folder.check(resolved, cache=root)
    sc = StageCache(root)
    t0 = time.perf_counter()
    cfg = cfg.with_run_settings()  # [run] device/precision into each component (not written)
    variants = cfg.variants()
    if prepared is not None:
        ds, report, split = prepared
        check_attrs(cfg, ds, variants)
        split_key = split_key_of(ds, split)
    else:
        ds, report = load_data(cfg)
        check_attrs(cfg, ds, variants)  # before anything is trained or written
        split, split_key = cached_split(sc, ds, cfg)
    say(
        f"data: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions; "
        f"split {len(split.train)}/{len(split.valid)}/{len(split.test)}"
    )
    run = _Run(cfg, ds, split, split_key, sc, say, progress)
    run.result.timings["data"] = time.perf_counter() - t0
    specs = {s.label: s for s in cfg.models}
    runs = [(s, None) for s in cfg.models] + [(specs[v.model_label], v) for v in variants]
    bar = _progress_bar(len(runs) * len(cfg.seeds), enabled=progress)
    try:
        for spec, variant in runs:
            for seed in cfg.seeds:
                bar.set_description(
                    f"{spec.label if variant is None else variant.label} seed {seed}"
                )
                run.run(spec, variant, seed)
                bar.update(1)
    finally:
        bar.close()
    result = run.finish()
    result.report = report
    result.stages = sc.log
    result.timings["total"] = time.perf_counter() - t0
    if folder is not None:
        extra = {
            "stages": sc.log.to_list(),
            "stage_totals": sc.log.totals(),
            "cache": None if root is None else str(root.resolve()),
            "methods": result.methods,
            "baselines": result.baselines,
            "training": result.histories,
        }
        try:
            write_outputs(folder, result, resolved, extra_summary=extra, say=say)
            folder.commit()
        finally:
            folder.abort()
    return result


def _progress_bar(total: int, *, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, unit="run", leave=False)


def _info(
    variant: TrainedVariant, spec: ModelSpec, pv: PostVariant | None, pre_reports: list[Any]
) -> dict[str, Any]:
    levels = [lvl for lvl in ("pre", "inproc") if getattr(variant, lvl)]
    if pv is not None:
        levels.append("post")
    return {
        "method": variant.method,
        "base": spec.label,
        "model": spec.kind,
        "params": variant.params.model_dump(mode="json"),
        "levels": levels,
        "pre": components_payload(variant.pre),
        "pre_reports": pre_reports,
        "inproc": components_payload(variant.inproc),
        "post": None if pv is None else pv.payload(),
    }


# ---------------------------------------------------------------------------- result folder
def write_outputs(
    folder: ResultFolder,
    result: ExperimentResult,
    resolved: BaseModel,
    *,
    extra_summary: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> None:
    """Write a run's outputs into ``folder``'s staging area (see :mod:`.results`)."""
    folder.path("config.toml").write_text(config_text(resolved), encoding="utf-8")
    result.split.save(folder.path("split"))
    result.results.to_parquet(folder.path("results.parquet"), index=False)
    for label, frames in result.recs.items():
        pd.concat(frames, ignore_index=True).to_parquet(
            folder.path("recs", f"{label}.parquet"), index=False
        )
    for name, frame in result.analysis.items():
        frame.to_parquet(folder.path(f"{name}.parquet"), index=False)
    folder.write_json("summary.json", _summary(result, extra_summary))
    save_models(result, folder, say)


def _summary(result: ExperimentResult, extra: dict[str, Any] | None) -> dict[str, Any]:
    cfg = result.config
    split_cfg = getattr(cfg, "split", None)
    return {
        "name": getattr(cfg, "name", None) or "audit",
        "versions": versions(),
        "git_commit": git_commit(),
        "seeds": list(getattr(cfg, "seeds", None) or [getattr(cfg, "seed", 0)]),
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
            f"{label}/seed{seed}": h.to_dict()
            for (label, seed), m in result.models.items()
            if (h := getattr(m, "history_", None)) is not None
        },
        **(extra or {}),
    }


def save_models(
    result: ExperimentResult, folder: ResultFolder, say: Callable[[str], None] = lambda _m: None
) -> None:
    """Save the first seed's models to ``models/METHOD/`` (what ``debiasrec serve`` loads)."""
    first = list(getattr(result.config, "seeds", None) or [0])[0]
    for (label, seed), model in result.models.items():
        if seed != first:
            continue
        try:
            model.save(folder.path("models", label))
        except NotImplementedError as exc:
            say(f"{label}: model not saved ({exc})")


def write_result_folder(
    result: ExperimentResult,
    out: Path,
    recs_frames: dict[str, list[pd.DataFrame]] | None = None,
    *,
    extra_summary: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Write the result-folder contract for a result made outside :func:`run_experiment`
    (``debiasrec audit``): checked, staged and committed like a run's."""
    if recs_frames is not None:
        result.recs = recs_frames
    folder = ResultFolder(out, overwrite=overwrite)
    resolved = resolve_config(result.config)
    folder.check(resolved)
    try:
        write_outputs(folder, result, resolved, extra_summary=extra_summary)
        folder.commit()
    finally:
        folder.abort()


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
    "versions",
    "write_result_folder",
]
