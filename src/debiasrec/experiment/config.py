"""The experiment config (TOML): data, split, models, methods, evaluation, seeds.

One ``ExperimentConfig.model_validate`` (or :func:`load_config`) checks everything before
anything runs and reports every error with its field path: unknown keys and bad values of any
model, transform, strategy or re-ranker (each validated by its own pydantic ``Config``), unknown
component names (listing the registered ones), method/model pairings that cannot work (a
strategy requiring a capability the model does not declare, a weighting transform before a model
that ignores weights), unsafe result labels, and duplicate labels.

A model's hyper-parameters are validated once, here, into its typed config: the runner builds
the model from that object (``ModelSpec.params``), never from the TOML dict again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from debiasrec.config import ComponentEntry, error_at, load_toml, raise_errors, relocate
from debiasrec.data.purify import PurifyConfig
from debiasrec.experiment.evaluate import EvalConfig
from debiasrec.experiment.methods import (
    MethodSpec,
    TrainedVariant,
    check_label,
    expand,
    merge_params,
)
from debiasrec.limits import SEED_MAX, check_seed
from debiasrec.models.base import MODELS
from debiasrec.models.capabilities import WeightedTraining, missing_capabilities

#: Largest seed accepted (seeds feed NumPy and torch generators).
MAX_SEED = SEED_MAX


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
    normalise: bool = Field(False, description="rescale ratios that do not sum to 1")
    seed: int = 2020

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        return check_seed(v, "split.seed")

    @model_validator(mode="after")
    def _ratios(self) -> SplitConfig:
        total = sum(self.ratios)
        if any(r < 0 for r in self.ratios) or total <= 0:
            raise ValueError(f"ratios must be >= 0 with a positive sum, got {list(self.ratios)}")
        if abs(total - 1.0) > 1e-6 and not self.normalise:
            raise ValueError(
                f"split ratios {list(self.ratios)} sum to {total:g}, not 1; fix them, or set "
                "normalise = true (normalise=True in Python) to rescale them"
            )
        return self


class ModelSpec(ComponentEntry):
    """One ``[[models]]`` entry: ``kind`` (a registered model), result ``name`` and ``params``.

    ``params`` is validated into the model's own config class (``config``); ``model = "..."`` is
    accepted as the older name of ``kind``.
    """

    registry: ClassVar = MODELS
    legacy_kind_keys: ClassVar = ("model",)
    config_key: ClassVar = "params"

    name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else check_label(v)

    def check(self) -> list[Any]:
        if self.name is None:
            try:
                check_label(self.kind)
            except ValueError as exc:
                return [error_at(("kind",), str(exc))]
        return []

    @property
    def label(self) -> str:
        return self.name or self.kind

    @property
    def params(self) -> Any:
        """The model's validated config."""
        return self.config


