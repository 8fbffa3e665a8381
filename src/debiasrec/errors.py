"""Error hierarchy. Every message says what was wrong, where, and what to do."""

from __future__ import annotations


class DebiasrecError(Exception):
    """Base class of every error debiasrec raises on purpose."""


class DataError(DebiasrecError, ValueError):
    """Input data is malformed or inconsistent (names the file, row or field)."""


class ConfigError(DebiasrecError, ValueError):
    """A configuration value is invalid, unknown or impossible."""


class NotFittedError(DebiasrecError, RuntimeError):
    """A model was used before ``fit`` was called."""


class MissingDependencyError(DebiasrecError, ImportError):
    """An optional dependency is needed; the message says which extra to install."""


def require(module: str, extra: str):
    """Import an optional dependency or raise :class:`MissingDependencyError`.

    Args:
        module: importable module name, e.g. ``"transformers"``.
        extra: the debiasrec extra that provides it, e.g. ``"lm"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise MissingDependencyError(
            f"{module!r} is not installed; install it with: pip install 'debiasrec[{extra}]'"
        ) from exc
