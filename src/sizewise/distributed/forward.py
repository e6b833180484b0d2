"""HTTP through a Ray handle, so that a request whose gateway replica dies is answered by another one.

Serve's HTTP proxy does not replay a request a replica had accepted when that replica dies: the client
gets a 500. So under ``serve --ray`` the proxy talks to a thin :class:`Front` (an ASGI app that only
reads the body and relays bytes) and the front calls a gateway replica through a deployment handle with
the whole request (:class:`Forwarded`). When the replica dies before the first byte of its answer
reached the front, the front sends the same request to another replica; Serve's router has by then
taken the dead one out of rotation. Once bytes went out (a stream under way) nothing can be replayed:
the stream is cut, as a dead server's would be.

On the replica side :func:`run_asgi` runs the gateway's own ASGI app on the forwarded request and yields
its ASGI messages as they come (a streamed answer stays streamed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from sizewise.gateway.errors import error_response

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

#: Tries per request: the first replica and up to two others (each death takes one out of rotation).
ATTEMPTS = 3
#: The header that says which try this is (1 = first): on the request a replica gets, and on a resent answer.
ATTEMPT_HEADER = b"x-sizewise-attempt"
#: Request headers the front sets itself: the replica gets the body whole, so not how it was framed.
FRONT_HEADERS = frozenset({ATTEMPT_HEADER, b"content-length", b"transfer-encoding", b"expect"})
#: Messages an app may send ahead of its caller (:func:`run_asgi`): a streamed answer's parts are small.
BACKLOG = 64


@dataclass(frozen=True)
class Forwarded:
    """One HTTP request, whole: what a gateway replica needs to answer it (picklable for Ray)."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None
    scheme: str = "http"
    http_version: str = "1.1"
    #: The path as the client sent it (percent-escapes kept); None: ``path`` encoded.
    raw_path: bytes | None = None

    def scope(self) -> dict[str, Any]:
        """The ASGI HTTP scope of the request."""
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.http_version,
            "method": self.method,
            "scheme": self.scheme,
            "path": self.path,
            "raw_path": self.raw_path if self.raw_path is not None else self.path.encode(),
            "root_path": "",
            "query_string": self.query_string,
            "headers": self.headers,
            "client": self.client,
            "server": None,
        }


