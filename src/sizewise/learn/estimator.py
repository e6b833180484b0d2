"""The one contract of everything learned (routers, scorers): scikit-learn's estimator rules.

* ``__init__`` stores its parameters as attributes of the same name and nothing else;
* ``fit`` learns and returns ``self``; learned state ends in ``_`` (``fitted_``, ``coef_``);
* ``get_params``/``set_params``/``clone`` read and copy the parameters;
* ``save``/``load`` write one safe file (:mod:`sizewise.learn.persist`: JSON + npz, no pickle) that
  records the estimator's provenance: what it was built on (its embedding's id) and, where given,
  its calibration. ``load`` refuses a file whose provenance does not match this installation.

Subclasses set ``estimator_kind`` (the registry they belong to) and ``name``, and implement the state hooks.
"""

from __future__ import annotations

import inspect
from abc import ABC
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from sizewise.errors import ConfigError, NotFittedError, RouterFileError
from sizewise.learn.persist import Bundle, read_bundle, save_bundle


class Estimator(ABC):
    """Base of routers and scorers: parameters, fitted check, persistence with provenance."""

    #: The registry this estimator belongs to (``"router"``, ``"scorer"``); also the file's kind. Not
    #: ``kind``: that is a parameter of some estimators (``consistency``'s).
    estimator_kind: ClassVar[str]
    name: ClassVar[str]
    #: False for estimators usable without ``fit`` (some scorers).
    needs_fit: ClassVar[bool] = True
    #: Set by ``fit`` and ``load`` (scikit-learn's trailing underscore: learned, not a parameter).
    fitted_: bool
    #: Set by ``load``: the provenance recorded in the file (empty for files written before it existed).
    provenance_: dict[str, Any]

    # -- parameters ----------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's parameter names, in order."""
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, read back from attributes of the same name."""
        return {p: getattr(self, p) for p in self.param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change parameters (checked by the next ``fit``); a :class:`ConfigError` for one it does not take."""
        accepted = self.param_names()
        for key in params:
            if key not in accepted:
                options = ", ".join(accepted) or "none"
                raise ConfigError(f"{self.estimator_kind} {self.name!r}: bad parameter {key!r}; it takes: {options}")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def clone(self) -> Self:
        """A new unfitted estimator with the same parameters."""
        return type(self)(**self.get_params())

    def _check_params(self) -> None:  # noqa: B027 - an optional hook
        """Raise a :class:`ConfigError` naming an invalid parameter; ``fit`` and ``load`` call it. Default: none."""

    # -- fitted state ----------------------------------------------------------------
    def is_fitted(self) -> bool:
        """True once ``fit`` or ``load`` ran."""
        return bool(getattr(self, "fitted_", False))

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless ``fit`` ran (or the estimator needs none)."""
        if self.needs_fit and not self.is_fitted():
            raise NotFittedError(f"{self.estimator_kind} {self.name!r} is not fitted: call fit() or load() first")

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What ``save`` writes besides the parameters: JSON-able meta and numpy arrays. Default: nothing."""
        return {}, {}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Restore what ``_state`` returned (default: nothing, as ``_state`` saves nothing)."""

    # -- provenance ------------------------------------------------------------------
    def _provenance(self) -> dict[str, Any]:
        """What this estimator was built on, recorded by ``save`` (e.g. its embedding's id). Default: nothing."""
        return {}

    def _check_provenance(self, provenance: dict[str, Any]) -> None:  # noqa: B027 - an optional hook
        """Raise a :class:`ValueError` when a loaded file's provenance does not fit this installation."""

    # -- persistence -----------------------------------------------------------------
    def save(self, path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        """Write the fitted estimator to ``path`` (a zip of JSON + npz, no pickle). ``provenance`` adds
        to what the estimator records itself (e.g. ``{"calibration": ...}``)."""
        self.check_fitted()
        meta, arrays = self._state()
        recorded = {**self._provenance(), **(provenance or {})}
        return save_bundle(
            path, self.estimator_kind, self.name, {"params": self.get_params(), "state": meta}, arrays, recorded
        )

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a file written by ``save``; refuses a file of another estimator, a corrupt one, or one
        built on something else than what is installed (a :class:`RouterFileError` naming it)."""
        return cls.from_bundle(read_bundle(path, cls.estimator_kind, cls.name), path)

    @classmethod
    def from_bundle(cls, bundle: Bundle, path: str | Path) -> Self:
        """The estimator a file read by :func:`~sizewise.learn.persist.read_bundle` holds (``path`` names it
        in errors)."""
        if bundle.name != cls.name:
            raise RouterFileError(f"{path}: holds {cls.estimator_kind} {bundle.name!r}, expected {cls.name!r}")
        try:
            estimator = cls(**bundle.meta.get("params", {}))
            estimator._check_params()
            estimator._set_state(bundle.meta.get("state", {}), bundle.arrays)
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise RouterFileError(f"{path}: {cls.name} file does not match this version ({error})") from None
        try:
            estimator._check_provenance(bundle.provenance)
        except ValueError as error:
            raise RouterFileError(f"{path}: {error}") from None
        estimator.provenance_ = bundle.provenance
        estimator.fitted_ = True
        return estimator
