"""Debiasing methods of an experiment: the ``[[methods]]`` tables, typed and validated at once.

A method starts from one ``[[models]]`` entry (its *base model*, named by label) and adds
debiasing at any of the three levels, which combine::

    [[methods]]
    name = "bpr-adv"                 # result label (letters, digits, . _ - = only)
    model = "bpr"                    # label of a [[models]] entry
    pre = [{ kind = "group_reweight", attr = "gender" }]                    # in order
    inproc = [{ kind = "adversarial", attrs = ["gender"], strength = 0.05 }]  # together
    post = [{ kind = "calibrated", self_calibrate = { target = "miscalibration <= 0.5x" } }]

- ``pre``: transforms of :data:`debiasrec.debias.pre.TRANSFORMS`, applied to the training
  split in order (``kind`` plus the transform's own config keys).
- ``inproc``: strategies of :data:`debiasrec.debias.inproc.STRATEGIES`, used together in one
  training run (``kind`` plus the strategy's config keys). The base model must declare every
  capability a strategy requires (:mod:`debiasrec.models.capabilities`); a pairing that cannot
  work is rejected here, before anything trains.
- ``post``: re-rankers of :data:`debiasrec.debias.post.RERANKERS`. Each entry is a separate
  result over the same trained model (re-rankers act on the model's scores; they are not
  chained), with exactly one of ``strength = x``, ``sweep = [x, ...]`` or
  ``self_calibrate = {target = ...}`` (tuned on validation data by
  :class:`~debiasrec.debias.post.SelfCalibrator`); other keys are the re-ranker's options
  (``attr``, ``n_candidates``, ...).

``method`` (pre, post) and ``strategy`` (inproc) are accepted as older names of ``kind``.

One ``sweep = [...]`` in ``pre`` or ``inproc`` trains one variant per value of the component's
``sweep_key`` (e.g. an adversary's ``strength``, a regularizer's ``weight``).

Result labels: ``NAME`` for a method with at most one post-processor and no sweep; ``NAME@V`` per
swept value; ``NAME+POST`` when a method lists several post-processors (``POST`` is the entry's
``label`` or its ``kind``). A method with ``pre``/``inproc`` and ``post`` also reports its
trained model before post-processing, as ``NAME+none``. Labels become file names, so they are
one safe path component.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from debiasrec.config import ComponentEntry, error_at, raise_errors
from debiasrec.debias.inproc.base import STRATEGIES
from debiasrec.debias.post.base import RERANKERS
from debiasrec.debias.post.controller import SelfCalibrationConfig, Target
from debiasrec.debias.pre.base import TRANSFORMS
from debiasrec.errors import ConfigError

#: A user-given name of a model, method or post entry (it becomes part of file names).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,99}$")
#: A result label (names plus the ``@`` and ``+`` the runner adds): one safe path component,
#: with no separator and no leading dot.
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=@+-]{0,199}$")


def check_label(value: str, what: str = "name") -> str:
    """``value`` if it is a safe name (it names files and folders), else ValueError."""
    pattern, allowed = (
        (LABEL_RE, "'.', '_', '-', '=', '@' or '+'")
        if what == "result label"
        else (NAME_RE, "'.', '_', '-' or '='")
    )
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(
            f"{what} {value!r}: use letters, digits, {allowed}, starting with a letter or digit "
            "(it names files and folders of the result)"
        )
    return value


def _each_value(
    component: Any, raw: dict[str, Any], key: str, values: list[Any], swept: bool
) -> Any:
    """``component.Config`` validated with ``key = v`` for every value; errors of a swept value
    are placed at ``sweep[j]``. Returns the first value's config."""
    configs, errors = [], []
    for j, v in enumerate(values):
        try:
            configs.append(component.Config.model_validate({**raw, key: v}))
        except ValidationError as exc:
            if not swept:
                raise
            for e in exc.errors(include_url=False):
                if tuple(e["loc"]) != (key,) and j > 0:
                    continue  # the same error for every value: reported once
                where = ("sweep", j) if tuple(e["loc"]) == (key,) else tuple(e["loc"])
                msg = (
                    e["msg"]
                    if tuple(e["loc"]) != (key,)
                    else f"{key} {e['msg'][0].lower()}{e['msg'][1:]}"
                )
                errors.append(error_at(where, msg, v))
    raise_errors(component.Config.__name__, errors)
    return configs[0]


def _sweep_values(values: list[float] | None) -> list[float] | None:
    if values is not None and not values:
        raise ValueError("must list at least one number")
    return values


