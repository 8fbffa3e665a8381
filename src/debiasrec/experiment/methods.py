"""Debiasing methods of an experiment: the ``[[methods]]`` tables, validated before any training.

A method starts from one ``[[models]]`` entry (its *base model*, named by label) and adds
debiasing at any of the three levels, which combine::

    [[methods]]
    name = "bpr-adv"                 # result label (letters, digits, . _ - = only)
    model = "bpr"                    # label of a [[models]] entry
    pre = [{ method = "reweight", strength = 0.5 }]                      # PRE_METHODS, in order
    inproc = [{ strategy = "adversarial", attrs = ["gender"], strength = 0.05 }]  # together
    post = [{ method = "calibrated", self_calibrate = { target = "miscalibration <= 0.5x" } }]

- ``pre``: transforms of :data:`debiasrec.debias.pre.PRE_METHODS` applied to the training split in
  order (``method`` plus the transform's own config keys).
- ``inproc``: Trainer strategies used together in one training run: ``adversarial``
  (:class:`~debiasrec.debias.inproc.Adversarial`, keys of ``AdversarialConfig``), ``focf``
  (:class:`~debiasrec.debias.inproc.FOCFRegularizer`: ``attr, kind, weight, disadvantaged,
  smooth``), ``multitask`` (:class:`~debiasrec.debias.inproc.multitask.MultiTask`: keys of
  ``MultiTaskConfig``; genre, like and rating tasks) and ``utility_gap`` (:class:`~debiasrec.debias.inproc.UtilityGapPenalty`: ``attr,
  weight``). Torch models only.
- ``post``: re-rankers of :data:`debiasrec.debias.post.RERANKERS`. Each entry is a separate result
  over the same trained model (re-rankers act on the model's scores; they are not chained), with
  exactly one of ``strength = x``, ``sweep = [x, ...]`` or ``self_calibrate = {target = ...}``
  (tuned on validation data by :class:`~debiasrec.debias.post.SelfCalibrator`); other keys are the
  re-ranker's options (``attr``, ``item_groups``, ``n_candidates``, ...).

One ``sweep = [...]`` in ``pre`` or ``inproc`` trains one variant per value (``strength`` of a
transform or adversary, ``weight`` of a regularizer).

Result labels: ``NAME`` for a method with at most one post-processor and no sweep; ``NAME@V`` per
swept value; ``NAME+POST`` when a method lists several post-processors (``POST`` is the entry's
``label`` or its ``method``). A method with ``pre``/``inproc`` and ``post`` also reports its
trained model before post-processing, as ``NAME+none``.

Errors name the exact field (``methods[2].post[0].strength``) and are all reported at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from debiasrec.errors import ConfigError

#: In-processing strategies by config name and the key that ``sweep`` varies.
INPROC_STRATEGIES: dict[str, str | None] = {
    "adversarial": "strength",
    "focf": "weight",
    "utility_gap": "weight",
    "multitask": None,  # several task weights: no single strength to sweep
}
_FOCF_KEYS = {"attr", "kind", "weight", "disadvantaged", "smooth"}
_UGAP_KEYS = {"attr", "weight"}
_POST_OWN = {"method", "label", "strength", "sweep", "self_calibrate"}
_CAL_KEYS = {"target", "lo", "hi", "grid", "refine", "k"}
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")


class PathError(ValueError):
    """A config error whose message already names the field paths (``methods[0].post[1]...``)."""

    names_fields = True


class MethodSpec(BaseModel):
    """One ``[[methods]]`` table (levels checked by :func:`check_methods`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: str = Field(description="label of the [[models]] entry the method starts from")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the base model's params (merged key by key, nested tables "
        "too), e.g. a shorter training for an expensive strategy",
    )
    pre: list[dict[str, Any]] = Field(default_factory=list)
    inproc: list[dict[str, Any]] = Field(default_factory=list)
    post: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class PostVariant:
    """One post-processing result: a re-ranker at a fixed or self-calibrated strength."""

    method: str
    params: dict[str, Any]
    strength: float | None = None
    self_calibrate: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        """What the result depends on (for the cache key)."""
        return {
            "method": self.method,
            "params": self.params,
            "strength": self.strength,
            "self_calibrate": self.self_calibrate,
        }


@dataclass(frozen=True)
class TrainedVariant:
    """A model to train: base model + pre transforms + in-processing strategies (one sweep value)."""

    label: str
    method: str
    model_label: str
    params: dict[str, Any] = field(default_factory=dict)
    pre: list[dict[str, Any]] = field(default_factory=list)
    inproc: list[dict[str, Any]] = field(default_factory=list)
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


def _fmt_pydantic(exc: ValidationError, where: str) -> list[str]:
    out = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        out.append(f"{where}{loc}: {msg}")
    return out


