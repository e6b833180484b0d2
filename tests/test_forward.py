"""The front and the replica side of ``serve --ray`` without a cluster (sizewise.distributed.forward).

The front is driven through a real uvicorn server on 127.0.0.1; the "replicas" are async generators that
run a small Starlette app through :func:`run_asgi`, or die the way a Ray replica does (``ActorDiedError``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from fakes import ThreadedServer

pytest.importorskip("ray")

from ray.exceptions import ActorDiedError, RayTaskError

from sizewise.distributed.forward import Forwarded, Front, Message, batched, replica_died, run_asgi


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    client = list(request.client) if request.client else None
    path = request.scope["raw_path"].decode()  # as the client wrote it
    seen = {"method": request.method, "path": path, "query": request.url.query, "client": client}
    headers = {"x-attempt": request.headers.get("x-sizewise-attempt", "")}
    return JSONResponse({**seen, "body": body.decode(), **headers})


async def _stream(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"part{i}\n".encode()
            await asyncio.sleep(0.05)

    return StreamingResponse(parts(), media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/echo", _echo, methods=["GET", "POST"]),
        Route("/echo/{name:path}", _echo, methods=["POST"]),
        Route("/stream", _stream, methods=["GET", "POST"]),
    ]
)


def _request(path: str = "/echo", body: bytes = b"") -> Forwarded:
    return Forwarded("POST", path, b"a=1", [(b"content-type", b"text/plain")], body, ("10.0.0.7", 5555))


def test_run_asgi_answers_the_forwarded_request_as_the_app_would() -> None:
    async def collect() -> list[Message]:
        return [m async for m in run_asgi(APP, _request(body=b"hello"))]

    messages = asyncio.run(collect())
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 200
    body = json.loads(b"".join(m.get("body", b"") for m in messages[1:]))
    assert body == {"method": "POST", "path": "/echo", "query": "a=1", "client": ["10.0.0.7", 5555], "body": "hello",
                    "x-attempt": ""}  # fmt: skip


def test_run_asgi_tells_the_app_its_caller_went_away_and_lets_it_finish() -> None:
    """As under uvicorn: the handler is not cancelled, it hears http.disconnect and ends (and logs) itself."""
    heard: list[str] = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the body
        heard.append((await receive())["type"])  # waits for the caller to go
        await asyncio.sleep(0.05)  # still running: writing its log row, say
        heard.append("finished")

    async def leave_early() -> None:
        messages = run_asgi(slow, _request())
        waiting = asyncio.ensure_future(messages.__anext__())
        await asyncio.sleep(0.05)
        waiting.cancel()  # the caller is gone before any answer
        await asyncio.gather(waiting, return_exceptions=True)
        await messages.aclose()
        await asyncio.sleep(0.2)

    asyncio.run(leave_early())
    assert heard == ["http.disconnect", "finished"]


def test_run_asgi_streams_and_stops_the_app_when_the_caller_goes() -> None:
    """Each part arrives as the app sends it; closing the iteration early disconnects the app."""

    async def first_part() -> tuple[list[Message], float]:
        loop = asyncio.get_running_loop()
        started, got = loop.time(), []
        messages = run_asgi(APP, _request("/stream"))
        async for message in messages:
            got.append(message)
            if message.get("body"):
                break
        await messages.aclose()
        return got, loop.time() - started

    got, elapsed = asyncio.run(first_part())
    assert got[-1]["body"] == b"part0\n" and elapsed < 0.1  # before the app's two sleeps: streamed, not buffered


class _Replicas:
    """``call`` for a Front: the first ``deaths`` calls die as a killed Ray replica does after ``after`` of
    the app's messages, the rest answer. Each message travels alone (the front must not count on
    :func:`batched`, which only saves Ray round trips)."""

    def __init__(self, deaths: int, error: BaseException | None = None, after: int = 0) -> None:
        self.deaths, self.error, self.after, self.calls = deaths, error or ActorDiedError(), after, 0

    async def __call__(self, request: Forwarded) -> AsyncIterator[list[Message]]:
        self.calls += 1
        dies = self.calls <= self.deaths
        async for message in self._messages(request, dies):
            yield [message]

    async def _messages(self, request: Forwarded, dies: bool) -> AsyncIterator[Message]:
        count = 0
        async for message in run_asgi(APP, request):
            if dies and count == self.after:
                raise self.error
            yield message
            count += 1


def _front(replicas: _Replicas, limit: int = 1 << 20) -> ThreadedServer:
    return ThreadedServer(Front(replicas, limit), lifespan="on")


def test_a_request_whose_replica_dies_is_answered_by_another_with_its_body() -> None:
    replicas = _Replicas(deaths=2)
    with _front(replicas) as server:
        reply = httpx.post(f"http://127.0.0.1:{server.port}/echo?a=1", content=b"the body", timeout=10)
    assert reply.status_code == 200 and replicas.calls == 3
    assert reply.json()["body"] == "the body" and reply.json()["x-attempt"] == "3"  # the replica knows the try
    assert reply.json()["path"] == "/echo" and reply.json()["query"] == "a=1"
    assert reply.headers["x-sizewise-attempt"] == "3"  # and the client that it was resent


def test_the_path_reaches_the_replica_as_the_client_wrote_it() -> None:
    with _front(_Replicas(deaths=0)) as server:
        reply = httpx.post(f"http://127.0.0.1:{server.port}/echo/a%2Fb%20c", content=b"x", timeout=10)
    assert reply.status_code == 200 and reply.json()["path"] == "/echo/a%2Fb%20c"


def test_a_client_cannot_pass_itself_off_as_a_resend() -> None:
    with _front(_Replicas(deaths=0)) as server:
        url, forged = f"http://127.0.0.1:{server.port}/echo", {"x-sizewise-attempt": "9"}
        reply = httpx.post(url, content=b"x", headers=forged, timeout=10)
    assert reply.json()["x-attempt"] == "1" and "x-sizewise-attempt" not in reply.headers


def test_three_deaths_in_a_row_are_a_503_not_a_hang() -> None:
    replicas = _Replicas(deaths=5)
    with _front(replicas) as server:
        reply = httpx.post(f"http://127.0.0.1:{server.port}/echo", content=b"x", timeout=10)
    assert reply.status_code == 503 and replicas.calls == 3
    assert reply.json()["error"]["code"] == "replica_unavailable" and reply.headers["retry-after"] == "1"


def test_a_failure_that_is_not_a_death_is_not_resent() -> None:
    """The request itself failed (a RayTaskError from the app): another replica would fail it again."""
    replicas = _Replicas(deaths=1, error=RayTaskError("handle", "traceback", ValueError("bad")))
    with _front(replicas) as server:
        reply = httpx.post(f"http://127.0.0.1:{server.port}/echo", content=b"x", timeout=10)
    assert reply.status_code == 503 and replicas.calls == 1


def test_a_death_between_the_head_and_the_body_is_resent() -> None:
    """The head travels with the first body part, so a replica dying between them sent the client nothing."""
    replicas = _Replicas(deaths=1, after=1)  # the app sent its start, then the replica died
    with _front(replicas) as server:
        reply = httpx.post(f"http://127.0.0.1:{server.port}/echo", content=b"x", timeout=10)
    assert reply.status_code == 200 and replicas.calls == 2 and reply.json()["body"] == "x"


def test_batched_holds_the_head_for_the_first_body_part() -> None:
    async def batches() -> list[list[Message]]:
        return [b async for b in batched(run_asgi(APP, _request("/stream")))]

    sizes = [[m["type"] for m in batch] for batch in asyncio.run(batches())]
    assert sizes[0] == ["http.response.start", "http.response.body"] and all(len(b) == 1 for b in sizes[1:])


def test_a_stream_cut_after_its_first_bytes_is_not_resent() -> None:
    """Bytes already went to the client: a resend would repeat them, so the answer is cut instead."""
    replicas = _Replicas(deaths=1, after=2)  # the start and one part, then the replica dies
    with _front(replicas) as server, httpx.Client(timeout=10) as http:
        reply = http.send(http.build_request("GET", f"http://127.0.0.1:{server.port}/stream"), stream=True)
        assert reply.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            reply.read()
    assert replicas.calls == 1


def test_a_body_over_the_limit_is_a_413_before_any_replica_is_called() -> None:
    replicas = _Replicas(deaths=0)
    with _front(replicas, limit=1000) as server:
        reply = httpx.post(f"http://127.0.0.1:{server.port}/echo", content=b"x" * 1001, timeout=10)
        fits = httpx.post(f"http://127.0.0.1:{server.port}/echo", content=b"x" * 1000, timeout=10)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "body_too_large"
    assert fits.status_code == 200 and replicas.calls == 1


def test_what_counts_as_a_dead_replica() -> None:
    from ray.exceptions import ActorUnavailableError
    from ray.serve.exceptions import ReplicaUnavailableError

    assert replica_died(ActorDiedError()) and replica_died(ReplicaUnavailableError("r1"))
    assert replica_died(ActorUnavailableError("gone", None))
    assert replica_died(RayTaskError("f", "tb", ActorDiedError()).as_instanceof_cause())
    assert not replica_died(RayTaskError("f", "tb", ValueError("bad")).as_instanceof_cause())
    assert not replica_died(ValueError("bad"))


def test_the_errors_a_deployment_raises_cross_ray_whole() -> None:
    """Ray pickles a deployment's exception for the caller: each keeps the fields its 4xx or retry is made of."""
    import pickle

    from sizewise.backends.speech import AudioError
    from sizewise.core.chat import BackendError
    from sizewise.core.decision import RequestRejected

    rejected = pickle.loads(pickle.dumps(RequestRejected(400, "not an image", "invalid_image", "messages")))
    assert (rejected.status, rejected.message, rejected.code, rejected.param) == (
        400, "not an image", "invalid_image", "messages"
    )  # fmt: skip
    audio = pickle.loads(pickle.dumps(AudioError("corrupt clip", "invalid_audio", 415)))
    assert (str(audio), audio.code, audio.status, audio.param) == ("corrupt clip", "invalid_audio", 415, "file")
    failed = pickle.loads(pickle.dumps(BackendError("context too long", retryable=False, status=400)))
    assert (str(failed), failed.retryable, failed.status) == ("context too long", False, 400)


def test_a_trickled_body_gets_a_408_from_the_front_and_reaches_no_replica() -> None:
    """Under Ray the front reads the body, so the body deadline (gateway.body_timeout_s) is kept there."""
    import socket
    import time

    from sizewise.gateway.body_deadline import BodyDeadline

    replicas = _Replicas(deaths=0)
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
    server = ThreadedServer(BodyDeadline(Front(replicas, 1 << 20), 0.5), lifespan="on")
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(head + b"only a part")
        started, answer = time.monotonic(), b""
        while b"body_timeout" not in answer and (chunk := raw.recv(4096)):
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer and 0.4 < waited < 5
    assert replicas.calls == 0
