"""Slowloris before the body: connections that send nothing, or their headers a byte at a time, must not be held.

uvicorn bounds neither, and no ASGI middleware runs before the headers are in; ``sizewise serve`` runs uvicorn
with a protocol that does (``gateway.header_timeout_s``, 1 s here). The real CLI in a subprocess, raw sockets.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from fakes import FakeUpstream, free_port

TIMEOUT_S = 1.0
GIVE_UP_S = TIMEOUT_S + 6.0
#: The latest a cut may come on a loaded machine (event loops lag); GIVE_UP_S is "never".
LATE_S = TIMEOUT_S + 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("serve")
    with FakeUpstream() as upstream:
        catalog = folder / "sizewise.yaml"
        catalog.write_text(
            "models:\n  - {name: fast, context_window: 4096, params_b: 1, price_in: 1, price_out: 2,\n"
            f"     location: remote, backend: openai, settings: {{base_url: '{upstream.base_url}', model: ok}}}}\n"
            f"gateway: {{log_url: none, access_log: false, header_timeout_s: {TIMEOUT_S}}}\n"
        )
        port = free_port()
        command = [sys.executable, "-m", "sizewise.cli.main", "serve", "-c", str(catalog), "--port", str(port)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder)
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # start-up lines, then the banner once it listens
            while "sizewise gateway on" not in line:
                assert line, process.stderr.read() if process.stderr else "serve exited"
                line = process.stdout.readline()
            yield port
        finally:
            process.terminate()
            process.wait(15)


def _held_for(sock: socket.socket, trickle: bytes) -> tuple[float, bytes]:
    """Send ``trickle`` a byte every 0.2 s (nothing if empty) until the server answers or closes."""
    started = time.monotonic()
    sent = 0
    while not select.select([sock], [], [], 0.2)[0]:
        if time.monotonic() - started > GIVE_UP_S:
            return time.monotonic() - started, b""
        if sent < len(trickle):
            sock.sendall(trickle[sent : sent + 1])
            sent += 1
    held = time.monotonic() - started
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return held, received + b"<closed>"


def _status(sock: socket.socket) -> int:
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


HEADERS = b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" + b"x" * 200


@pytest.mark.parametrize("trickle", [b"", HEADERS], ids=["silent", "trickled-headers"])
def test_a_slow_connection_is_closed_with_408(server: int, trickle: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=GIVE_UP_S) as sock:
        held, received = _held_for(sock, trickle)
    assert received.endswith(b"<closed>") and TIMEOUT_S * 0.9 <= held <= LATE_S, (held, received)
    head, _, body = received.removesuffix(b"<closed>").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), received
    assert json.loads(body)["error"]["code"] == "header_timeout"


def test_the_next_request_on_a_kept_alive_connection_has_its_own_deadline(server: int) -> None:
    request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server), timeout=GIVE_UP_S) as sock:
        time.sleep(TIMEOUT_S * 0.6)
        sock.sendall(request)  # in time: answered, the connection kept
        assert _status(sock) == 200
        time.sleep(TIMEOUT_S * 0.6)  # past the first deadline in all, not this request's
        sock.sendall(request[:5])
        time.sleep(TIMEOUT_S * 0.2)
        sock.sendall(request[5:])
        assert _status(sock) == 200
        held, received = _held_for(sock, request[:10])  # and a third one that never ends its headers
    assert received.startswith(b"HTTP/1.1 408") and held <= LATE_S, (held, received)


def test_blank_lines_between_requests_do_not_hold_a_connection(server: int) -> None:
    """Blank lines start no request, but each one stopped uvicorn's keep-alive timer."""
    with socket.create_connection(("127.0.0.1", server), timeout=GIVE_UP_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _status(sock) == 200
        held, received = _held_for(sock, b"\r\n" * 1000)
    assert received.startswith(b"HTTP/1.1 408") and held <= LATE_S, (held, received)


def test_clients_are_answered_while_many_connections_trickle(server: int) -> None:
    socks = [socket.create_connection(("127.0.0.1", server), timeout=GIVE_UP_S) for _ in range(50)]
    try:
        for sock in socks:
            sock.sendall(HEADERS[:20])
        chat = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"http://127.0.0.1:{server}/v1/chat/completions", json=chat, timeout=10)
        assert answer.status_code == 200, answer.text
        # Each one cut at its deadline (waited for, not slept: a loaded machine is slow, not wrong).
        assert all(select.select([sock], [], [], GIVE_UP_S)[0] and sock.recv(12) == b"HTTP/1.1 408" for sock in socks)
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    ("path", "length", "status"),
    [("/v1/nope", 100_000, 404), ("/v1/chat/completions", 10**12, 413)],
    ids=["unknown-route", "declared-too-large"],
)
def test_a_body_answered_before_it_arrived_cannot_trickle_for_ever(
    server: int, path: str, length: int, status: int
) -> None:
    """The gateway answers some requests without reading their bodies; uvicorn then reads on, untimed."""
    head = b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server), timeout=GIVE_UP_S) as sock:
        sock.sendall(head % (path.encode(), length))
        assert _status(sock) == status  # answered at once; then the body trickles on
        held, received = _held_for(sock, b"{" * 1000)
    assert received == b"<closed>" and TIMEOUT_S * 0.9 <= held <= LATE_S, (held, received)


def test_a_connection_that_sends_its_whole_body_after_an_early_answer_is_kept(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=GIVE_UP_S) as sock:
        sock.sendall(b"POST /v1/nope HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        assert _status(sock) == 404
        time.sleep(TIMEOUT_S * 1.2)  # longer than any deadline: an idle kept-alive connection is uvicorn's to time
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _status(sock) == 200
