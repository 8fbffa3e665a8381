"""Experiment runner: config -> data -> split -> models x seeds -> evaluation -> result folder.

Result folder layout (the contract other tools read)::

    DIR/config.toml          the resolved config, re-runnable as is
    DIR/summary.json         versions, seeds, git commit, timings, dataset fingerprint, purification
    DIR/results.parquet      tidy: method, seed, metric, group, value, ci_low, ci_high, n
    DIR/recs/METHOD.parquet  user_id, item_id, rank, score (original ids, top-K per test user)
    DIR/split/{train,valid,test}.parquet
    DIR/models/METHOD/       the first seed's trained model (config.json, state.safetensors)
    DIR/report.html          and DIR/report.md
    DIR/aggregate.parquet    mean and CI over seeds (method, metric, group)
    DIR/tests.parquet        paired tests of each method against its base model, per seed
    DIR/frontier.parquet     accuracy vs each fairness metric, Pareto-optimal methods flagged
    DIR/explanations.parquet sample users' lists with the history items behind each item and
                             what each method changed; DIR/calibration.parquet their genre mixes
    DIR/cache/               the stage cache (unless --cache names another folder)

Methods (``[[methods]]``, see :mod:`debiasrec.experiment.methods`) add pre-, in- and
post-processing debiasing to a ``[[models]]`` entry; every stage is cached by content hash (see
:mod:`debiasrec.experiment.cache` and ``docs/experiments.md``).
"""

from __future__ import annotations

import json
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from debiasrec import __version__
from debiasrec.config import load_toml
from debiasrec.data.dataset import Dataset
from debiasrec.data.purify import PurifyConfig, PurifyReport, load_dataset
from debiasrec.data.split import Split, make_split
from debiasrec.errors import ConfigError
from debiasrec.experiment.cache import StageCache, StageLog, stage_key
from debiasrec.experiment.evaluate import RESULT_COLUMNS, EvalConfig, Evaluation, evaluate_model
from debiasrec.experiment.extra import extra_metrics
from debiasrec.experiment.methods import (
    MethodSpec,
    PathError,
    PostVariant,
    TrainedVariant,
    check_methods,
    referenced_attrs,
    strategies_from,
)
from debiasrec.models import model_class
from debiasrec.models.base import Recommender, Recs

