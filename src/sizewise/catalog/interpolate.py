"""Environment interpolation in catalog files: ``${VAR}`` and ``${VAR:-default}`` in string values.

As in the shell, ``${VAR:-default}`` uses ``default`` when ``VAR`` is unset or empty; ``$$`` is a literal
``$``. An unset variable without a default is a one-line :class:`ConfigError` naming it and the line.
Keys are never interpolated, and neither is a value's result (no second pass).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from sizewise.errors import ConfigError

Loc = tuple[str | int, ...]

_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")


def interpolate(data: Any, where: Callable[[Loc], str], env: Mapping[str, str] | None = None, loc: Loc = ()) -> Any:
    """``data`` with every string value's ``${...}`` replaced from ``env`` (default ``os.environ``)."""
    environ = os.environ if env is None else env
    if isinstance(data, dict):
        return {key: interpolate(value, where, environ, (*loc, str(key))) for key, value in data.items()}
    if isinstance(data, list):
        return [interpolate(item, where, environ, (*loc, index)) for index, item in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        return _substitute(data, environ, lambda problem: ConfigError(f"{where(loc)}: {problem}"))
    return data


def _substitute(text: str, env: Mapping[str, str], error: Callable[[str], ConfigError]) -> str:
    def one(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise error(f"{whole!r} is not ${{NAME}} or ${{NAME:-default}}")
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is None:
            raise error(f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)")
        return value

    return _PATTERN.sub(one, text)
