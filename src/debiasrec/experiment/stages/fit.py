"""Fit stage: the method's pre-processing transforms (each cached), then training (cached).

Components are built from their validated configs through the registries: transforms from
:data:`~debiasrec.debias.pre.TRANSFORMS`, strategies from
:data:`~debiasrec.debias.inproc.STRATEGIES`, models from :data:`~debiasrec.models.MODELS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from debiasrec.data.dataset import Dataset
from debiasrec.data.split import Split
from debiasrec.debias.inproc.base import STRATEGIES, InprocStrategy
from debiasrec.debias.pre.base import TRANSFORMS
from debiasrec.errors import ConfigError, DataError
from debiasrec.experiment.cache import StageCache, stage_key
from debiasrec.experiment.jsonutil import json_default
from debiasrec.models.base import MODELS, Recommender

Components = list[tuple[str, BaseModel]]


def components_payload(items: Components) -> list[dict[str, Any]]:
    """What a list of ``(kind, config)`` contributes to a cache key (and summary.json)."""
    return [{"kind": kind, **cfg.model_dump(mode="json")} for kind, cfg in items]


def pre_chain(
    sc: StageCache, split: Split, split_key: str, pre: Components, seed: int, label: str
) -> tuple[Dataset, str, list[dict[str, Any]]]:
    """The training split after the ``pre`` transforms (each step cached); its key; reports."""
    train, key = split.train, split_key
    reports: list[dict[str, Any]] = []
    for j, (kind, cfg) in enumerate(pre):
        key = stage_key(
            "pre", {"data": key, "kind": kind, "config": cfg.model_dump(mode="json"), "seed": seed}
        )
        transform = TRANSFORMS.lookup(kind)(cfg)
        source = train

        def compute(transform: Any = transform, source: Dataset = source) -> Any:
            out = transform.apply(source, rng=seed)
            if out.n_items != split.train.n_items or out.n_users < split.train.n_users:
                raise ConfigError(
                    f"pre-processing {transform.name!r} changed the item catalog or dropped "
                    "users; transforms must keep every item and user code"
                )
            return out, transform.report_

        def save(value: Any, folder: Path) -> bool:
            try:
                value[0].save(folder / "data")
            except DataError:  # a table Parquet cannot hold: run on, uncached
                return False
            (folder / "report.json").write_text(json.dumps(value[1], default=json_default))
            return True

        def load(folder: Path) -> Any:
            return Dataset.load(folder / "data"), json.loads((folder / "report.json").read_text())

        train, rep = sc.get_or_compute("pre", f"{label} pre[{j}]", key, compute, save, load)
        reports.append({"kind": kind, **(rep if isinstance(rep, dict) else {})})
    return train, key, reports


def build_strategies(inproc: Components) -> list[InprocStrategy[Any]]:
    """Trainer strategies from validated ``(kind, config)`` entries."""
    return [STRATEGIES.lookup(kind)(cfg) for kind, cfg in inproc]


def fit_key(pre_key: str, kind: str, params: BaseModel, inproc: Components, seed: int) -> str:
    """Stage key of a training run."""
    return stage_key(
        "fit",
        {
            "data": pre_key,
            "model": kind,
            "params": params.model_dump(mode="json"),
            "inproc": components_payload(inproc),
            "seed": seed,
        },
    )


def fit_stage(
    sc: StageCache,
    key: str,
    kind: str,
    params: BaseModel,
    inproc: Components,
    train: Dataset,
    valid: Dataset,
    seed: int,
    progress: bool,
    label: str,
) -> tuple[Recommender[Any], dict[str, Any] | None]:
    """Train (or load from the cache) the model ``kind`` with ``params`` and ``inproc``."""
    cls = MODELS.lookup(kind)

    def compute() -> tuple[Recommender[Any], dict[str, Any] | None]:
        config = params
        train_cfg = getattr(config, "train", None)
        if progress and train_cfg is not None:
            config = config.model_copy(
                update={"train": train_cfg.model_copy(update={"progress": True})}
            )
        model = cls(config, strategies=build_strategies(inproc)) if inproc else cls(config)
        model.fit(train, valid=valid, rng=seed)
        history = getattr(model, "history_", None)
        return model, None if history is None else history.to_dict()

    def save(value: tuple[Recommender[Any], dict[str, Any] | None], folder: Path) -> bool:
        try:
            value[0].save(folder / "model")
        except NotImplementedError:
            return False
        (folder / "history.json").write_text(json.dumps(value[1], default=json_default))
        return True

    def load(folder: Path) -> tuple[Recommender[Any], dict[str, Any] | None]:
        model = cls.load(folder / "model")
        return model, json.loads((folder / "history.json").read_text())

    model, hist = sc.get_or_compute("fit", label, key, compute, save, load)
    return model, hist


__all__ = ["build_strategies", "components_payload", "fit_key", "fit_stage", "pre_chain"]
