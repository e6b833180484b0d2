"""The router contract and the registry of router names.

A router reads prompts (never answers) and says how much each needs the strong
model. Two-model routers implement ``score``; N-model routers also implement
``predict_quality`` (one predicted quality per catalog model). Every router follows
scikit-learn's contract: parameters in ``__init__`` (stored as given, nothing else),
learning in ``fit`` (returns self, learned state ends in ``_``), and ``save``/``load``
through :mod:`sizewise.routers.persist`.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from sizewise.errors import ConfigError, NotFittedError, RouterFileError, UnknownNameError
from sizewise.evaluation.table import OutcomeTable
from sizewise.routers.persist import load_bundle, save_bundle

_REGISTRY: dict[str, type[Router]] = {}

# Modules that define routers; imported on first registry lookup so `import sizewise` stays cheap.
ROUTER_MODULES = [
    "sizewise.routers.baselines",
    "sizewise.routers.tfidf",
    "sizewise.routers.knn",
    "sizewise.routers.embed_models",
    "sizewise.routers.mf",
    "sizewise.routers.gbdt",
    "sizewise.routers.ensemble",
]


def register(cls: type[Router]) -> type[Router]:
    """Class decorator: make a router available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"router name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_modules() -> None:
    for module in ROUTER_MODULES:
        importlib.import_module(module)


def router_names() -> list[str]:
    """Every registered router name."""
    _load_modules()
    return sorted(_REGISTRY)


def router_class(name: str) -> type[Router]:
    """The router class registered as ``name``."""
    _load_modules()
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown router {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def make_router(name: str, **params: Any) -> Router:
    """A new, unfitted router by registry name."""
    cls = router_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [p for p in params if p not in accepted]
    if unknown:
        options = ", ".join(accepted) or "none"
        raise ConfigError(f"router {name!r}: bad parameter {unknown[0]!r}; it takes: {options}")
    return cls(**params)


def load_router(path: str | Path) -> Router:
    """Load any saved router; the file says which class it is."""
    name, _, _ = load_bundle(path, "router")
    return router_class(name).load(path)


class Router(ABC):
    """Base class. Subclasses set ``name`` and implement ``fit``, ``score`` and the state hooks."""

    name: ClassVar[str]
    #: True when the router ignores prompts (baselines); evaluation may special-case them.
    needs_text: ClassVar[bool] = True
    #: Set by ``fit`` and ``load`` (scikit-learn's trailing underscore: learned, not a parameter).
    fitted_: bool

    # -- scikit-learn style parameters --------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, read back from attributes of the same name."""
        signature = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in signature.parameters if p != "self"}

    def clone(self) -> Self:
        """A new unfitted router with the same parameters."""
        return type(self)(**self.get_params())

    def _check_params(self) -> None:  # noqa: B027
        """Raise a :class:`ConfigError` naming an invalid parameter; ``fit`` and ``load`` call it. Default: none."""

    # -- learning and prediction -----------------------------------------------
    @abstractmethod
    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        """Learn from an outcome table; ``weak``/``strong`` default to ``table.weak_strong()``."""

    @abstractmethod
    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """How much each prompt needs the strong model: higher means more. Shape ``(len(prompts),)``."""

    def score_table(self, table: OutcomeTable) -> np.ndarray:
        """Scores for a table's prompts. Baselines that look at outcomes (oracle) override this."""
        return self.score(table.texts)

    def predict(self, prompts: Sequence[str], threshold: float) -> np.ndarray:
        """True where the prompt goes to the strong model (score >= threshold)."""
        return self.score(prompts) >= threshold

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless ``fit`` ran."""
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"router {self.name!r} is not fitted: call fit() or load() first")

    # -- persistence -------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What ``save`` writes: JSON-able meta and numpy arrays. Default: parameters only."""
        return {}, {}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Restore what ``_state`` returned (default: nothing, as ``_state`` saves nothing)."""

    def save(self, path: str | Path) -> Path:
        """Write the fitted router to ``path`` (a zip of JSON + npz, no pickle)."""
        self.check_fitted()
        meta, arrays = self._state()
        return save_bundle(path, "router", self.name, {"params": self.get_params(), "state": meta}, arrays)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a router written by ``save``; refuses a file of another router or a corrupt one."""
        _, meta, arrays = load_bundle(path, "router", cls.name)
        try:
            router = cls(**meta.get("params", {}))
            router._check_params()
            router._set_state(meta.get("state", {}), arrays)
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise RouterFileError(f"{path}: {cls.name} file does not match this version ({error})") from None
        router.fitted_ = True
        return router


Factory = Callable[..., Router]
