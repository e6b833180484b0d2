"""Remote models are never silently local or free.

A model with an ``openai`` backend whose ``base_url`` is not this machine (127.0.0.0/8, ``::1``,
``localhost``; 0.0.0.0 and ``::`` reach it too) is another machine's: without ``location`` it is
``remote`` (said by a warning line), and it must state ``price_in`` and ``price_out`` (a speech model:
``price_per_minute``), or a budget and a "cost vs always-big" report would count it as free.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sizewise.errors import ConfigError

Loc = tuple[str | int, ...]


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine: ``localhost``, 127.0.0.0/8, ``::1``, 0.0.0.0 or ``::``."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # 0.0.0.0 and :: reach this machine


def apply_remote_rules(
    data: dict[str, Any], where: Callable[[Loc], str], entry: Callable[[Loc], str], notes: list[str]
) -> None:
    """Infer ``location: remote`` for non-loopback upstreams (a note in ``notes``) and require their prices.

    Mutates the raw catalog mapping before validation; malformed entries are left for the schema to report.
    """
    models = data.get("models")
    if not isinstance(models, list):
        return
    for index, item in enumerate(models):
        if not isinstance(item, dict) or item.get("backend") != "openai":
            continue
        settings = item.get("settings")
        url = settings.get("base_url") if isinstance(settings, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or is_loopback(url):
            continue  # a malformed URL is the schema's to report
        loc: Loc = ("models", index)
        speech = item.get("kind") == "speech"  # billed by the minute of audio, not by the token
        missing = [key for key in (("price_per_minute",) if speech else ("price_in", "price_out")) if key not in item]
        if missing:
            unit = "USD per minute of audio" if speech else "USD per 1M tokens"
            raise ConfigError(
                f"{where(loc)}: {entry(loc)}: a remote model ({url}) must state {' and '.join(missing)} "
                f"({unit}; 0 if it really is free)"
            )
        if "location" not in item:
            item["location"] = "remote"
            notes.append(
                f"warning: {where(loc)}: {entry(loc)}: no 'location' given; {url} is not a loopback address, "
                "so the model is remote (state 'location: local' for a machine you trust with personal data)"
            )
