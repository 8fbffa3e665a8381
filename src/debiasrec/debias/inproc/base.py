"""In-processing debiasing: strategies for the one Trainer, with typed configs and a registry.

An :class:`InprocStrategy` is a :class:`~debiasrec.training.trainer.Strategy` (hooks into the one
training loop) with a pydantic ``Config`` and the capabilities it needs from a model
(:meth:`InprocStrategy.requires`, protocols of :mod:`debiasrec.models.capabilities`). Every
strategy registers itself in :data:`STRATEGIES` where it is defined (``@STRATEGIES.register``);
an experiment's ``inproc = [{ kind = NAME, ... }]`` entries name them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from debiasrec.config import build_config
from debiasrec.errors import ConfigError
from debiasrec.models.capabilities import (
    CAPABILITIES,
    TrainedByTrainer,
    declares,
    missing_capabilities,
)
from debiasrec.registry import Registry
from debiasrec.training.trainer import Strategy


class StrategyConfig(BaseModel):
    """Base of every strategy's config (unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid")


S = TypeVar("S", bound=StrategyConfig)


class InprocStrategy(Strategy, Generic[S]):
    """A configurable, registered in-processing strategy.

    Class attributes a subclass sets: ``name``, ``Config`` and, when one number of the config is
    its strength, ``sweep_key`` (what ``sweep = [...]`` varies in an experiment).
    """

    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    sweep_key: ClassVar[str | None] = None
    config: S

    def __init__(self, config: S | dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.config = cast(S, build_config(self.Config, config, kwargs, what=f"{self.name!r}"))

    @classmethod
    def requires(cls, config: StrategyConfig) -> tuple[type, ...]:
        """Capabilities a model needs for this strategy with ``config`` (checked before training).

        Every strategy needs a model trained by the one Trainer (:class:`TrainedByTrainer`).
        """
        return (TrainedByTrainer,)

    @classmethod
    def experiment_errors(cls, config: StrategyConfig) -> list[str]:
        """Why ``config`` cannot be used from an experiment config (e.g. it needs data only
        Python can pass); empty when it can."""
        return []

    def check_model(self, model: object) -> None:
        """Raise :class:`ConfigError` when ``model`` lacks a capability this strategy requires.

        The experiment config rejects such pairings before training; this guards direct use.
        """
        cls = type(model)
        caps_of = getattr(cls, "capabilities", None)
        provided = (
            caps_of(getattr(model, "config", None))
            if callable(caps_of)
            else {c for c in CAPABILITIES.values() if declares(cls, c)}
        )
        missing = missing_capabilities(provided, self.requires(self.config))
        if missing:
            raise ConfigError(
                f"strategy {self.name!r} needs a model with {', '.join(missing)}; "
                f"{cls.__name__} does not declare {'it' if len(missing) == 1 else 'them'} "
                "(see debiasrec.models.capabilities)"
            )


#: Every in-processing strategy by name (see :mod:`debiasrec.registry`).
STRATEGIES: Registry[type[InprocStrategy[Any]]] = Registry(
    "in-processing strategy", "debiasrec.strategies"
)

__all__ = ["STRATEGIES", "InprocStrategy", "StrategyConfig"]