def _num_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _check_pre(entry: dict[str, Any], where: str, errors: list[str]) -> None:
    from debiasrec.debias.pre import PRE_METHODS

    name = entry.get("method")
    if not isinstance(name, str):
        errors.append(f"{where}.method: required (one of {sorted(PRE_METHODS) or 'none yet'})")
        return
    if name not in PRE_METHODS:
        errors.append(
            f"{where}.method: unknown pre-processing method {name!r}; available: "
            f"{sorted(PRE_METHODS) or 'none registered'}"
        )
        return
    cls = PRE_METHODS[name]
    params = {k: v for k, v in entry.items() if k not in ("method", "sweep")}
    if "sweep" in entry:
        if "strength" not in cls.Config.model_fields:
            errors.append(f"{where}.sweep: transform {name!r} has no strength to sweep")
            return
        if not _num_list(entry["sweep"]):
            errors.append(f"{where}.sweep: must be a non-empty list of numbers")
            return
        if "strength" in params:
            errors.append(f"{where}: give strength or sweep, not both")
            return
        for v in entry["sweep"]:
            _validate(cls.Config, {**params, "strength": v}, where, errors)
        return
    _validate(cls.Config, params, where, errors)


def _validate(model: type[BaseModel], data: dict[str, Any], where: str, errors: list[str]) -> None:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        errors.extend(_fmt_pydantic(exc, where))


def _check_inproc(entry: dict[str, Any], where: str, errors: list[str], model_cls: type) -> None:
    from debiasrec.debias.inproc import AdversarialConfig
    from debiasrec.models.torch_base import TorchRecommender

    name = entry.get("strategy")
    if name not in INPROC_STRATEGIES:
        errors.append(
            f"{where}.strategy: unknown in-processing strategy {name!r}; available: "
            f"{sorted(INPROC_STRATEGIES)}"
        )
        return
    if not issubclass(model_cls, TorchRecommender):
        errors.append(
            f"{where}: strategy {name!r} trains with the torch Trainer; model "
            f"{model_cls.name!r} is not a torch model (use bpr, lightgcn or multvae)"
        )
        return
    need = {"adversarial": "user_repr", "multitask": "item_repr"}.get(name, "pair_scores")
    if not hasattr(model_cls, need):
        errors.append(
            f"{where}: strategy {name!r} needs a model with {need}(); {model_cls.name!r} has none"
        )
        return
    params = {k: v for k, v in entry.items() if k not in ("strategy", "sweep")}
    swept = INPROC_STRATEGIES[name]
    if swept is None:
        if "sweep" in entry:
            errors.append(f"{where}.sweep: strategy {name!r} has no single strength to sweep")
            return
        from debiasrec.debias.inproc.multitask import MultiTaskConfig

        n_err = len(errors)
        _validate(MultiTaskConfig, params, where, errors)
        if len(errors) == n_err and any(t.get("kind") == "text" for t in params.get("tasks", [])):
            errors.append(
                f"{where}.tasks: text tasks need review data passed from Python "
                "(MultiTask(text_data=...)); in a config use genre, like or rating tasks"
            )
        return
    values: list[Any] = [None]
    if "sweep" in entry:
        if not _num_list(entry["sweep"]):
            errors.append(f"{where}.sweep: must be a non-empty list of numbers")
            return
        if swept in params:
            errors.append(f"{where}: give {swept} or sweep, not both")
            return
        values = list(entry["sweep"])
    for v in values:
        p = dict(params) if v is None else {**params, swept: v}
        if name == "adversarial":
            _validate(AdversarialConfig, p, where, errors)
            continue
        allowed = _FOCF_KEYS if name == "focf" else _UGAP_KEYS
        for key in sorted(set(p) - allowed):
            errors.append(
                f"{where}.{key}: unknown key (check the spelling); {name} takes {sorted(allowed)}"
            )
        w = p.get("weight", 1.0)
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
            errors.append(f"{where}.weight: must be a number >= 0, got {w!r}")
        if "attr" in p and not isinstance(p["attr"], str):
            errors.append(f"{where}.attr: must be an attribute name")
        if name == "focf" and "kind" in p:
            from debiasrec.debias.inproc import FOCF_KINDS

            if p["kind"] not in FOCF_KINDS:
                errors.append(
                    f"{where}.kind: unknown FOCF kind {p['kind']!r}; available: {list(FOCF_KINDS)}"
                )
        if v is not None:
            break


