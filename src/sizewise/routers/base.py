"""The router contract and the registry of router names.

A router reads prompts (never answers) and says how much each needs the strong
model. Two-model routers implement ``score``; N-model routers also implement
``predict_quality`` (one predicted quality per catalog model). Every router is a
:class:`sizewise.learn.Estimator` (scikit-learn's contract: parameters in ``__init__``, stored as
given and nothing else; learning in ``fit``, which returns self; learned state ends in ``_``;
``save``/``load`` through one safe file that records the router's embedding).

Adding a router: one module with a class that subclasses :class:`Router` and is decorated with
``@register``, plus its module name in ``ROUTER_MODULES`` (or, from another package, an entry point
in the ``sizewise.routers`` group).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from sizewise.errors import RouterFileError
from sizewise.learn.estimator import Estimator
from sizewise.learn.persist import read_header
from sizewise.learn.registry import Registry

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path

# Modules that define routers; imported on first registry lookup so `import sizewise` stays cheap.
ROUTER_MODULES = [
    "sizewise.routers.baselines",
    "sizewise.routers.tfidf",
    "sizewise.routers.knn",
    "sizewise.routers.embed_models",
    "sizewise.routers.mf",
    "sizewise.routers.gbdt",
    "sizewise.routers.ensemble",
    "sizewise.routers.retrained",
]
#: Entry-point group through which other packages add routers.
ENTRY_POINT_GROUP = "sizewise.routers"

ROUTERS: Registry[Router] = Registry("router", ROUTER_MODULES, ENTRY_POINT_GROUP)
_REGISTRY = ROUTERS.classes  # the name -> class dict (bench scripts read it)


def register(cls: type[Router]) -> type[Router]:
    """Class decorator: make a router available by its ``name``."""
    return ROUTERS.register(cls)


def router_names() -> list[str]:
    """Every registered router name."""
    return ROUTERS.names()


def router_class(name: str) -> type[Router]:
    """The router class registered as ``name``."""
    return ROUTERS.get(name)


def make_router(name: str, **params: Any) -> Router:
    """A new, unfitted router by registry name."""
    return ROUTERS.make(name, **params)


def load_router(path: str | Path) -> Router:
    """Load any saved router; the file says which class it is."""
    return ROUTERS.load(path)


def calibration_threshold(provenance: dict[str, Any]) -> float | None:
    """The default threshold of a file's recorded calibration, None when it records none.

    The calibration is ``{"default": KEY, "targets": {KEY: {"threshold": NUMBER, ...}, ...}}`` (what
    :func:`sizewise.routers.calibration.calibrate` reports per target); anything else is a ``ValueError``.
    """
    calibration = provenance.get("calibration")
    if calibration is None:
        return None
    targets = calibration.get("targets") if isinstance(calibration, dict) else None
    default = calibration.get("default") if isinstance(calibration, dict) else None
    if not isinstance(targets, dict) or not isinstance(default, str) or not isinstance(targets.get(default), dict):
        raise ValueError("its calibration needs a 'default' naming one of its 'targets'")
    for key, target in targets.items():
        value = target.get("threshold") if isinstance(target, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"its calibration target {key!r} has no finite threshold")
    return float(targets[default]["threshold"])


def calibrated_threshold(path: str | Path) -> float | None:
    """The default threshold recorded in a router file (None when it records no calibration), read
    without loading the router; a :class:`RouterFileError` for an unreadable file or calibration."""
    try:
        return calibration_threshold(read_header(path, ROUTERS.kind).get("provenance") or {})
    except ValueError as error:
        raise RouterFileError(f"{path}: {error}") from None


class Router(Estimator):
    """Base class. Subclasses set ``name`` and implement ``fit``, ``score`` and the state hooks."""

    estimator_kind: ClassVar[str] = "router"
    #: Set by ``fit`` and ``load`` (scikit-learn's trailing underscore: learned, not a parameter).
    fitted_: bool

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

    @property
    def threshold_(self) -> float | None:
        """The default threshold calibrated for this router, as its file records it (None if it records none)."""
        return calibration_threshold(getattr(self, "provenance_", {}))

    # -- provenance: a router on embeddings records which ones, a calibrated one its thresholds ----------
    def _provenance(self) -> dict[str, Any]:
        from sizewise.embedding import embed_id

        embedding = self.get_params().get("embedding")
        return {"embedding": {"name": embedding, "id": embed_id(embedding)}} if embedding is not None else {}

    def _check_provenance(self, provenance: dict[str, Any]) -> None:
        """A file recording another embedding than the one installed would be fed garbage: refuse it.
        A calibration that cannot be read is refused too, rather than routing on a made-up threshold."""
        from sizewise.embedding import embed_id

        calibration_threshold(provenance)
        recorded = provenance.get("embedding")
        if recorded is None:
            return  # written before files recorded it: nothing to compare
        if not isinstance(recorded, dict) or not isinstance(recorded.get("id"), str):
            raise ValueError(f"its provenance names no embedding id ({recorded!r})")
        if recorded.get("name") != self.get_params().get("embedding"):
            raise ValueError(f"its provenance names embedding {recorded.get('name')!r}, its parameters another")
        installed = embed_id(recorded.get("name"))
        if recorded["id"] != installed:
            raise ValueError(
                f"trained on embedding {recorded['id']}, but the installed one is {installed}: "
                "retrain it with `sizewise train` (the shipped default: `sizewise train --default-router`) "
                "or install the embedding it was trained on"
            )


Factory = Callable[..., Router]
