"""TOML configuration: load with unknown keys rejected, dump the resolved config beside results."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_args

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    SerializeAsAny,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ErrorType

from debiasrec.errors import ConfigError
from debiasrec.registry import Registry

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


def field_path(loc: tuple[Any, ...]) -> str:
    """``("methods", 2, "post", 0, "strength")`` -> ``methods[2].post[0].strength``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate(model: type[M], data: dict[str, Any], *, source: str = "config") -> M:
    """Validate ``data`` against ``model``; errors name the field path (``models[0].params.dim``).

    Raises:
        ConfigError: one message listing every invalid or unknown field.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines: list[str] = []
        for err in exc.errors():
            loc = field_path(err["loc"])
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
        why: object = exc
        if isinstance(exc, UnicodeDecodeError):
            line = raw.count(b"\n", 0, exc.start) + 1
            why = f"line {line}, byte {exc.start} is not UTF-8"
        raise ConfigError(f"cannot read config file {p}: {why}; save it as UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: TOML syntax error: {exc}") from None
    return validate(model, data, source=str(p))


def dump_data(cfg: BaseModel) -> dict[str, Any]:
    """The resolved config (defaults filled in) as TOML-ready data (None values left out)."""
    data: dict[str, Any] = _drop_none(cfg.model_dump(mode="json"))
    return data


def dump_toml(cfg: BaseModel, path: str | Path) -> None:
    """Write the resolved config (defaults filled in) as TOML; re-loadable with :func:`load_toml`."""
    Path(path).write_text(tomli_w.dumps(dump_data(cfg)), encoding="utf-8")


# ------------------------------------------------------------------------ registered components
_BUILTIN_ERRORS = frozenset(get_args(ErrorType))

def relocate(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[Any]:
    """The errors of ``exc`` with ``prefix`` put before their locations (to re-raise nested)."""
    out = []
    for e in exc.errors(include_url=False):
        loc = (*prefix, *e["loc"])
        if e["type"] not in _BUILTIN_ERRORS:  # a custom error: keep its message
            out.append(error_at(loc, e["msg"], e["input"]))
            continue
        item: dict[str, Any] = {"type": e["type"], "loc": loc, "input": e["input"]}
        if "ctx" in e:
            item["ctx"] = e["ctx"]
        out.append(item)
    return out


def error_at(loc: tuple[str | int, ...], message: str, value: Any = None) -> dict[str, Any]:
    """One validation error with a plain message at ``loc`` (for ``ValidationError`` building)."""
    return {
        "type": PydanticCustomError("invalid", "{message}", {"message": message}),
        "loc": loc,
        "input": value,
    }


def raise_errors(title: str, errors: list[Any]) -> None:
    """Raise one ``ValidationError`` holding ``errors`` (no-op when there are none)."""
    if errors:
        raise ValidationError.from_exception_data(title, errors)


class ComponentEntry(BaseModel):
    """A config entry choosing a registered component by ``kind``, with the component's config.

    Subclasses name the registry (``registry``), the keys the entry itself owns (their fields,
    besides ``kind`` and ``config``), where the component's own keys are (inline beside ``kind``,
    or in a nested table named by ``config_key``) and older names of the ``kind`` key
    (``legacy_kind_keys``). Validation dispatches on ``kind``: an unknown name lists the
    registered ones; the component's ``Config`` validates the rest, and every error carries its
    full field path (``methods.2.inproc.0.strength``). Dumping writes the entry back in the
    same shape, so a resolved config re-loads as is.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    config: SerializeAsAny[BaseModel]

    registry: ClassVar[Registry[Any]]
    legacy_kind_keys: ClassVar[tuple[str, ...]] = ()
    config_key: ClassVar[str | None] = None

    @property
    def component(self) -> Any:
        """The registered class (or object) named by ``kind``."""
        return self.registry.lookup(self.kind)

    @classmethod
    def _own_keys(cls) -> list[str]:
        return [k for k in cls.model_fields if k not in ("kind", "config")]

    @classmethod
    def component_config(cls, component: Any, raw: dict[str, Any], own: dict[str, Any]) -> Any:
        """Validate the component's own keys (a subclass may vary it, e.g. for sweeps)."""
        return component.Config.model_validate(raw)

    def check(self) -> list[Any]:
        """Cross-field errors of a validated entry (locations relative to the entry)."""
        return []

    def dump_config(self, data: dict[str, Any]) -> dict[str, Any]:
        """The component's dumped config as written back (a subclass may drop keys)."""
        return data

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"must be a table with a 'kind' key, got {type(data).__name__}")
        d = dict(data)
        errors: list[Any] = []
        # The component is named by 'kind', or in older configs by a legacy key ('method',
        # 'strategy', 'model'); the other key then belongs to the component's own config (e.g.
        # FOCF's unfairness measure was 'kind', the exposure re-ranker's variant is 'method').
        key = "kind"
        if d.get("kind") not in cls.registry:
            key = next(
                (a for a in cls.legacy_kind_keys if a in d and d[a] in cls.registry),
                "kind"
                if "kind" in d
                else next((a for a in cls.legacy_kind_keys if a in d), "kind"),
            )
        kind = d.pop(key, None)
        if isinstance(kind, str) and kind not in cls.registry and kind.lower() in cls.registry:
            kind = kind.lower()  # registered names are lower-case; 'BPR' means 'bpr'
        names = sorted(cls.registry)
        if not isinstance(kind, str):
            raise_errors(cls.__name__, [error_at((key,), f"required: one of {names}", kind)])
        try:
            component = cls.registry.lookup(str(kind))
        except KeyError:
            raise_errors(
                cls.__name__,
                [
                    error_at(
                        (key,), f"unknown {cls.registry.kind} {kind!r}; available: {names}", kind
                    )
                ],
            )
        own = {k: d.pop(k) for k in cls._own_keys() if k in d}
        own = {k: v for k, v in own.items() if v is not None}  # None = not given (a dump)
        if cls.config_key is not None:
            raw = d.pop(cls.config_key, {}) or {}
            errors += [{"type": "extra_forbidden", "loc": (k,), "input": v} for k, v in d.items()]
            where: tuple[str | int, ...] = (cls.config_key,)
            if not isinstance(raw, Mapping):
                errors.append(error_at(where, "must be a table", raw))
                raw = {}
        else:
            raw, where = d, ()
        config = None
        try:
            config = cls.component_config(component, dict(raw), own)
        except ValidationError as exc:
            errors += relocate(exc, where)
        except (ValueError, ConfigError) as exc:
            errors.append(error_at(where or ("kind",), str(exc)))
        entry = None
        try:
            placeholder = component.Config.model_construct()
            entry = handler({"kind": kind, **own, "config": config or placeholder})
        except ValidationError as exc:
            errors += relocate(exc, ())
        if entry is not None and config is not None and not errors:
            errors += entry.check()
        raise_errors(cls.__name__, errors)
        return entry

    @model_serializer(mode="wrap")
    def _serialise(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        cfg = self.dump_config(dict(data.pop("config") or {}))
        kind = data.pop("kind")
        if self.config_key is not None:
            return {"kind": kind, **data, self.config_key: cfg}
        return {"kind": kind, **cfg, **data}