#: Version of the metrics the runner adds to every evaluation (part of the cache keys).
EXTRA_VERSION = "1"


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
    methods: list[MethodSpec] = Field(
        default_factory=list, description="debiasing methods (see debiasrec.experiment.methods)"
    )
    seeds: list[int] = Field(default_factory=lambda: [0])
    recs_k: int | None = Field(None, ge=1, description="list length saved in recs/ (max ks)")
    explain_users: int = Field(5, ge=0, description="sample users in explanations.parquet")

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        labels = [m.label for m in self.models]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"model names must be unique; repeated: {sorted(dup)} (set 'name')")
        names = [m.name for m in self.methods]
        dup = {x for x in names if names.count(x) > 1}
        if dup:
            raise PathError(f"methods: names must be unique; repeated: {sorted(dup)}")
        _, errors = check_methods(
            self.methods,
            {m.label: m.model for m in self.models},
            {m.label: m.params for m in self.models},
        )
        if errors:
            raise PathError("\n".join(errors))
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

    def variants(self) -> list[TrainedVariant]:
        """The trained variants of ``methods`` (sweeps expanded), each with its post results."""
        variants, errors = check_methods(
            self.methods,
            {m.label: m.model for m in self.models},
            {m.label: m.params for m in self.models},
        )
        if errors:  # validated at construction; a registry changed since
            raise ConfigError("invalid methods:\n  " + "\n  ".join(errors))
        return variants


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
    stages: StageLog = field(default_factory=StageLog)
    analysis: dict[str, pd.DataFrame] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)


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
    cache: str | Path | None = None,
) -> ExperimentResult:
    """Run every model and debiasing method for every seed and evaluate on the test split.

    Stages (split, pre-processing, training, evaluation, post-processing) are cached on disk by
    content hash (see :mod:`debiasrec.experiment.cache`): in ``cache`` when given, else in
    ``out/cache``; an in-memory run (``out=None``, no ``cache``) caches nothing. What each stage
    did is in ``ExperimentResult.stages`` (and ``summary.json["stages"]``).

    Args:
        cfg: the experiment.
        out: result folder to write (created); None keeps everything in memory.
        on_event: called with short progress messages (the CLI prints them).
        progress: show progress bars (runs, and epochs of torch models) on stderr.
        prepared: already loaded ``(dataset, report, split)`` to reuse.
        cache: stage cache folder (default ``out/cache``).
    """
    say = on_event or (lambda _msg: None)
    timings: dict[str, float] = {}
    log = StageLog()
    root = Path(cache) if cache is not None else (Path(out) / "cache" if out is not None else None)
    sc = StageCache(root, log)
    t0 = time.perf_counter()
    variants = cfg.variants()
    if prepared is not None:
        ds, report, split = prepared
        split_key = stage_key(
            "split", {"data": ds.fingerprint(), "parts": [p.fingerprint() for p in split]}
        )
    else:
        ds, report = load_dataset(
            cfg.data.source,
            purify_config=cfg.data.purify,
            sensitive=cfg.data.sensitive,
            **cfg.data.load_kwargs(),
        )
        _check_attrs(cfg, ds, variants)  # before anything is written
        split_key = stage_key(
            "split", {"data": ds.fingerprint(), "split": cfg.split.model_dump(mode="json")}
        )
        split = sc.get_or_compute(
            "split",
            "split",
            split_key,
            lambda: make_split(ds, cfg.split.method, cfg.split.ratios, rng=cfg.split.seed),
            _save_split,
            lambda folder: _load_split(folder, ds),
        )
    timings["data"] = time.perf_counter() - t0
    say(
        f"data: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions; "
        f"split {len(split.train)}/{len(split.valid)}/{len(split.test)}"
    )
    _check_attrs(cfg, ds, variants)
    rows: list[pd.DataFrame] = []
    evals: dict[tuple[str, int], Evaluation] = {}
    models: dict[tuple[str, int], Recommender] = {}
    histories: dict[str, Any] = {}
    recs_frames: dict[str, list[pd.DataFrame]] = {}
    baselines: dict[str, str] = {}
    explain_models: dict[str, Recommender] = {}
    method_info: dict[str, dict[str, Any]] = {}
    k_save = cfg.recs_k or max(cfg.eval.ks)
    shown = f"ndcg@{cfg.eval.ks[0]}"
    runs: list[tuple[ModelSpec, TrainedVariant | None]] = [(s, None) for s in cfg.models]
    specs = {s.label: s for s in cfg.models}
    runs += [(specs[v.model_label], v) for v in variants]
    bar = _progress_bar(len(runs) * len(cfg.seeds), enabled=progress)
    fitted: dict[str, tuple[Recommender, float]] = {}
    plain_labels: dict[str, str] = {}

    def record(label: str, seed: int, ev: Evaluation, base: str | None) -> None:
        res = ev.results.copy()
        res.insert(0, "seed", seed)
        res.insert(0, "method", label)
        rows.append(res)
        evals[(label, seed)] = ev
        if base is not None:
            baselines[label] = base
        assert ev.scores is not None
        recs = Recs(users=ev.users, items=ev.topk[:, :k_save], scores=ev.scores[:, :k_save])
        frame = recs.to_frame(ds)
        frame.insert(0, "seed", seed)
        recs_frames.setdefault(label, []).append(frame)

    def value(ev: Evaluation) -> str:
        v = ev.results[(ev.results.metric == shown) & (ev.results.group == "all")]["value"]
        return f", {shown} {float(v.iloc[0]):.4f}" if len(v) else ""

    try:
        for spec, variant in runs:
            for seed in cfg.seeds:
                label = spec.label if variant is None else variant.label
                bar.set_description(f"{label} seed {seed}")
                train, pre_key, pre_reports = _pre_chain(
                    sc, split, split_key, [] if variant is None else variant.pre, seed, label
                )
                inproc = [] if variant is None else variant.inproc
                if variant is not None and variant.params != spec.params:
                    spec = spec.model_copy(update={"params": variant.params})
                fit_key = stage_key(
                    "fit",
                    {
                        "data": pre_key,
                        "model": spec.model,
                        "params": spec.params,
                        "inproc": inproc,
                        "seed": seed,
                    },
                )
                t = time.perf_counter()
                if fit_key in fitted:
                    model, fit_s = fitted[fit_key]
                    fit_note = "fit reused"
                else:
                    n_before = log.count("fit", "cached")
                    model, hist = _fit_stage(
                        sc, fit_key, spec, inproc, train, split.valid, seed, progress, label
                    )
                    fit_s = time.perf_counter() - t
                    fitted[fit_key] = (model, fit_s)
                    if hist is not None:
                        histories[f"{label}/seed{seed}"] = hist
                    fit_note = (
                        "fit cached"
                        if log.count("fit", "cached") > n_before
                        else f"fit {fit_s:.1f}s"
                    )
                timings[f"{label}/seed{seed}/fit"] = time.perf_counter() - t
                plain = variant is None or variant.report_plain
                if plain and fit_key in plain_labels and variant is not None:
                    # The same trained model is already reported (another method shares the
                    # pre/inproc levels): its post results are reported, not a duplicate row.
                    plain = False
                    say(f"{label} seed {seed}: same model as {plain_labels[fit_key]}")
                if plain:
                    plain_labels.setdefault(fit_key, label)
                    t = time.perf_counter()
                    ev = _eval_stage(sc, fit_key, model, split, cfg, seed, label)
                    eval_s = time.perf_counter() - t
                    timings[f"{label}/seed{seed}/eval"] = eval_s
                    record(label, seed, ev, None if variant is None else spec.label)
                    models[(label, seed)] = model
                    explain_models[label] = model
                    say(f"{label} seed {seed}: {fit_note}, eval {eval_s:.2f}s{value(ev)}")
                    if variant is not None:
                        method_info[label] = _info(variant, spec, None, pre_reports)
                for post_label, pv in [] if variant is None else variant.post:
                    t = time.perf_counter()
                    ev, info = _post_stage(sc, fit_key, model, split, cfg, pv, seed, post_label)
                    post_s = time.perf_counter() - t
                    timings[f"{post_label}/seed{seed}/post"] = post_s
                    record(post_label, seed, ev, spec.label)
                    explain_models[post_label] = model
                    entry = _info(variant, spec, pv, pre_reports)  # type: ignore[arg-type]
                    if info:
                        entry.setdefault("self_calibration", {})[str(seed)] = info
                    prev = method_info.get(post_label, {}).get("self_calibration", {})
                    entry["self_calibration"] = {**prev, **entry.get("self_calibration", {})}
                    if not entry["self_calibration"]:
                        del entry["self_calibration"]
                    method_info[post_label] = entry
                    say(f"{post_label} seed {seed}: post {post_s:.2f}s{value(ev)}")
                bar.update(1)
    finally:
        bar.close()
    results = (
        pd.concat(rows, ignore_index=True)[RESULT_COLUMNS]
        if rows
        else pd.DataFrame(columns=RESULT_COLUMNS)
    )
    t = time.perf_counter()
    analysis = _analyse(cfg, split, results, evals, baselines, explain_models)
    timings["analysis"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    result = ExperimentResult(cfg, ds, split, results, evals, models, timings, report)
    result.stages = log
    result.analysis = analysis
    result.methods = method_info
    if out is not None:
        outp = Path(out)
        outp.mkdir(parents=True, exist_ok=True)
        for name, frame in analysis.items():
            frame.to_parquet(outp / f"{name}.parquet", index=False)
        extra = {
            "stages": log.to_list(),
            "stage_totals": log.totals(),
            "cache": None if root is None else str(root.resolve()),
            "methods": method_info,
            "baselines": baselines,
            "training": histories,
        }
        write_result_folder(result, outp, recs_frames, extra_summary=extra)
        save_models(result, outp, say)
    return result


def _check_attrs(cfg: ExperimentConfig, ds: Dataset, variants: list[TrainedVariant]) -> None:
    """Unknown attribute names (eval, strategies, re-rankers) -> DataError before any training."""
    for name in [
        *(cfg.eval.attrs or []),
        *cfg.eval.intersections,
        *sorted(referenced_attrs(variants)),
    ]:
        ds.user_groups(name)


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
        "model": spec.model,
        "params": variant.params,
        "levels": levels,
        "pre": variant.pre,
        "pre_reports": pre_reports,
        "inproc": variant.inproc,
        "post": None if pv is None else pv.payload(),
    }


