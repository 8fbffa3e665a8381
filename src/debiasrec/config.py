"""TOML configuration: load with unknown keys rejected, dump the resolved config beside results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

import tomli_w
from pydantic import BaseModel, ValidationError

from debiasrec.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

M = TypeVar("M", bound=BaseModel)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def validate(model: type[M], data: dict[str, Any], *, source: str = "config") -> M:
    """Validate ``data`` against ``model``; errors name the field path (``models.0.params.dim``).

    Raises:
        ConfigError: one message listing every invalid or unknown field.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling)"
            if getattr(err.get("ctx", {}).get("error"), "names_fields", False):
                # The message already names each field path, one per line.
                lines.extend(f"  {line}" for line in msg.splitlines())
                continue
            lines.append(f"  {loc}: {msg}")
        raise ConfigError(f"invalid {source}:\n" + "\n".join(lines)) from None


def build_config(
    model: type[M], config: M | dict[str, Any] | None, kwargs: dict[str, Any], *, what: str
) -> M:
    """A typed config from a config object, a dict, or keyword arguments (not a mix).

    Used by every configurable component's constructor, so a typo fails at construction.

    Raises:
        ConfigError: invalid or unknown fields (``what`` names the component), or both a config
            object and keyword arguments given.
    """
    if isinstance(config, dict):
        kwargs = {**config, **kwargs}
        config = None
    if config is None:
        try:
            return model(**kwargs)
        except ValidationError as exc:
            raise ConfigError(f"invalid config for {what}: {exc}") from exc
    if kwargs:
        raise ConfigError("pass either a config object or keyword arguments, not both")
    return config


def load_toml(path: str | Path, model: type[M]) -> M:
    """Read a TOML file into ``model``.

    Raises:
        ConfigError: missing file, TOML syntax error (with line), or invalid fields.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        raw = p.read_bytes()
        if b"\x00" in raw:  # UTF-16/32 text or a binary file
            raise ConfigError(
                f"{p} is not a UTF-8 text file (it holds NUL bytes); save it as UTF-8"
            )
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        why = exc
        if isinstance(exc, UnicodeDecodeError):
            line = raw.count(b"\n", 0, exc.start) + 1
            why = f"line {line}, byte {exc.start} is not UTF-8"
        raise ConfigError(f"cannot read config file {p}: {why}; save it as UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: TOML syntax error: {exc}") from None
    return validate(model, data, source=str(p))


def dump_toml(cfg: BaseModel, path: str | Path) -> None:
    """Write the resolved config (defaults filled in) as TOML; re-loadable with :func:`load_toml`."""
    data = _drop_none(cfg.model_dump(mode="json"))
    Path(path).write_text(tomli_w.dumps(data), encoding="utf-8")
