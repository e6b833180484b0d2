"""Checks shared across sizewise: a :class:`~sizewise.errors.ConfigError` (or ``DataError``) naming the bad value."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from sizewise.errors import ConfigError, DataError


def check_number(
    owner: str,
    name: str,
    value: object,
    minimum: float,
    *,
    integer: bool = False,
    strict: bool = False,
    maximum: float = math.inf,
) -> None:
    """A :class:`ConfigError` unless ``value`` is a finite number (an integer if ``integer``) >= ``minimum``
    (> it if ``strict``) and <= ``maximum``."""
    kind = Integral if integer else Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or float(value) < minimum or (strict and float(value) == minimum) or float(value) > maximum:  # type: ignore[arg-type]
        what = "an integer" if integer else "a number"
        if maximum == math.inf:
            bound = f"{'>' if strict else '>='} {minimum:g}"
        else:
            bound = f"in {'(' if strict else '['}{minimum:g}, {maximum:g}]"
        raise ConfigError(f"{owner}: {name} must be {what} {bound}, got {value!r}")


def check_choice(idx: Any, shape: tuple[int, ...]) -> None:
    """A :class:`DataError` unless the integer vector ``idx`` names one model per row of a
    ``(prompts, models)`` matrix of this ``shape``."""
    if idx.size == 0:
        raise DataError("no prompts: choice is empty")
    if len(shape) != 2 or idx.size != shape[0]:
        raise DataError(f"choice has {idx.size} entries for a quality matrix of shape {shape}")
    if idx.min() < 0 or idx.max() >= shape[1]:
        raise DataError(f"choice: model index out of range 0..{shape[1] - 1}")