# ------------------------------------------------------------------------------------ stages
def _json_id(x: Any) -> Any:
    """A vocabulary id as JSON keeps it (ints stay ints, strings stay strings)."""
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    return str(x)


def _save_dataset(ds: Dataset, folder: Path, like: Dataset) -> bool:
    """Cache a dataset that shares ``like``'s items (users may be appended by a transform)."""
    if not ds.item_vocab.equals(like.item_vocab):
        return False
    arrays = {"users": np.asarray(ds.users), "items": np.asarray(ds.items)}
    if ds.ratings is not None:
        arrays["ratings"] = np.asarray(ds.ratings)
    if ds.timestamps is not None:
        arrays["timestamps"] = np.asarray(ds.timestamps)
    weights = getattr(ds, "weights", None)
    if weights is not None:
        arrays["weights"] = np.asarray(weights)
    np.savez(folder / "interactions.npz", **arrays)
    own = not ds.user_vocab.equals(like.user_vocab)
    meta: dict[str, Any] = {"name": ds.name, "own_users": own}
    if own:
        # Ids go to JSON (mixed int / str ids survive: real users keep their ids, appended ones
        # are strings such as "over:0"); the attribute table goes to Parquet.
        meta["user_vocab"] = [_json_id(x) for x in ds.user_vocab]
        try:
            ds.user_table.to_parquet(folder / "users.parquet", index=False)
        except (ValueError, TypeError, ImportError):  # a table Parquet cannot hold
            return False
    (folder / "meta.json").write_text(json.dumps(meta))
    return True


