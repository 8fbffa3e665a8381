"""debiasrec: train recommender systems, measure their bias, and remove it."""

from __future__ import annotations

__version__ = "0.1.0"

from debiasrec.errors import (
    ConfigError,
    DataError,
    DebiasrecError,
    MissingDependencyError,
    NotFittedError,
)

__all__ = [
    "ConfigError",
    "DataError",
    "DebiasrecError",
    "MissingDependencyError",
    "NotFittedError",
    "__version__",
]
