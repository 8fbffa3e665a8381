"""One registry mechanism for every pluggable component.

Models, pre-processing transforms, in-processing strategies, re-rankers and metrics each have a
:class:`Registry`, defined in the module of their base class (``debiasrec.models.base.MODELS``,
``debiasrec.debias.pre.base.TRANSFORMS``, ``debiasrec.debias.inproc.base.STRATEGIES``,
``debiasrec.debias.post.base.RERANKERS``, ``debiasrec.metrics.registry.METRICS``). A component
registers itself where it is defined::

    @MODELS.register
    class MyModel(Recommender[MyConfig]):
        name = "my_model"
        Config = MyConfig

and is then usable by name everywhere: in experiment configs (``kind = "my_model"``), the CLI and
Python. Third-party packages add components without touching debiasrec through entry points
(the same mechanism LensKit and pytest use for plugins)::

    # pyproject.toml of a plugin package
    [project.entry-points."debiasrec.models"]
    my_model = "my_package.my_model"     # importing the module registers the component

Entry points are loaded the first time a registry is looked up or listed.
"""

from __future__ import annotations

import re
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

from debiasrec.errors import ConfigError

T = TypeVar("T")

#: Names of registered components: lower-case letters, digits and ``_`` (a safe path component).
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class UnknownComponentError(ConfigError, KeyError):
    """A name that no component of the registry carries (the message lists the available ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, T], Generic[T]):
    """Components of one kind by name; a read-only mapping once filled.

    Args:
        kind: what the components are, for messages (``"model"``, ``"re-ranker"``).
        group: the entry-point group third-party packages register under
            (``"debiasrec.models"``).
        name_of: how to read a component's name (default: its ``name`` attribute).
    """

    def __init__(self, kind: str, group: str, *, name_of: Callable[[T], str] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._name_of: Callable[[T], Any] = name_of or (lambda obj: getattr(obj, "name", None))
        self._items: dict[str, T] = {}
        self._plugins_loaded = False

    # ------------------------------------------------------------------ registration
    @overload
    def register(self, obj: T, *, replace: bool = ...) -> T: ...

    @overload
    def register(self, obj: None = ..., *, replace: bool = ...) -> Callable[[T], T]: ...

    def register(self, obj: T | None = None, *, replace: bool = False) -> Any:
        """Add ``obj`` under its name; usable as a decorator (``@REGISTRY.register``).

        Raises:
            ConfigError: a missing or unsafe name, or a name already taken by another component
                (unless ``replace=True``).
        """

        def add(item: T) -> T:
            name = self._name_of(item)
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise ConfigError(
                    f"{self.kind} {item!r} needs a name of lower-case letters, digits and '_' "
                    f"(starting with a letter), got {name!r}"
                )
            old = self._items.get(name)
            if old is not None and old is not item and not replace:
                raise ConfigError(
                    f"{self.kind} name {name!r} is already registered by {old!r}; choose another "
                    "name or pass replace=True"
                )
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plugin reloads); unknown names are ignored."""
        self._items.pop(name, None)

    # ------------------------------------------------------------------ lookup
    def get(self, name: str, default: Any = None) -> Any:
        """The component registered as ``name``, or ``default``."""
        self._load_plugins()
        return self._items.get(name, default)

    def lookup(self, name: str) -> T:
        """The component registered as ``name``.

        Raises:
            UnknownComponentError: no such name; the message lists the registered ones.
        """
        self._load_plugins()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; available: {sorted(self._items) or 'none'}"
            ) from None

    def __getitem__(self, name: str) -> T:
        return self.lookup(name)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._items))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._items)

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"

    # ------------------------------------------------------------------ plugins
    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the library
                warnings.warn(
                    f"could not load {self.kind} plugin {ep.name!r} ({ep.value}): {exc}",
                    stacklevel=3,
                )
                continue
            name = None if isinstance(obj, types.ModuleType) else self._name_of(obj)
            if isinstance(name, str) and name not in self._items:
                self.register(obj)


__all__ = ["NAME_RE", "Registry", "UnknownComponentError"]
