"""One access-log line per request, through the ``sizewise.access`` logger (``gateway.access_log``).

A pure ASGI middleware: it sees every endpoint, and a streamed answer is logged when its last byte is
sent, so the latency is the whole response's. The model and policy come from the ``x-sizewise-*``
headers the handlers already set (``-`` for endpoints that decide nothing).
"""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("sizewise.access")

Scope = dict[str, Any]
Message = dict[str, Any]


class AccessLog:
    """ASGI middleware: ``METHOD PATH STATUS model=... policy=... N ms`` per HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 499, "headers": {}, "logged": False}

        async def tap(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["headers"] = {k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", [])}
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                _line(scope, seen, started)

        try:
            await self.app(scope, receive, tap)
        finally:  # an answer that never finished (client gone, error) still gets its line
            if not seen["logged"]:
                _line(scope, seen, started)


def _line(scope: Scope, seen: dict[str, Any], started: float) -> None:
    if seen["logged"]:
        return
    seen["logged"] = True
    headers = seen["headers"]
    logger.info(
        "%s %s %s model=%s policy=%s %.1f ms",
        scope.get("method", "-"),
        scope.get("path", "-"),
        seen["status"],
        headers.get("x-sizewise-model") or "-",
        headers.get("x-sizewise-policy") or "-",
        (time.perf_counter() - started) * 1000,
    )
