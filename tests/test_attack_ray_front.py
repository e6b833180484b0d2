"""A hostile client and a broken replica against the ``serve --ray`` front (sizewise.distributed.forward).

As in test_forward.py, no cluster: the front runs in a real uvicorn server on 127.0.0.1 and its "replicas"
run small ASGI apps through :func:`run_asgi`, one message per batch.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fakes import ThreadedServer

pytest.importorskip("ray")

from sizewise.distributed.forward import BACKLOG, Forwarded, Front, Message, run_asgi

App = Any


class _Replica:
    """``call`` for a Front that runs ``app`` through run_asgi and records each request it was handed."""

    def __init__(self, app: App) -> None:
        self.app, self.requests = app, []  # type: list[Forwarded]

    async def __call__(self, request: Forwarded) -> AsyncIterator[list[Message]]:
        self.requests.append(request)
        async for message in run_asgi(self.app, request):
            yield [message]


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


def _serve(replica: _Replica, limit: int = 1 << 20) -> ThreadedServer:
    return ThreadedServer(Front(replica, limit), lifespan="on")


def _raw(port: int, request: bytes, wait_s: float = 5.0) -> bytes:
    """What the server answers ``request`` (raw bytes) until it closes or ``wait_s`` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as raw:
        raw.sendall(request)
        answer = b""
        try:
            while chunk := raw.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


# --- what the replica sees -------------------------------------------------------------------------------


def test_the_replica_sees_the_headers_method_and_query_as_the_client_sent_them() -> None:
    """Duplicates kept in order, a long query string whole, odd methods as they are; only the front's
    own header is the front's."""
    replica = _Replica(_ok)
    query = "q=" + "a" * 6000 + "&x=%00&y=.."
    headers = [("x-dup", "one"), ("x-dup", "two"), ("x-sizewise-attempt", "7"), ("X-Sizewise-Attempt", "8")]
    with _serve(replica) as server, httpx.Client(timeout=10) as http:
        for method in ("PUT", "OPTIONS", "DELETE"):
            reply = http.request(method, f"http://127.0.0.1:{server.port}/a/../b?{query}", headers=headers)
            assert reply.status_code == 200 and reply.text == "ok"
    assert [r.method for r in replica.requests] == ["PUT", "OPTIONS", "DELETE"]
    for request in replica.requests:
        assert request.query_string == query.encode()
        assert [v for k, v in request.headers if k == b"x-dup"] == [b"one", b"two"]
        assert [v for k, v in request.headers if k == b"x-sizewise-attempt"] == [b"1"]