async def run_asgi(app: ASGIApp, request: Forwarded) -> AsyncIterator[Message]:
    """``app``'s ASGI messages for ``request`` as it sends them. Closing or cancelling the iteration
    disconnects the request: the app is told (``http.disconnect``), not cancelled.

    At most :data:`BACKLOG` messages wait for the caller: an app that streams faster than its caller
    reads is paused in ``send``, as uvicorn pauses it for a slow socket, rather than buffered whole."""
    messages: asyncio.Queue[Message | None] = asyncio.Queue(BACKLOG)
    gone = asyncio.Event()
    body_given = False

    async def send(message: Message | None) -> None:
        if messages.full() and not gone.is_set():  # wait for room, or for the caller to leave
            room, leaving = asyncio.ensure_future(messages.put(message)), asyncio.ensure_future(gone.wait())
            await asyncio.wait({room, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if room.done():
                leaving.cancel()
                return
            room.cancel()
        if not gone.is_set():
            messages.put_nowait(message)  # room: nothing awaited since full() said so

    async def receive() -> Message:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await gone.wait()  # after the body, the next event is the client going away
        return {"type": "http.disconnect"}

    async def run() -> None:
        try:
            await app(request.scope(), receive, send)
        finally:
            await send(None)

    task = asyncio.create_task(run())
    try:
        while (message := await messages.get()) is not None:
            yield message
        await task  # the app's own exception, if it raised one
    finally:
        gone.set()
        if not task.done():  # the caller went away: the app hears http.disconnect and ends as under uvicorn,
            _finishing.add(task)  # its log row saying 499, where cancelling it here would leave no row at all
            task.add_done_callback(_finishing.discard)


#: Apps still finishing a request whose caller went away (held so the event loop does not drop them).
_finishing: set[asyncio.Task[None]] = set()


async def batched(messages: AsyncIterator[Message]) -> AsyncIterator[list[Message]]:
    """``messages`` in batches, the response's start held back to travel with its first body part.

    So a replica that dies between the two has sent the front nothing it must pass on, and the front can
    resend the request; and a whole (not streamed) answer is one item over Ray, not two."""
    held: list[Message] = []
    async for message in messages:
        held.append(message)
        if message["type"] != "http.response.start":
            yield held
            held = []
    if held:
        yield held


def replica_died(error: BaseException) -> bool:
    """True when ``error`` says the replica (not the request) failed: the request may go to another one."""
    from ray.exceptions import RayActorError, RayTaskError
    from ray.serve.exceptions import ReplicaUnavailableError

    if isinstance(error, RayTaskError):
        error = getattr(error, "cause", None) or error
    return isinstance(error, (RayActorError, ReplicaUnavailableError))


async def read_whole_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None past ``limit`` bytes (the front holds each body to be able to resend it)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("the client closed the connection before its body was sent")
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


class Front:
    """The ASGI app in front of the gateway replicas: read the body, call a replica, relay, retry on death.

    ``call(request)`` returns the async iterator of a replica's ASGI messages in batches (a streaming handle
    call of :meth:`GatewayReplica.handle`, which yields :func:`batched` messages).
    """

    def __init__(self, call: Callable[[Forwarded], AsyncIterator[list[Message]]], body_limit: int) -> None:
        self.call = call
        self.body_limit = body_limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: the gateway has none
        declared = dict(scope["headers"]).get(b"content-length", b"")
        try:  # a declared length past the limit: refused before a 100-continue asks the client for it
            body = (
                None
                if declared.isdigit() and int(declared) > self.body_limit
                else await read_whole_body(receive, self.body_limit)
            )
        except ConnectionResetError:
            return  # nobody to answer
        if body is None:
            message = f"request body larger than {self.body_limit} bytes"
            await error_response(413, message, "body_too_large")(scope, receive, send)
            return
        answered = False

        async def sending(message: Message) -> None:
            nonlocal answered
            await send(message)
            answered = message["type"] == "http.response.body" and not message.get("more_body", False)

        answer = asyncio.ensure_future(self._answer(scope, body, sending))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:  # a client that leaves stops its replica's answer, which the server would otherwise drop unseen
            await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not answer.done() and not answered:  # (the server says "disconnect" once the answer is whole)
                answer.cancel()
            await asyncio.wait({answer})
        finally:
            gone.cancel()
            answer.cancel()  # when this call itself is cancelled (Serve's proxy lost the client)
        if not answer.cancelled():
            answer.result()  # its own exception, if any

    async def _answer(self, scope: MutableMapping[str, Any], body: bytes, send: Send) -> None:
        """Hand the request to a replica, and to another while one dies before answering."""
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in FRONT_HEADERS]
        headers.append((b"content-length", str(len(body)).encode()))
        for attempt in range(1, ATTEMPTS + 1):
            request = Forwarded(
                method=scope["method"],
                path=scope["path"],
                query_string=scope.get("query_string", b""),
                headers=[*headers, (ATTEMPT_HEADER, str(attempt).encode())],
                body=body,
                client=tuple(scope["client"]) if scope.get("client") else None,  # type: ignore[arg-type]
                scheme=scope.get("scheme", "http"),
                http_version=scope.get("http_version", "1.1"),
                raw_path=scope.get("raw_path"),
            )
            if await self._relay(request, send, attempt):
                return
            logger.warning(
                "gateway replica died before answering %s %s: try %d", request.method, request.path, attempt + 1
            )
            await asyncio.sleep(0.05 * attempt)  # the router hears of the death from the controller meanwhile

    async def _relay(self, request: Forwarded, send: Send, attempt: int) -> bool:
        """Relay one replica's answer; False when it died before anything was sent (try another).

        A resent request's answer says so (``x-sizewise-attempt: 2``): its first replica may have called
        a model already, so it may have been paid for twice."""
        sent = finished = False
        last = attempt == ATTEMPTS
        messages = self.call(request)
        head: Message | None = None
        try:
            async for message in _whole_answer(messages):
                if message["type"] == "http.response.start":  # held until a body part: see batched()
                    head = message
                    if attempt > 1:
                        message["headers"] = [*message.get("headers", []), (ATTEMPT_HEADER, str(attempt).encode())]
                    continue
                if head is not None:
                    await send(head)
                    head = None
                await send(message)
                sent = True
            if head is not None:  # an app that sent no body: answer with an empty one
                await send(head)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finished = True
        except Exception as error:
            if sent or last or not replica_died(error):
                if not sent:
                    await _error(send, error)
                else:  # mid-answer: cut, as a dead server would (the client sees a truncated body)
                    logger.error("gateway replica died mid-answer: %s", type(error).__name__)
                return True
            return False
        finally:  # the client gone (cancelled here) or the replica dead: stop the call where it runs
            cancel = getattr(messages, "cancel", None)  # a Ray handle's stream
            if cancel is not None and not finished:
                cancel()
            close = getattr(messages, "aclose", None)  # an async generator (one process, the tests)
            if close is not None and not finished:
                await close()
        return True


async def _whole_answer(batches: AsyncIterator[list[Message]]) -> AsyncIterator[Message]:
    """The response's start and body messages in ``batches``, up to its last body part. A replica's
    trailers (HTTP/1.1 here has none) and whatever it sends after its answer is whole are dropped:
    the server would refuse them, and nothing after the answer is the client's."""
    async for batch in batches:
        for message in batch:
            if message["type"] == "http.response.start":
                yield {**message, "trailers": False}
            elif message["type"] == "http.response.body":
                yield message
                if not message.get("more_body", False):
                    return


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (its body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _error(send: Send, error: BaseException) -> None:
    """A 503 naming the failure, OpenAI-style, when no replica could answer."""
    message = f"no gateway replica could answer: {type(error).__name__}"
    response = error_response(503, message, "replica_unavailable", headers={"retry-after": "1"})

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    await response({"type": "http"}, nothing, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    """The front holds nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