def _load_dataset(folder: Path, like: Dataset) -> Dataset:
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "interactions.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    user_vocab, user_table = like.user_vocab, like.user_table
    if meta["own_users"]:
        user_vocab = pd.Index(meta["user_vocab"], dtype=object if any(
            isinstance(x, str) for x in meta["user_vocab"]) else None)  # fmt: skip
        user_table = pd.read_parquet(folder / "users.parquet")
    extra = {"weights": arrays["weights"]} if "weights" in arrays else {}
    return Dataset(
        arrays["users"],
        arrays["items"],
        user_vocab=user_vocab,
        item_vocab=like.item_vocab,
        ratings=arrays.get("ratings"),
        timestamps=arrays.get("timestamps"),
        user_table=user_table,
        item_table=like.item_table,
        schema=like.schema,
        name=meta["name"],
        **extra,
    )


def _save_split(split: Split, folder: Path) -> bool:
    for part, d in zip(("train", "valid", "test"), split, strict=True):
        (folder / part).mkdir()
        if not _save_dataset(d, folder / part, d):
            return False
    return True


def _load_split(folder: Path, ds: Dataset) -> Split:
    parts = [_load_dataset(folder / p, ds) for p in ("train", "valid", "test")]
    return Split(*parts)


def _pre_chain(
    sc: StageCache,
    split: Split,
    split_key: str,
    entries: list[dict[str, Any]],
    seed: int,
    label: str,
) -> tuple[Dataset, str, list[Any]]:
    """The training split after the ``pre`` transforms (each step cached); its key; reports."""
    from debiasrec.debias.pre import PRE_METHODS

    train, key = split.train, split_key
    reports: list[Any] = []
    for j, entry in enumerate(entries):
        params = {k: v for k, v in entry.items() if k != "method"}
        key = stage_key(
            "pre", {"data": key, "method": entry["method"], "params": params, "seed": seed}
        )
        transform = PRE_METHODS[entry["method"]](params)
        source = train

        def compute(
            transform: Any = transform, source: Dataset = source, name: str = entry["method"]
        ) -> Any:
            out = transform.apply(source, rng=seed)
            if out.n_items != split.train.n_items or out.n_users < split.train.n_users:
                raise ConfigError(
                    f"pre-processing {name!r} changed the item catalog or dropped "
                    "users; transforms must keep every item and user code"
                )
            return (out, transform.report_)

        def save(value: Any, folder: Path) -> bool:
            (folder / "report.json").write_text(json.dumps(value[1], default=_json_default))
            return _save_dataset(value[0], folder, split.train)

        def load(folder: Path) -> Any:
            return (
                _load_dataset(folder, split.train),
                json.loads((folder / "report.json").read_text()),
            )

        train, rep = sc.get_or_compute("pre", f"{label} pre[{j}]", key, compute, save, load)
        reports.append({"method": entry["method"], **(rep if isinstance(rep, dict) else {})})
    return train, key, reports


