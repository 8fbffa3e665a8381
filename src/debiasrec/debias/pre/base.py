"""Pre-processing debiasing: ``Dataset -> Dataset`` transforms applied to the training split only.

A transform never sees the validation or test split: it returns a new training :class:`Dataset`
(possibly with extra interactions, extra synthetic users or per-interaction weights), and what it
did is described in ``report_`` (JSON-serialisable: counts, fidelity numbers, timings).

Every transform registers itself in :data:`TRANSFORMS` where it is defined
(``@TRANSFORMS.register``); see :mod:`debiasrec.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np
from pydantic import BaseModel, ConfigDict

from debiasrec.config import build_config
from debiasrec.data.dataset import Dataset
from debiasrec.registry import Registry


class PreConfig(BaseModel):
    """Base of every transform's config (unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid")


P = TypeVar("P", bound=PreConfig)


class PreTransform(ABC, Generic[P]):
    """A pre-processing transform; subclasses set ``name`` and ``Config``.

    Class attributes a subclass may set:
        sweep_key: the numeric config field that ``sweep = [...]`` varies in an experiment
            (None: the transform cannot be swept).
        sets_weights: the output carries per-interaction weights (only models declaring
            :class:`~debiasrec.models.capabilities.WeightedTraining` can use it).
    """

    name: ClassVar[str]
    Config: ClassVar[type[PreConfig]] = PreConfig
    sweep_key: ClassVar[str | None] = None
    sets_weights: ClassVar[bool] = False
    config: P

    def __init__(self, config: P | dict[str, Any] | None = None, **params: Any) -> None:
        """Validate the config (a config object, a dict, or keyword arguments).

        Raises:
            ConfigError: an unknown or invalid field; the message names it.
        """
        self.config = cast(
            P, build_config(self.Config, config, params, what=f"pre-processing {self.name!r}")
        )
        self.report_: dict[str, Any] = {}

    @abstractmethod
    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        """Return the transformed training dataset and fill ``report_``."""


#: Every transform by name (see :mod:`debiasrec.registry`).
TRANSFORMS: Registry[type[PreTransform[Any]]] = Registry(
    "pre-processing transform", "debiasrec.transforms"
)
#: Former name of :data:`TRANSFORMS`.
PRE_METHODS = TRANSFORMS
#: Class decorator adding a transform to :data:`TRANSFORMS` under ``cls.name``.
register = TRANSFORMS.register
