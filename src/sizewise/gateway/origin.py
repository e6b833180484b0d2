"""Cross-site writes refused: a browser page on another origin may not make the gateway call models.

A page cannot read a cross-origin answer without CORS, but it can still *send* a "simple" request: a POST
of ``text/plain`` (which the gateway reads as JSON), a form, or ``multipart/form-data`` built with
``FormData`` (the transcription endpoint's format). Every web page a user visits could then spend the
budget of a keyless gateway on their machine, or fill its log. Browsers say where a request comes from
(``Origin``); programs (the openai client, curl) send no ``Origin``. So a state-changing request whose
``Origin`` is neither the gateway's own nor one of ``gateway.cors_origins`` gets a 403 before any work.
"The gateway's own" means a loopback address or ``localhost``: with DNS rebinding a page's own name
(``evil.example``) comes to resolve to 127.0.0.1, and its requests are then "same-origin" by name
(``Origin`` and ``Host`` both ``evil.example``); the gateway serves no page that posts, so nothing else is lost.
"""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any
from urllib.parse import urlsplit

from sizewise.gateway.errors import GatewayError, error_body

#: Methods that only read: a cross-site page may send them (it cannot read the answer without CORS).
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class CrossSiteGuard:
    """ASGI middleware: 403 ``cross_site_request`` for a non-GET request from a foreign browser origin."""

    def __init__(self, app: Any, allowed: list[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = {origin.rstrip("/").lower() for origin in allowed}

    def _foreign(self, scope: dict[str, Any]) -> str | None:
        """The request's ``Origin`` when it is foreign, else None."""
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1").strip()
        if not origin or self.any or origin.rstrip("/").lower() in self.allowed:
            return None
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        try:
            same = urlsplit(origin).netloc.lower() == host and _loopback(host)
        except ValueError:  # not a URL at all ("null" from a sandboxed frame parses; junk may not)
            same = False
        return None if same else origin

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in _SAFE:
            await self.app(scope, receive, send)
            return
        origin = self._foreign(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return
        message = f"cross-site request from origin {origin[:200]!r} refused: add it to gateway.cors_origins"
        error = GatewayError(403, message, "cross_site_request")
        headers = [(b"content-type", b"application/json")]
        state = getattr(getattr(scope.get("app"), "state", None), "gateway", None)
        if state is not None and str(scope.get("path", "")).startswith("/v1/"):  # an API request: the log keeps it
            request_id = state.next_id()
            state.refuse(error, None, None, time.perf_counter(), request_id=request_id, api_key=None)
            headers.append((b"x-request-id", request_id.encode()))
        body = json.dumps(error_body(error.status, error.message, error.code)).encode()
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _loopback(netloc: str) -> bool:
    """Whether a ``Host`` value names this machine by a loopback address or ``localhost``."""
    name = urlsplit("//" + netloc).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
