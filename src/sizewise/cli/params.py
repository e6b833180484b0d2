"""``--param KEY=VALUE``: one parser for every command that builds a router or a scorer (eval, train,
calibrate, choose, scorer fit). VALUE is JSON when it parses (``k=3``, ``embedding="static"``), else the text."""

from __future__ import annotations

import json
from typing import Any

from sizewise.errors import ConfigError

PARAM_HELP = "Parameter KEY=VALUE (JSON, else text), e.g. embedding=static or k=3 (repeatable)."


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["k=3", "embedding=static"]`` -> ``{"k": 3, "embedding": "static"}``; a one-line error for a bad item."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param wants KEY=VALUE, got {item!r} (e.g. --param k=3)")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params