def _check_post(
    entry: dict[str, Any], where: str, errors: list[str], model_cls: type
) -> list[tuple[str | None, PostVariant]]:
    from debiasrec.debias.post import RERANKERS, SelfCalibrationConfig

    name = entry.get("method")
    if name not in RERANKERS:
        errors.append(
            f"{where}.method: unknown post-processing method {name!r}; available: "
            f"{sorted(RERANKERS)}"
        )
        return []
    if not getattr(model_cls, "produces_scores", True):
        errors.append(
            f"{where}: re-ranker {name!r} needs a model that scores the whole catalog; "
            f"{model_cls.name!r} does not"
        )
        return []
    params = {k: v for k, v in entry.items() if k not in _POST_OWN}
    for key in ("k",):
        if key in params:
            errors.append(f"{where}.{key}: set by the runner (the longest eval.ks); remove it")
            return []
    cfg_cls = RERANKERS[name].Config
    n_before = len(errors)
    _validate(cfg_cls, params, where, errors)
    if len(errors) > n_before:
        return []
    given = [k for k in ("strength", "sweep", "self_calibrate") if k in entry]
    if len(given) != 1:
        errors.append(
            f"{where}: give exactly one of strength, sweep or self_calibrate"
            + (f" (got {', '.join(given)})" if given else "")
        )
        return []
    label = entry.get("label")
    if label is not None and (not isinstance(label, str) or not _LABEL_RE.match(label)):
        errors.append(f"{where}.label: use letters, digits, '.', '_', '-' or '=' only")
        return []
    mode = given[0]
    if mode == "strength":
        s = entry["strength"]
        try:
            cfg_cls.model_validate({**params, "strength": s})
        except ValidationError as exc:
            errors.extend(_fmt_pydantic(exc, where))
            return []
        return [(None, PostVariant(name, params, strength=float(s)))]
    if mode == "sweep":
        if not _num_list(entry["sweep"]):
            errors.append(f"{where}.sweep: must be a non-empty list of numbers")
            return []
        out: list[tuple[str | None, PostVariant]] = []
        for j, s in enumerate(entry["sweep"]):
            try:
                cfg_cls.model_validate({**params, "strength": s})
            except ValidationError:
                errors.append(f"{where}.sweep[{j}]: strength must be in [0, 1], got {s!r}")
                continue
            out.append((f"{float(s):g}", PostVariant(name, params, strength=float(s))))
        return out
    cal = entry["self_calibrate"]
    if not isinstance(cal, dict):
        errors.append(f'{where}.self_calibrate: must be a table, e.g. {{ target = "..." }}')
        return []
    for key in sorted(set(cal) - _CAL_KEYS):
        errors.append(
            f"{where}.self_calibrate.{key}: unknown key (check the spelling); "
            f"allowed: {sorted(_CAL_KEYS)}"
        )
    if "target" not in cal:
        errors.append(f"{where}.self_calibrate.target: required, e.g. 'gap_ndcg:gender <= 0.5x'")
    if len(errors) > n_before:
        return []
    ctl = {k: v for k, v in cal.items() if k in _CAL_KEYS}
    rr = {k: v for k, v in params.items() if k != "n_candidates"}
    try:
        SelfCalibrationConfig.model_validate(
            {
                "method": name,
                "params": rr,
                **ctl,
                **({"n_candidates": params["n_candidates"]} if "n_candidates" in params else {}),
            }
        )
    except (ValidationError, ConfigError) as exc:
        if isinstance(exc, ValidationError):
            errors.extend(_fmt_pydantic(exc, f"{where}.self_calibrate"))
        else:
            errors.append(f"{where}.self_calibrate.target: {exc}")
        return []
    return [(None, PostVariant(name, params, self_calibrate=ctl))]