class ExperimentConfig(BaseModel):
    """A whole experiment, as written in TOML."""

    model_config = ConfigDict(extra="forbid")

    name: str = "experiment"
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec.model_validate({"kind": "pop"})])
    eval: EvalConfig = Field(default_factory=EvalConfig)
    methods: list[MethodSpec] = Field(
        default_factory=list, description="debiasing methods (see debiasrec.experiment.methods)"
    )
    seeds: list[int] = Field(default_factory=lambda: [0])
    recs_k: int | None = Field(None, ge=1, description="list length saved in recs/ (max ks)")
    explain_users: int = Field(5, ge=0, description="sample users in explanations.parquet")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("seeds must list at least one seed")
        for i, s in enumerate(v):
            check_seed(s, f"seeds[{i}]")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        errors: list[Any] = []
        labels = [m.label for m in self.models]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            errors.append(
                error_at(("models",), f"model names must be unique; repeated: {dup} (set 'name')")
            )
        names = [m.name for m in self.methods]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            errors.append(error_at(("methods",), f"names must be unique; repeated: {dup}"))
        if self.recs_k is not None and self.recs_k > max(self.eval.ks):
            # Lists are ranked to max(eval.ks); a longer saved list would be silently cut.
            errors.append(
                error_at(
                    ("recs_k",),
                    f"recs_k={self.recs_k} exceeds the longest evaluated list max(eval.ks)="
                    f"{max(self.eval.ks)}; lower recs_k or add {self.recs_k} to eval.ks",
                )
            )
        seen = set(labels)
        for i, m in enumerate(self.methods):
            errors += self._check_method(i, m, seen)
        raise_errors(type(self).__name__, errors)
        return self

    def _base(self, label: str) -> ModelSpec | None:
        return next((s for s in self.models if s.label == label), None)

    def _merged_params(self, i: int, m: MethodSpec) -> tuple[Any, list[Any]]:
        base = self._base(m.model)
        assert base is not None
        if not m.params:
            return base.config, []
        merged = merge_params(base.config.model_dump(), m.params)
        try:
            return base.component.Config.model_validate(merged), []
        except ValidationError as exc:
            return None, relocate(exc, ("methods", i, "params"))

    def _check_method(self, i: int, m: MethodSpec, seen: set[str]) -> list[Any]:
        where: tuple[str | int, ...] = ("methods", i)
        base = self._base(m.model)
        if base is None:
            return [
                error_at(
                    (*where, "model"),
                    f"{m.model!r} is not the label of a [[models]] entry; available: "
                    f"{sorted(s.label for s in self.models)}",
                )
            ]
        params, errors = self._merged_params(i, m)
        if params is None:
            return errors
        cls = base.component
        caps = cls.capabilities(params)
        for j, e in enumerate(m.inproc):
            missing = missing_capabilities(caps, e.component.requires(e.config))
            if missing:
                errors.append(
                    error_at(
                        (*where, "inproc", j),
                        f"strategy {e.kind!r} needs a model with {', '.join(missing)}; model "
                        f"{base.kind!r} ({m.model}) does not have "
                        f"{'it' if len(missing) == 1 else 'them'} (see "
                        "debiasrec.models.capabilities)",
                    )
                )
        for j, pe in enumerate(m.pre):
            if getattr(pe.component, "sets_weights", False) and WeightedTraining not in caps:
                errors.append(
                    error_at(
                        (*where, "pre", j),
                        f"transform {pe.kind!r} sets interaction weights, but model "
                        f"{base.kind!r} ({m.model}) ignores weights (it does not declare "
                        "WeightedTraining)",
                    )
                )
        if errors:
            return errors
        for v in expand(m, params):
            for lab in ([v.label] if v.report_plain else []) + [lab for lab, _ in v.post]:
                try:
                    check_label(lab, "result label")
                except ValueError as exc:
                    errors.append(error_at(where, str(exc)))
                if lab in seen:
                    errors.append(
                        error_at(where, f"result label {lab!r} is used twice (set name/label)")
                    )
                seen.add(lab)
        return errors

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        return load_toml(path, cls)

    def model_spec(self, label: str) -> ModelSpec:
        """The ``[[models]]`` entry labelled ``label``."""
        spec = self._base(label)
        if spec is None:
            raise KeyError(label)
        return spec

    def variants(self) -> list[TrainedVariant]:
        """The trained variants of ``methods`` (sweeps expanded), each with its post results."""
        out: list[TrainedVariant] = []
        for i, m in enumerate(self.methods):
            params, _ = self._merged_params(i, m)
            out += expand(m, params)
        return out


def load_config(path: str | Path) -> ExperimentConfig:
    """Load and validate an experiment TOML (raises :class:`ConfigError` naming the bad field)."""
    return ExperimentConfig.from_toml(path)


__all__ = [
    "MAX_SEED",
    "DataConfig",
    "ExperimentConfig",
    "ModelSpec",
    "SplitConfig",
    "load_config",
]