class _SweepEntry(ComponentEntry):
    """A pre or inproc entry: the component's config, or one sweep over its ``sweep_key``."""

    sweep: list[float] | None = None

    _check_sweep = field_validator("sweep")(_sweep_values)

    @classmethod
    def component_config(cls, component: Any, raw: dict[str, Any], own: dict[str, Any]) -> Any:
        sweep = own.get("sweep")
        if sweep is None:
            return component.Config.model_validate(raw)
        key = getattr(component, "sweep_key", None)
        if key is None:
            raise_errors(
                "sweep", [error_at(("sweep",), f"{component.name!r} has no strength to sweep")]
            )
        assert isinstance(key, str)
        if key in raw:
            raise_errors("sweep", [error_at(("sweep",), f"give {key} or sweep, not both")])
        return _each_value(component, raw, key, sweep, swept=True)

    def configs(self) -> list[tuple[float | None, BaseModel]]:
        """``[(swept value or None, config)]``: one trained variant each."""
        if self.sweep is None:
            return [(None, self.config)]
        key = self.component.sweep_key
        return [(v, self.config.model_copy(update={key: v})) for v in self.sweep]

    def dump_config(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.sweep is not None:
            data.pop(self.component.sweep_key, None)
        return data


class PreEntry(_SweepEntry):
    """One ``pre`` transform."""

    registry: ClassVar = TRANSFORMS
    legacy_kind_keys: ClassVar = ("method",)


class InprocEntry(_SweepEntry):
    """One ``inproc`` strategy."""

    registry: ClassVar = STRATEGIES
    legacy_kind_keys: ClassVar = ("strategy",)

    def check(self) -> list[Any]:
        return [error_at(("kind",), msg) for msg in self.component.experiment_errors(self.config)]


class SelfCalibrate(BaseModel):
    """``self_calibrate = { target = "...", ... }`` of a post entry (see SelfCalibrator)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Target
    lo: float | None = None
    hi: float | None = None
    grid: int | None = None
    refine: int | None = None
    k: int | None = Field(None, ge=1, description="cut-off of the target (default eval.ks[0])")

    @field_validator("target", mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        return Target.parse(v) if isinstance(v, str) else v

    @field_serializer("target")
    def _target_text(self, target: Target) -> str:
        return str(target)

    def controller_args(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None and k != "target"}


class PostEntry(ComponentEntry):
    """One ``post`` re-ranker at a fixed, swept or self-calibrated strength."""

    registry: ClassVar = RERANKERS
    legacy_kind_keys: ClassVar = ("method",)

    label: str | None = None
    strength: float | None = None
    sweep: list[float] | None = None
    self_calibrate: SelfCalibrate | None = None

    _check_sweep = field_validator("sweep")(_sweep_values)

    @field_validator("label")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        return None if v is None else check_label(v, "label")

    @classmethod
    def component_config(cls, component: Any, raw: dict[str, Any], own: dict[str, Any]) -> Any:
        for key in ("k",):
            if key in raw:
                raise ValueError(f"{key} is set by the runner (the longest eval.ks); remove it")
        sweep = own.get("sweep")
        values = sweep or [own.get("strength", 0.0)]
        return _each_value(component, raw, "strength", values, swept=bool(sweep))

    def check(self) -> list[Any]:
        given = [k for k in ("strength", "sweep", "self_calibrate") if getattr(self, k) is not None]
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            return [error_at((), f"give exactly one of strength, sweep or self_calibrate{got}")]
        if self.self_calibrate is not None:
            try:
                self.controller_config(k=self.self_calibrate.k or 10)
            except ConfigError as exc:
                return [error_at(("self_calibrate",), str(exc))]
        return []

    def options(self) -> dict[str, Any]:
        """The re-ranker's own options (everything but strength and k)."""
        return self.config.model_dump(exclude={"strength", "k"})

    def controller_config(self, *, k: int) -> SelfCalibrationConfig:
        """The self-calibration controller's config for this entry."""
        assert self.self_calibrate is not None
        opts = self.options()
        n_cand = opts.pop("n_candidates")
        from debiasrec.config import build_config

        return build_config(
            SelfCalibrationConfig,
            {
                "method": self.kind,
                "target": self.self_calibrate.target,
                "params": opts,
                "n_candidates": n_cand,
                **{"k": k, **self.self_calibrate.controller_args()},
            },
            {},
            what=f"self_calibrate of {self.kind!r}",
        )

    def dump_config(self, data: dict[str, Any]) -> dict[str, Any]:
        data.pop("k", None)
        data.pop("strength", None)
        return data


class MethodSpec(BaseModel):
    """One ``[[methods]]`` table (checked against the ``[[models]]`` by ExperimentConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str = Field(description="label of the [[models]] entry the method starts from")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the base model's params (merged key by key, nested tables "
        "too), e.g. a shorter training for an expensive strategy",
    )
    pre: list[PreEntry] = Field(default_factory=list)
    inproc: list[InprocEntry] = Field(default_factory=list)
    post: list[PostEntry] = Field(default_factory=list)

    _name = field_validator("name")(check_label)

    @model_validator(mode="after")
    def _levels(self) -> MethodSpec:
        if not (self.pre or self.inproc or self.post):
            raise ValueError("lists no pre, inproc or post debiasing")
        sweeps = [
            f"{lvl}[{j}]"
            for lvl in ("pre", "inproc")
            for j, e in enumerate(getattr(self, lvl))
            if e.sweep is not None
        ]
        if len(sweeps) > 1:
            raise ValueError(
                f"at most one sweep in pre/inproc per method; found {', '.join(sweeps)}"
            )
        return self


@dataclass(frozen=True)
class PostVariant:
    """One post-processing result: a re-ranker at a fixed or self-calibrated strength."""

    entry: PostEntry
    strength: float | None = None

    @property
    def kind(self) -> str:
        return self.entry.kind

    def payload(self) -> dict[str, Any]:
        """What the result depends on (for the cache key and summary.json)."""
        return {
            "kind": self.entry.kind,
            "options": self.entry.options(),
            "strength": self.strength,
            "self_calibrate": None
            if self.entry.self_calibrate is None
            else self.entry.self_calibrate.model_dump(mode="json"),
        }


@dataclass(frozen=True)
class TrainedVariant:
    """A model to train: base model + pre transforms + in-processing strategies (one sweep value)."""

    label: str
    method: str
    model_label: str
    params: BaseModel
    pre: list[tuple[str, BaseModel]] = field(default_factory=list)
    inproc: list[tuple[str, BaseModel]] = field(default_factory=list)
    post: list[tuple[str, PostVariant]] = field(default_factory=list)
    report_plain: bool = True


def merge_params(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, key by key (nested tables merged, not replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            merge_params(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def expand(method: MethodSpec, params: BaseModel) -> list[TrainedVariant]:
    """The trained variants of ``method`` (sweeps expanded) with their post results.

    ``params`` is the base model's config with the method's overrides applied.
    """
    posts: list[tuple[str | None, PostVariant, str]] = []
    for e in method.post:
        tag = e.label or e.kind
        if e.sweep is not None:
            posts += [(f"{float(s):g}", PostVariant(e, float(s)), tag) for s in e.sweep]
        elif e.strength is not None:
            posts.append((None, PostVariant(e, float(e.strength)), tag))
        else:
            posts.append((None, PostVariant(e), tag))
    sweeps = [(lvl, j) for lvl in ("pre", "inproc") for j, e in enumerate(getattr(method, lvl)) if e.sweep is not None]  # fmt: skip
    pre = [(e.kind, e.config) for e in method.pre]
    inproc = [(e.kind, e.config) for e in method.inproc]
    train_values: list[tuple[str, list[tuple[str, BaseModel]], list[tuple[str, BaseModel]]]] = []
    if sweeps:
        lvl, j = sweeps[0]
        entry = getattr(method, lvl)[j]
        for v, cfg in entry.configs():
            fixed = list(pre if lvl == "pre" else inproc)
            fixed[j] = (entry.kind, cfg)
            train_values.append(
                (
                    f"{method.name}@{float(v):g}",
                    fixed if lvl == "pre" else pre,
                    fixed if lvl == "inproc" else inproc,
                )
            )
    else:
        train_values.append((method.name, pre, inproc))
    trained_only = bool(method.pre or method.inproc)
    several_tags = len({t for _, _, t in posts}) > 1
    out = []
    for base_label, pre_v, inproc_v in train_values:
        post_labels: list[tuple[str, PostVariant]] = []
        for suffix, pv, tag in posts:
            label = base_label
            if several_tags:
                label += f"+{tag}"
            if suffix is not None:
                label += f"@{suffix}" if "@" not in label else f"+{pv.kind}@{suffix}"
            post_labels.append((label, pv))
        plain = f"{base_label}+none" if posts and trained_only else base_label
        out.append(
            TrainedVariant(
                label=plain,
                method=method.name,
                model_label=method.model,
                params=params,
                pre=pre_v,
                inproc=inproc_v,
                post=post_labels,
                report_plain=trained_only,
            )
        )
    return out


def referenced_attrs(variants: list[TrainedVariant]) -> set[str]:
    """Sensitive attributes named by transforms, strategies and re-rankers (checked before
    training): their ``attr`` / ``attrs`` config fields and self-calibration targets."""
    names: set[str] = set()

    def add(cfg: BaseModel) -> None:
        attr = getattr(cfg, "attr", None)
        if isinstance(attr, str):
            names.add(attr)
        attrs = getattr(cfg, "attrs", None)
        if isinstance(attrs, (list, tuple)):
            names.update(a for a in attrs if isinstance(a, str))

    for v in variants:
        for _, cfg in [*v.pre, *v.inproc]:
            add(cfg)
        for _, pv in v.post:
            add(pv.entry.config)
            sc = pv.entry.self_calibrate
            if sc is not None and sc.target.attr:
                names.add(sc.target.attr)
    return names


__all__ = [
    "LABEL_RE",
    "NAME_RE",
    "InprocEntry",
    "MethodSpec",
    "PostEntry",
    "PostVariant",
    "PreEntry",
    "SelfCalibrate",
    "TrainedVariant",
    "check_label",
    "expand",
    "merge_params",
    "referenced_attrs",
]
