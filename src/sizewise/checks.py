"""Parameter checks shared across sizewise: a :class:`~sizewise.errors.ConfigError` naming the bad value."""

from __future__ import annotations

import math
from numbers import Integral, Real

from sizewise.errors import ConfigError


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
