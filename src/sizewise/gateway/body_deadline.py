"""A request body must arrive within ``gateway.body_timeout_s`` of its headers, or the request gets a 408.

uvicorn bounds an idle keep-alive connection but not a request whose body trickles in (a byte every few
seconds: slowloris), so each such connection would hold a handler, its memory and a socket for ever. This
ASGI middleware is the one place that bounds it, for every route that reads a body (chat, messages,
embeddings, feedback, the multipart upload of transcriptions): ``receive`` waits for body chunks only until
the deadline, then raises a 408 :class:`GatewayError`, which the handler answers in its API's error shape
(and logs, without a model) like any rejected request. The answer says ``connection: close``, so the
server drops the connection and whatever the client still meant to send. Once the body is in, ``receive``
is untimed again: a handler waiting for the client to disconnect must not be cut off.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sizewise.gateway.errors import GatewayError, error_body

Scope = dict[str, Any]
Message = dict[str, Any]


def body_timeout(seconds: float) -> GatewayError:
    """The 408 of a body not received in time."""
    message = f"the request body was not received within {seconds:g} s (gateway.body_timeout_s)"
    return GatewayError(408, message, "body_timeout")


class BodyDeadline:
    """ASGI middleware: a 408 ``body_timeout`` and a closed connection for a body slower than ``timeout_s``."""

    def __init__(self, app: Any, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s  # from the headers on: the whole body, not each chunk
        seen = {"body_done": False, "timed_out": False, "started": False}

        async def timed_receive() -> Message:
            if seen["body_done"]:
                return await receive()  # type: ignore[no-any-return]
            try:
                async with asyncio.timeout_at(deadline):
                    message: Message = await receive()
            except TimeoutError:
                seen["timed_out"] = True
                raise body_timeout(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                seen["body_done"] = True
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["started"] = True
                if seen["timed_out"]:  # the rest of the body is never read: the connection cannot be reused
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, timed_receive, closing_send)
        except GatewayError as error:  # a route that let the 408 through: answered here, one JSON line
            if not seen["timed_out"] or seen["started"]:
                raise
            await _answer(closing_send, error)


async def _answer(send: Any, error: GatewayError) -> None:
    body = json.dumps(error_body(error.status, error.message, error.code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
