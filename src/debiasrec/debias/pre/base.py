"""Pre-processing debiasing: ``Dataset -> Dataset`` transforms applied to the training split only.

A transform never sees the validation or test split: it returns a new training :class:`Dataset`
(possibly with extra interactions, extra synthetic users or per-interaction weights), and what it
did is described in ``report_`` (JSON-serialisable: counts, fidelity numbers, timings).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError


class PreConfig(BaseModel):
    """Base of every transform's config (unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid")


class PreTransform(ABC):
    """A pre-processing transform; subclasses set ``name`` and ``Config``."""

    name: ClassVar[str]
    Config: ClassVar[type[PreConfig]] = PreConfig

    def __init__(self, config: PreConfig | dict[str, Any] | None = None, **params: Any) -> None:
        """Validate the config (a config object, a dict and/or keyword overrides).

        Raises:
            ConfigError: an unknown or invalid field; the message names it.
        """
        base = config.model_dump() if isinstance(config, PreConfig) else dict(config or {})
        try:
            self.config = self.Config.model_validate({**base, **params})
        except ValidationError as exc:
            raise ConfigError(f"invalid config for pre-processing {self.name!r}: {exc}") from None
        self.report_: dict[str, Any] = {}

    @abstractmethod
    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        """Return the transformed training dataset and fill ``report_``."""


#: Registry of transforms by name; filled by the modules of this package.
PRE_METHODS: dict[str, type[PreTransform]] = {}


def register(cls: type[PreTransform]) -> type[PreTransform]:
    """Class decorator adding a transform to :data:`PRE_METHODS` under ``cls.name``."""
    PRE_METHODS[cls.name] = cls
    return cls
