"""One registry of estimator names, keyed by kind (``router``, ``scorer``).

Reading a kind's module list tells you every built-in estimator of that kind; a plug-in package adds
one without editing any list, through an entry point in the kind's group, e.g. in its pyproject.toml::

    [project.entry-points."sizewise.routers"]
    my-router = "my_package.routers"          # a module whose classes use @register

Built-in modules and entry points load on the first lookup, so ``import sizewise`` stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from sizewise.errors import ConfigError, UnknownNameError
from sizewise.learn.persist import read_bundle

if TYPE_CHECKING:
    from sizewise.learn.estimator import Estimator

E = TypeVar("E", bound="Estimator")

_REGISTRIES: dict[str, Registry[Any]] = {}


class Registry(Generic[E]):
    """The estimators of one ``kind``: built-in ``modules`` plus entry-point ``group`` plug-ins."""

    def __init__(self, kind: str, modules: Sequence[str], group: str) -> None:
        if kind in _REGISTRIES:
            raise ValueError(f"a registry of kind {kind!r} exists already")
        self.kind, self.modules, self.group = kind, tuple(modules), group
        self.classes: dict[str, type[E]] = {}
        self._loaded = False
        _REGISTRIES[kind] = self

    def register(self, cls: type[E]) -> type[E]:
        """Make ``cls`` available by its ``name`` (a :class:`ValueError` if another class has it)."""
        known = self.classes.get(cls.name)
        if known is not None and known is not cls:
            raise ValueError(f"{self.kind} name {cls.name!r} registered twice ({known.__module__}, {cls.__module__})")
        self.classes[cls.name] = cls
        return cls

    def _load(self) -> None:
        if self._loaded:
            return
        for module in self.modules:
            importlib.import_module(module)
        self._loaded = True  # before the plug-ins, whose modules may look names up while importing
        from importlib.metadata import entry_points

        for point in entry_points(group=self.group):
            try:
                found = point.load()
            except Exception as error:  # a plug-in's own bug: name it, whatever it raised (and again next time)
                self._loaded = False
                raise ConfigError(
                    f"{self.kind} plug-in {point.name!r} ({point.value}) does not load: {error}"
                ) from None
            if inspect.isclass(found) and getattr(found, "estimator_kind", None) == self.kind:
                self.register(cast("type[E]", found))  # an entry point may name the class instead of its module

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load()
        return sorted(self.classes)

    def get(self, name: str) -> type[E]:
        """The class registered as ``name``; an :class:`UnknownNameError` listing the known ones."""
        self._load()
        if name not in self.classes:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self.classes))}")
        return self.classes[name]

    def make(self, name: str, **params: Any) -> E:
        """A new, unfitted estimator by name; a :class:`ConfigError` for a parameter it does not take."""
        cls = self.get(name)
        accepted = cls.param_names()
        unknown = [p for p in params if p not in accepted]
        if unknown:
            options = ", ".join(accepted) or "none"
            raise ConfigError(f"{self.kind} {name!r}: bad parameter {unknown[0]!r}; it takes: {options}")
        return cls(**params)

    def load(self, path: str | Path) -> E:
        """Load any saved estimator of this kind; the file says which class it is."""
        bundle = read_bundle(path, self.kind)  # read once: the file says which class it is
        return self.get(bundle.name).from_bundle(bundle, path)


def get_registry(kind: str) -> Registry[Any]:
    """The registry of ``kind``, created by the module that defines the kind's base class
    (:mod:`sizewise.routers.base`, :mod:`sizewise.cascade.scorers.base`)."""
    if kind not in _REGISTRIES:
        raise UnknownNameError(f"unknown estimator kind {kind!r}; known: {', '.join(sorted(_REGISTRIES))}")
    return _REGISTRIES[kind]


def kinds() -> list[str]:
    """Every estimator kind whose base module has been imported."""
    return sorted(_REGISTRIES)


def register(cls: type[E]) -> type[E]:
    """Class decorator: register ``cls`` under its ``name`` in the registry of its ``estimator_kind``."""
    return get_registry(cls.estimator_kind).register(cls)