def test_dot_segments_and_escaped_nuls_reach_the_replica_unresolved() -> None:
    """The front resolves nothing: the gateway routes the path exactly as under ``sizewise serve``."""
    replica = _Replica(_ok)
    with _serve(replica) as server:
        answer = _raw(server.port, b"GET /v1/../admin%00x?a=%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    (request,) = replica.requests
    assert request.raw_path == b"/v1/../admin%00x" and request.path == "/v1/../admin\x00x"
    assert request.query_string == b"a=%00"


def test_a_chunked_body_reaches_the_replica_with_its_length_not_its_chunking() -> None:
    """The replica gets the whole body at once: it must not be told to expect chunks, and it is told how
    long the body is (what the gateway checks before it reads)."""
    replica = _Replica(_ok)
    with _serve(replica) as server:
        head = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        answer = _raw(server.port, head + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    (request,) = replica.requests
    assert request.body == b"hello world"
    names = [k for k, _ in request.headers]
    assert b"transfer-encoding" not in names and (b"content-length", b"11") in request.headers


# --- bodies ------------------------------------------------------------------------------------------------


def test_a_chunked_body_over_the_limit_is_a_413_and_reaches_no_replica() -> None:
    replica = _Replica(_ok)
    with _serve(replica, limit=10) as server:
        head = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        answer = _raw(server.port, head + b"6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer and replica.requests == []


def test_a_declared_body_over_the_limit_is_refused_before_the_client_sends_it() -> None:
    """``expect: 100-continue`` with a content-length past the limit: a 413 at once, no 100 Continue asked
    of the client (so it never uploads the body) and no replica called."""
    replica = _Replica(_ok)
    with _serve(replica, limit=1000) as server:
        head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        answer = _raw(server.port, head, wait_s=1)
    assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer and replica.requests == []


def test_a_client_that_leaves_mid_body_reaches_no_replica() -> None:
    replica = _Replica(_ok)
    with _serve(replica) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
            time.sleep(0.2)
        time.sleep(0.3)
    assert replica.requests == []


# --- broken replicas ---------------------------------------------------------------------------------------


def test_a_replica_that_sends_trailers_still_gives_the_client_its_whole_body(caplog: pytest.LogCaptureFixture) -> None:
    """The front speaks HTTP/1.1 without trailers: they are dropped, the answer ends cleanly (no "replica
    died mid-answer" from the server refusing them)."""

    async def trailers(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"part1 ", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")], "more_trailers": False})

    with _serve(_Replica(trailers)) as server:
        reply = httpx.get(f"http://127.0.0.1:{server.port}/x", timeout=5)
    assert reply.status_code == 200 and reply.text == "part1 part2"
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_replica_that_keeps_sending_after_its_last_body_part_is_not_relayed_further(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``more_body: false`` ends the answer: what a broken replica sends after it never reaches the client
    (not even as a second response on a kept-alive connection)."""

    async def chatty(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"done", "more_body": False})
        await send({"type": "http.response.body", "body": b"HTTP/1.1 200 OK\r\n\r\nforged", "more_body": False})

    with _serve(_Replica(chatty)) as server, httpx.Client(timeout=5) as http:
        first = http.get(f"http://127.0.0.1:{server.port}/x")
        second = http.get(f"http://127.0.0.1:{server.port}/x")
    assert first.text == "done" and second.text == "done"
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_replica_that_raises_after_its_head_is_a_503_not_a_hang() -> None:
    async def breaks(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("broken")

    with _serve(_Replica(breaks)) as server:
        reply = httpx.get(f"http://127.0.0.1:{server.port}/x", timeout=5)
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "replica_unavailable"


# --- slow and departing clients ----------------------------------------------------------------------------


def _endless(record: list[str], parts: int = 200, size: int = 10, pause: float = 0.01) -> App:
    """A streamed answer of ``parts`` parts that notes each part sent and whether it heard the client go
    (as the gateway's streams do, through Starlette's disconnect listener)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        gone = asyncio.ensure_future(receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(parts):
            if gone.done():
                record.append(gone.result()["type"])
                return
            await send({"type": "http.response.body", "body": b"x" * size, "more_body": True})
            record.append("part")
            await asyncio.sleep(pause)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        record.append("finished")

    return app


def test_a_client_that_leaves_mid_stream_stops_the_replica_app() -> None:
    """Its app hears http.disconnect soon and stops, instead of streaming the rest (a model paid for it)
    to a front that drops it."""
    record: list[str] = []
    with _serve(_Replica(_endless(record))) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.recv(100)  # the answer started
        time.sleep(1.0)
    assert record[-1] == "http.disconnect" and record.count("part") < 150


def test_run_asgi_holds_a_bounded_backlog_for_a_slow_reader() -> None:
    """An app streaming faster than its caller reads is paused (as uvicorn pauses it), not buffered whole."""
    record: list[str] = []

    async def read_slowly() -> None:
        messages = run_asgi(_endless(record, parts=2000, size=1, pause=0), Forwarded("GET", "/", b"", [], b"", None))
        await messages.__anext__()
        await asyncio.sleep(0.3)  # unbounded, the app sends all 2000 parts meanwhile
        await messages.aclose()
        await asyncio.sleep(0.1)

    asyncio.run(read_slowly())
    assert record.count("part") <= BACKLOG + 2 and record[-1] == "http.disconnect"
