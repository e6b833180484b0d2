"""A request's headers must arrive within ``gateway.header_timeout_s``, or its connection is closed.

uvicorn times out an idle keep-alive connection, but not one that was just opened, nor a request whose
headers come a byte at a time: each such connection (slowloris) holds a socket for ever, before the app
ever sees a request, so no ASGI middleware can bound it (:mod:`sizewise.gateway.body_deadline` bounds the
body). This protocol, uvicorn's own (httptools, which ``uvicorn[standard]`` installs) plus one timer, is
what ``sizewise serve`` runs: the timer starts when the connection opens and when a request's first byte
arrives, stops when its headers are complete, and on expiry answers 408 ``header_timeout`` and closes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sizewise.gateway.errors import error_body


def header_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a ``timeout_s`` deadline on each request's headers (``Config(http=...)``)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    message = f"the request headers were not received within {timeout_s:g} s (gateway.header_timeout_s)"
    body = json.dumps(error_body(408, message, "header_timeout")).encode()
    answer = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )

    class HeaderDeadline(HttpToolsProtocol):  # type: ignore[misc]
        """HttpToolsProtocol whose requests must finish their headers within the deadline."""

        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that sends nothing at all is cut too

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # the next request on a kept-alive connection: its own deadline

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # never in the middle of another answer
                self.transport.write(answer)
            self.transport.close()

    return HeaderDeadline