def _fit_stage(
    sc: StageCache,
    key: str,
    spec: ModelSpec,
    inproc: list[dict[str, Any]],
    train: Dataset,
    valid: Dataset,
    seed: int,
    progress: bool,
    label: str,
) -> tuple[Recommender, dict[str, Any] | None]:
    cls = model_class(spec.model)

    def compute() -> tuple[Recommender, dict[str, Any] | None]:
        params = dict(spec.params)
        if progress and "train" in cls.Config.model_fields:
            params.setdefault("train", {})
            params["train"] = {**params["train"], "progress": True}
        model = (
            cls(params, strategies=strategies_from(inproc))  # type: ignore[call-arg]
            if inproc
            else cls(params)
        )
        model.fit(train, valid=valid, rng=seed)
        hist = model.history_.to_dict() if hasattr(model, "history_") else None
        return model, hist

    def save(value: tuple[Recommender, dict[str, Any] | None], folder: Path) -> bool:
        try:
            value[0].save(folder / "model")
        except NotImplementedError:
            return False
        (folder / "history.json").write_text(json.dumps(value[1], default=_json_default))
        return True

    def load(folder: Path) -> tuple[Recommender, dict[str, Any] | None]:
        model = cls.load(folder / "model")
        return model, json.loads((folder / "history.json").read_text())

    return sc.get_or_compute("fit", label, key, compute, save, load)  # type: ignore[no-any-return]


def _save_eval(ev: Evaluation, folder: Path) -> None:
    ev.results.to_parquet(folder / "results.parquet", index=False)
    ev.per_user.to_parquet(folder / "per_user.parquet", index=False)
    arrays = {"topk": ev.topk, "users": ev.users}
    if ev.scores is not None:
        arrays["scores"] = ev.scores
    np.savez(folder / "lists.npz", **arrays)


def _load_eval(folder: Path) -> Evaluation:
    with np.load(folder / "lists.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return Evaluation(
        per_user=pd.read_parquet(folder / "per_user.parquet"),
        results=pd.read_parquet(folder / "results.parquet"),
        topk=arrays["topk"],
        users=arrays["users"],
        scores=arrays.get("scores"),
    )


def _embeddings(model: Recommender) -> np.ndarray | None:
    try:
        return np.asarray(model.user_embeddings(), dtype=np.float64)
    except (NotImplementedError, AttributeError):
        return None


def _eval_stage(
    sc: StageCache,
    fit_key: str,
    model: Recommender,
    split: Split,
    cfg: ExperimentConfig,
    seed: int,
    label: str,
) -> Evaluation:
    key = stage_key(
        "eval",
        {
            "fit": fit_key,
            "eval": cfg.eval.model_dump(mode="json"),
            "seed": seed,
            "extra": EXTRA_VERSION,
        },
    )

    def compute() -> Evaluation:
        ev = evaluate_model(
            model._score_block, split.train, split.valid, split.test, config=cfg.eval, rng=seed
        )
        return extra_metrics(
            ev, split.train, split.test, config=cfg.eval, rng=seed, embeddings=_embeddings(model)
        )

    def save(ev: Evaluation, folder: Path) -> bool:
        _save_eval(ev, folder)
        return True

    return sc.get_or_compute("eval", label, key, compute, save, _load_eval)  # type: ignore[no-any-return]


def _post_stage(
    sc: StageCache,
    fit_key: str,
    model: Recommender,
    split: Split,
    cfg: ExperimentConfig,
    pv: PostVariant,
    seed: int,
    label: str,
) -> tuple[Evaluation, dict[str, Any] | None]:
    key = stage_key(
        "post",
        {
            "fit": fit_key,
            "post": pv.payload(),
            "eval": cfg.eval.model_dump(mode="json"),
            "seed": seed,
            "extra": EXTRA_VERSION,
        },
    )

    def compute() -> tuple[Evaluation, dict[str, Any] | None]:
        return _rerank(model, split, cfg, pv, seed)

    def save(value: tuple[Evaluation, dict[str, Any] | None], folder: Path) -> bool:
        _save_eval(value[0], folder)
        (folder / "info.json").write_text(json.dumps(value[1], default=_json_default))
        return True

    def load(folder: Path) -> tuple[Evaluation, dict[str, Any] | None]:
        return _load_eval(folder), json.loads((folder / "info.json").read_text())

    return sc.get_or_compute("post", label, key, compute, save, load)  # type: ignore[no-any-return]