def check_methods(
    methods: list[MethodSpec],
    model_labels: dict[str, str],
    model_params: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[TrainedVariant], list[str]]:
    """Validate every method against the registries; expand sweeps into variants.

    Args:
        methods: the ``[[methods]]`` tables.
        model_labels: ``{label: model registry name}`` of the ``[[models]]`` entries.
        model_params: ``{label: params}`` of the ``[[models]]`` entries (for ``params``
            overrides; default: none).

    Returns:
        ``(variants, errors)``: the trained variants (each with its post-processing results) and
        one message per invalid field, naming it as ``methods[i].level[j].key``.
    """
    from debiasrec.models import MODELS

    errors: list[str] = []
    variants: list[TrainedVariant] = []
    seen: set[str] = set(model_labels)
    for i, m in enumerate(methods):
        where = f"methods[{i}]"
        if not _LABEL_RE.match(m.name):
            errors.append(f"{where}.name: {m.name!r}: use letters, digits, '.', '_', '-' or '='")
        if m.model not in model_labels:
            errors.append(
                f"{where}.model: {m.model!r} is not the label of a [[models]] entry; "
                f"available: {sorted(model_labels)}"
            )
            continue
        model_cls = MODELS[model_labels[m.model].lower()]
        if not (m.pre or m.inproc or m.post):
            errors.append(f"{where}: lists no pre, inproc or post debiasing")
            continue
        n0 = len(errors)
        merged = merge_params((model_params or {}).get(m.model, {}), m.params)
        if m.params:
            try:
                model_cls.Config.model_validate(merged)
            except ValidationError as exc:
                errors.extend(_fmt_pydantic(exc, f"{where}.params"))
        for j, e in enumerate(m.pre):
            _check_pre(e, f"{where}.pre[{j}]", errors)
        for j, e in enumerate(m.inproc):
            _check_inproc(e, f"{where}.inproc[{j}]", errors, model_cls)
        posts: list[tuple[str | None, PostVariant, str]] = []
        for j, e in enumerate(m.post):
            tag = e.get("label") or e.get("method")
            for suffix, pv in _check_post(e, f"{where}.post[{j}]", errors, model_cls):
                posts.append((suffix, pv, str(tag)))
        sweeps = [
            (lvl, j)
            for lvl in ("pre", "inproc")
            for j, e in enumerate(getattr(m, lvl))
            if "sweep" in e
        ]
        if len(sweeps) > 1:
            errors.append(
                f"{where}: at most one sweep in pre/inproc per method; found "
                + ", ".join(f"{lvl}[{j}]" for lvl, j in sweeps)
            )
        if len(errors) > n0:
            continue
        train_values: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
        if sweeps:
            lvl, j = sweeps[0]
            entries = getattr(m, lvl)
            key = "strength" if lvl == "pre" else INPROC_STRATEGIES[entries[j]["strategy"]]
            for v in entries[j]["sweep"]:
                fixed = [dict(e) for e in entries]
                fixed[j] = {k: x for k, x in fixed[j].items() if k != "sweep"} | {key: v}
                pre = fixed if lvl == "pre" else [dict(e) for e in m.pre]
                inproc = fixed if lvl == "inproc" else [dict(e) for e in m.inproc]
                train_values.append((f"{m.name}@{float(v):g}", pre, inproc))
        else:
            train_values.append((m.name, [dict(e) for e in m.pre], [dict(e) for e in m.inproc]))
        trained_only = bool(m.pre or m.inproc)
        several_tags = len({t for _, _, t in posts}) > 1
        for base_label, pre, inproc in train_values:
            post_labels: list[tuple[str, PostVariant]] = []
            for suffix, pv, tag in posts:
                label = base_label
                if several_tags:
                    label += f"+{tag}"
                if suffix is not None:
                    label += f"@{suffix}" if "@" not in label else f"+{pv.method}@{suffix}"
                post_labels.append((label, pv))
            plain = f"{base_label}+none" if posts and trained_only else base_label
            v = TrainedVariant(
                label=plain,
                method=m.name,
                model_label=m.model,
                params=merged,
                pre=[{k: x for k, x in e.items()} for e in pre],
                inproc=[{k: x for k, x in e.items()} for e in inproc],
                post=post_labels,
                report_plain=trained_only,
            )
            for lab in ([plain] if trained_only else []) + [lab for lab, _ in post_labels]:
                if lab in seen:
                    errors.append(f"{where}: result label {lab!r} is used twice (set name/label)")
                seen.add(lab)
            variants.append(v)
    return variants, errors


def strategies_from(entries: list[dict[str, Any]]) -> list[Any]:
    """Build Trainer strategies from validated ``inproc`` entries."""
    from debiasrec.debias.inproc import (
        Adversarial,
        AdversarialConfig,
        FOCFRegularizer,
        UtilityGapPenalty,
    )

    out: list[Any] = []
    for e in entries:
        params = {k: v for k, v in e.items() if k != "strategy"}
        if e["strategy"] == "adversarial":
            out.append(Adversarial(AdversarialConfig(**params)))
        elif e["strategy"] == "focf":
            out.append(FOCFRegularizer(**params))
        elif e["strategy"] == "multitask":
            from debiasrec.debias.inproc.multitask import MultiTask

            out.append(MultiTask(params))
        else:
            out.append(UtilityGapPenalty(**params))
    return out


def referenced_attrs(variants: list[TrainedVariant]) -> set[str]:
    """Sensitive attributes named by strategies and re-rankers (checked before training)."""
    names: set[str] = set()
    for v in variants:
        for e in v.inproc:
            names.update(e.get("attrs", []) or [])
            if "attr" in e:
                names.add(e["attr"])
        for _, pv in v.post:
            if "attr" in pv.params:
                names.add(pv.params["attr"])
            tgt = (pv.self_calibrate or {}).get("target")
            found = re.match(r"^\s*[a-z_]+:([^\s<>=]+)", tgt) if isinstance(tgt, str) else None
            if found:
                names.add(found.group(1))
    return names


__all__ = [
    "INPROC_STRATEGIES",
    "MethodSpec",
    "PathError",
    "PostVariant",
    "TrainedVariant",
    "check_methods",
    "merge_params",
    "referenced_attrs",
    "strategies_from",
]
