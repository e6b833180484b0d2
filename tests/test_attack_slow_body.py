"""Slowloris: a client that sends its headers, then its body a byte at a time, must not hold the gateway.

A real gateway on 127.0.0.1 (``gateway.body_timeout_s`` set to 1 s here) and raw sockets that trickle each
route's body: every one is answered 408 ``body_timeout`` within the deadline and its connection closed, no
model is called, the log keeps the refusal without a model, and other clients are answered meanwhile. A
slow upload that does finish in time, and an answer that takes longer than the deadline, are unharmed.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model

TIMEOUT_S = 1.0
#: How long a trickle goes on before the test gives up on the gateway ever answering.
GIVE_UP_S = TIMEOUT_S + 6.0
#: The latest a cut may come on a loaded machine (event loops lag); GIVE_UP_S is "never".
LATE_S = TIMEOUT_S + 3.0

ROUTES = [
    ("/v1/chat/completions", "application/json"),
    ("/v1/messages", "application/json"),
    ("/v1/messages/count_tokens", "application/json"),
    ("/v1/route", "application/json"),
    ("/v1/embeddings", "application/json"),
    ("/v1/feedback", "application/json"),
    ("/v1/audio/transcriptions", "multipart/form-data; boundary=b"),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, FakeUpstream]]:
    with FakeUpstream(timeout_sleep=TIMEOUT_S + 0.5) as upstream:
        catalog = {
            "models": [
                fake_model("fast", "ok", 1, upstream.base_url, timeout_s=10),
                fake_model("slow", "slow-timeout", 2, upstream.base_url, timeout_s=10),
            ],
            "gateway": {
                "log_url": f"sqlite:///{tmp_path_factory.mktemp('log')}/log.sqlite",
                "body_timeout_s": TIMEOUT_S,
            },
        }
        with GatewayServer(catalog) as gateway:
            yield gateway, upstream


def _connect(gateway: GatewayServer, path: str, content_type: str, chunked: bool = False) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=GIVE_UP_S + 5)
    length = b"transfer-encoding: chunked" if chunked else b"content-length: 100000"
    head = b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: %s\r\n%s\r\n\r\n"
    sock.sendall(head % (path.encode(), content_type.encode(), length))
    return sock


def _trickle(sock: socket.socket, chunked: bool = False, every_s: float = 0.2) -> tuple[float, bytes]:
    """Send a byte every ``every_s`` until the gateway answers (or GIVE_UP_S passes): (seconds, all it sent)."""
    started = time.monotonic()
    byte = b"1\r\n{\r\n" if chunked else b"{"
    while not select.select([sock], [], [], every_s)[0]:
        if time.monotonic() - started > GIVE_UP_S:
            sock.close()
            return time.monotonic() - started, b""  # never answered: the hole this test is about
        try:
            sock.sendall(byte)
        except OSError:
            break
    answered = time.monotonic() - started
    received = b""
    try:
        while chunk := sock.recv(65536):  # until the gateway closes the connection
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return answered, received


def _parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


@pytest.mark.parametrize(("path", "content_type"), ROUTES, ids=[path for path, _ in ROUTES])
def test_a_trickled_body_gets_408_and_a_closed_connection(
    servers: tuple[GatewayServer, FakeUpstream], path: str, content_type: str
) -> None:
    gateway, upstream = servers
    calls = sum(upstream.calls.values())
    answered, raw = _trickle(_connect(gateway, path, content_type))
    assert raw, f"no answer after {answered:.1f} s of trickling"
    status, headers, body = _parse(raw)
    assert status == 408 and TIMEOUT_S * 0.9 <= answered <= LATE_S, (answered, raw[:300])
    assert headers["connection"] == "close"  # and the recv loop above ended: the socket was closed
    assert "body_timeout_s" in body["error"]["message"]  # OpenAI's shape, and Anthropic's on /v1/messages
    if not path.startswith("/v1/messages"):
        assert body["error"]["code"] == "body_timeout"
    assert sum(upstream.calls.values()) == calls  # no model was called


def test_a_chunked_trickle_is_cut_too(servers: tuple[GatewayServer, FakeUpstream]) -> None:
    gateway, _ = servers
    answered, raw = _trickle(_connect(gateway, "/v1/chat/completions", "application/json", chunked=True), True)
    assert raw and _parse(raw)[0] == 408 and answered <= LATE_S, (answered, raw[:300])


def test_the_refusals_are_logged_without_a_model(servers: tuple[GatewayServer, FakeUpstream]) -> None:
    gateway, _ = servers
    _, raw = _trickle(_connect(gateway, "/v1/chat/completions", "application/json"))
    request_id = _parse(raw)[1]["x-request-id"]
    row = next(r for r in gateway.rows() if r["request_id"] == request_id)
    assert row["status"] == 408 and row["model"] is None and not row["cost"]


def test_many_trickling_clients_do_not_stop_others(servers: tuple[GatewayServer, FakeUpstream]) -> None:
    gateway, _ = servers
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=5)
    sockets = [_connect(gateway, "/v1/chat/completions", "application/json") for _ in range(30)]
    with ThreadPoolExecutor(len(sockets)) as pool:
        trickles = [pool.submit(_trickle, sock) for sock in sockets]
        time.sleep(0.3)
        answer = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
        results = [trickle.result() for trickle in trickles]
    assert all(raw and _parse(raw)[0] == 408 for _, raw in results)


def test_a_slow_body_that_arrives_in_time_and_a_slow_answer_are_unharmed(
    servers: tuple[GatewayServer, FakeUpstream],
) -> None:
    gateway, _ = servers
    body = json.dumps({"model": "slow", "messages": [{"role": "user", "content": "take your time"}]}).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    )
    sock.sendall(head % len(body))
    for part in (body[:10], body[10:20], body[20:]):  # in three parts, 0.2 s apart: 0.4 s of the 1 s
        sock.sendall(part)
        time.sleep(0.2)
    response = http.client.HTTPResponse(sock)  # the upstream takes 1.5 s, longer than the body deadline
    response.begin()
    status, closing, answer = response.status, response.getheader("connection"), json.loads(response.read())
    sock.close()
    assert status == 200 and closing != "close", answer
    assert answer["choices"][0]["message"]["content"].startswith("echo:")


def test_a_keep_alive_connection_serves_again_after_a_slow_answer(
    servers: tuple[GatewayServer, FakeUpstream],
) -> None:
    """The deadline is per request: the second request on a connection gets its own."""
    gateway, _ = servers
    with openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=10) as client:
        for _ in range(2):
            answer = client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content


def test_a_stream_longer_than_the_deadline_is_unharmed(servers: tuple[GatewayServer, FakeUpstream]) -> None:
    """The deadline bounds the upload, not the answer: a stream that ends after it is received whole."""
    gateway, _ = servers
    with openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=10) as client:
        stream = client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "stream it"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.startswith("echo:")
