"""A request's headers must arrive within ``gateway.header_timeout_s``, or its connection is closed.

uvicorn times out an idle keep-alive connection, but not one that was just opened, nor a request whose
headers come a byte at a time: each such connection (slowloris) holds a socket for ever, before the app
ever sees a request, so no ASGI middleware can bound it (:mod:`sizewise.gateway.body_deadline` bounds the
body). This protocol, uvicorn's own (httptools, which ``uvicorn[standard]`` installs) plus one timer, is
what ``sizewise serve`` runs: the timer starts when the connection opens and when bytes arrive between
requests (blank lines too), stops when a request's headers are complete, and on expiry answers 408
``header_timeout`` and closes. It also runs while uvicorn drains a body the app answered without reading (a
401, 404 or 413 before the body is in): uvicorn would keep reading that body for as long as it trickles; on
expiry the connection is closed.
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
        #: The timer runs for the rest of a body answered early, not for headers.
        _draining = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that sends nothing at all is cut too

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:  # between requests: the next one's bytes
                self._arm()  # (blank lines too, which start no message yet stop uvicorn's keep-alive timer)
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._draining = False
            self._arm()  # the next request on a kept-alive connection: its own deadline

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._draining = False
            self._disarm()  # a body answered early is drained: the connection may serve the next request

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.cycle.response_complete and self.cycle.more_body and not self.transport.is_closing():
                self._draining = True
                self._arm()  # answered before its body was in: the rest of it must come in time too

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
            # A 408 only where a request's headers were awaited: never inside another answer, nor after one.
            if not self._draining and (self.cycle is None or self.cycle.response_complete):
                self.transport.write(answer)
            self.transport.close()

    return HeaderDeadline