def _rerank(
    model: Recommender, split: Split, cfg: ExperimentConfig, pv: PostVariant, seed: int
) -> tuple[Evaluation, dict[str, Any] | None]:
    """Re-rank the model's test candidates with ``pv``; evaluate like any method."""
    import copy
    import warnings

    from debiasrec.debias.post import RERANKERS, RerankContext, SelfCalibrator, candidates
    from debiasrec.experiment.evaluate import eval_users, evaluate_topk

    kmax = max(cfg.eval.ks)
    params = dict(pv.params)
    n_cand = max(int(params.pop("n_candidates", 100)), kmax)
    train, valid, test = split
    info: dict[str, Any] | None = None
    if pv.self_calibrate is not None:
        ctl = dict(pv.self_calibrate)
        ctl.setdefault("k", cfg.eval.ks[0])
        cal = SelfCalibrator(method=pv.method, params=params, n_candidates=n_cand, **ctl)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cal.fit(model.score, split)
        reranker = copy.copy(cal.reranker_)
        reranker.config = reranker.config.model_copy(update={"k": kmax})
        context = cal.context_
        info = {**cal.summary(), "warnings": [str(w.message) for w in caught]}
    else:
        attrs = list(train.schema.sensitive_names)
        if params.get("attr") and params["attr"] not in attrs:
            attrs.append(params["attr"])
        context = RerankContext.from_datasets(train, valid, sensitive=attrs)
        reranker = RERANKERS[pv.method](
            {**params, "strength": pv.strength, "k": kmax, "n_candidates": n_cand}
        )
        vusers = np.flatnonzero(valid.user_counts() > 0)
        vcand = candidates(model.score, vusers, n=n_cand, exclude=[train.csr()])
        reranker.fit(context, vcand)
    users = eval_users(test)
    cand = candidates(model.score, users, n=n_cand, exclude=[train.csr(), valid.csr()])
    recs = reranker.rerank(cand, context)
    ev = evaluate_topk(
        recs.items, recs.users, train, test, config=cfg.eval, rng=seed, scores=recs.scores
    )
    ev = extra_metrics(ev, train, test, config=cfg.eval, rng=seed)
    return ev, info


def _analyse(
    cfg: ExperimentConfig,
    split: Split,
    results: pd.DataFrame,
    evals: dict[tuple[str, int], Evaluation],
    baselines: dict[str, str],
    explain_models: dict[str, Recommender],
) -> dict[str, pd.DataFrame]:
    """Seed aggregates, paired tests, Pareto frontiers and the transparency tables."""
    from debiasrec.experiment.analysis import paired_tests, pareto_frontier, seed_aggregate
    from debiasrec.experiment.explain import calibration_sample, explanations, sample_users

    k = cfg.eval.ks[0]
    agg = seed_aggregate(results, cfg.eval.ci)
    attrs = list(split.test.schema.sensitive_names if cfg.eval.attrs is None else cfg.eval.attrs)
    groups = {a: split.test.user_groups(a) for a in attrs}
    tests = paired_tests(evals, baselines, groups, f"ndcg@{k}", n_boot=max(cfg.eval.n_boot, 200))
    out = {"aggregate": agg, "tests": tests, "frontier": pareto_frontier(agg, k)}
    first = cfg.seeds[0]
    lists = {m: (ev.users, ev.topk) for (m, s), ev in evals.items() if s == first}
    if cfg.explain_users and lists:
        users = sample_users(split.test, cfg.explain_users, cfg.split.seed)
        out["explanations"] = explanations(
            lists, baselines, explain_models, split.train, users, k=k
        )
        out["calibration"] = calibration_sample(lists, split.train, users, k=k)
    return out


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
