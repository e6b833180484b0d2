"""Cheap denial of service and open endpoints (issue #16, items 5 and 6), over real HTTP on 127.0.0.1.

Body size and message count are limited before any parsing; client integers are bounded; metric
label values stay bounded whatever model names clients send; a ``model`` field cannot probe the
server's file system; ``/metrics`` and ``/v1/models`` need the API key when keys are on.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.gateway.auth import hash_key

OK = [{"role": "user", "content": "hi"}]
LIMIT = 64 * 1024
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def _models(upstream: FakeUpstream) -> list[dict]:
    window = {"context_window": 65536}
    return [
        fake_model("small", "ok-s", 1.0, upstream.base_url, **window),
        fake_model("big", "ok-b", 2.0, upstream.base_url, **window),
    ]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(router directory holding ``inside.zip``, a folder beside it holding ``outside.zip``): both real routers."""
    from learned_helpers import planted_pair
    from sizewise.routers.base import make_router

    root = tmp_path_factory.mktemp("routers")
    router_dir, other = root / "routers", root / "elsewhere"
    router_dir.mkdir()
    other.mkdir()
    router = make_router("random").fit(planted_pair(40))
    router.save(router_dir / "inside.zip")
    router.save(other / "outside.zip")
    (router_dir / "scorer-x").mkdir()  # a folder a '..' in a cascade scorer name could climb out of
    return router_dir, other


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, dirs: tuple[Path, Path]) -> Iterator[GatewayServer]:
    settings = {
        "log_url": "none",
        "router": "heuristic",
        "router_dir": str(dirs[0]),
        "max_body_bytes": LIMIT,
        "max_messages": 8,
    }
    with GatewayServer({"models": _models(upstream), "gateway": settings}) as gw:
        yield gw


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one HTTP/1.1 response with a content-length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head[9:12]), json.loads(body[:length])


def _error(status: int, body: dict, expected: int, code: str) -> str:
    assert status == expected, body
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def test_a_streamed_body_over_the_limit_gets_413_before_the_upload_ends(gateway: GatewayServer) -> None:
    # Chunked upload, never finished: the old gateway read the whole body before looking at it, so it
    # would wait here for ever (the 100 MB bodies of the issue all sat in memory at once).
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        head = (
            f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        piece = b'{"messages": [{"role": "user", "content": "' + b"a" * 16_000
        for _ in range(2 * LIMIT // len(piece) + 1):
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            piece = b"a" * 16_000
        status, body = _read_response(sock)
    assert str(LIMIT) in _error(status, body, 413, "body_too_large")


def test_a_declared_length_over_the_limit_gets_413_without_sending_it(gateway: GatewayServer) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {10**11}\r\n\r\n"
        sock.sendall(head.encode())
        status, body = _read_response(sock)
    _error(status, body, 413, "body_too_large")


def test_a_client_gone_mid_upload_is_logged_as_a_disconnect(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = {"log_url": f"sqlite:///{tmp_path / 'log.sqlite'}"}
    with GatewayServer({"models": _models(upstream), "gateway": settings}) as gw:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
            sock.sendall(head.encode() + b'{"messages": [')
        deadline = time.monotonic() + 10
        while not (rows := gw.rows()) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [row["status"] for row in rows] == [499]  # was a 500 (an unexpected ClientDisconnect)


def test_a_body_under_the_limit_is_answered(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="small", messages=[{"role": "user", "content": "b " * 20_000}])
    assert answer.choices[0].message.content.startswith("echo:")


def test_too_many_messages_is_a_400(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="x", max_retries=0)
    client.chat.completions.create(model="small", messages=OK * 8)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="small", messages=OK * 9)
    assert caught.value.body["param"] == "messages" and "at most 8" in caught.value.body["message"]


def test_the_default_message_limit(upstream: FakeUpstream) -> None:
    with GatewayServer({"models": _models(upstream), "gateway": {"log_url": "none"}}) as gw:
        response = httpx.post(gw.url + "/chat/completions", json={"model": "small", "messages": OK * 2049}, timeout=30)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "messages" and "at most 2048" in error["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", "1" + "0" * 400),
        ("max_completion_tokens", "1" + "0" * 400),
        ("seed", "1" + "0" * 400),
        ("seed", str(-(2**63) - 1)),
    ],
)
def test_huge_numbers_are_a_400(gateway: GatewayServer, field: str, value: str) -> None:
    body = '{"model": "small", "messages": [{"role": "user", "content": "hi"}], "' + field + '": ' + value + "}"
    response = httpx.post(gateway.url + "/chat/completions", content=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


@pytest.mark.parametrize("value", ["1e400", "-1e400", "NaN", "Infinity"])
def test_non_finite_numbers_in_pass_through_fields_are_a_400(gateway: GatewayServer, value: str) -> None:
    # They parse as inf/nan; forwarded, every upstream call failed to encode them: a 502, not a 400.
    for extra in (f'"metadata": {{"a": [{value}]}}', f'"tools": [{{"x": {value}}}]'):
        body = '{"model": "small", "messages": [{"role": "user", "content": "hi"}], ' + extra + "}"
        response = httpx.post(gateway.url + "/chat/completions", content=body, timeout=10)
        assert response.status_code == 400, response.text
        assert "finite" in response.json()["error"]["message"]


def _series(gateway: GatewayServer, name: str, headers: dict | None = None) -> list[str]:
    text = httpx.get(gateway.url.removesuffix("/v1") + "/metrics", headers=headers, timeout=10).text
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_metric_series_stay_bounded_whatever_model_names_clients_send(gateway: GatewayServer) -> None:
    before = len(_series(gateway, "sizewise_requests_total"))
    with httpx.Client(timeout=10) as http:
        for i in range(60):
            ok = http.post(gateway.url + "/chat/completions", json={"model": f"router-heuristic-0.{i}", "messages": OK})
            assert ok.status_code == 200, ok.text
            http.post(gateway.url + "/chat/completions", json={"model": f"nonsense-{i}", "messages": OK})
    series = _series(gateway, "sizewise_requests_total")
    assert len(series) - before <= 3, series  # one router-* series, one for the 404s
    assert any('policy="router-*"' in line and 'status="200"' in line for line in series), series
    assert not any("nonsense" in line or "heuristic-0." in line for line in series)


def _router_error(gateway: GatewayServer, model: str) -> tuple[int, str]:
    response = httpx.post(gateway.url + "/chat/completions", json={"model": model, "messages": OK}, timeout=10)
    message = response.json()["error"]["message"] if response.status_code != 200 else ""
    return response.status_code, message


def test_a_router_file_in_the_router_directory_is_served_by_name(gateway: GatewayServer) -> None:
    response = httpx.post(gateway.url + "/chat/completions", json={"model": "router-inside-0.5", "messages": OK})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("form", ["{dir}/{name}.zip", "../elsewhere/{name}", "../elsewhere/{name}.zip"])
def test_a_model_field_cannot_tell_whether_a_file_exists(
    gateway: GatewayServer, dirs: tuple[Path, Path], form: str
) -> None:
    # outside.zip is a real router beside the router directory; missing.zip does not exist.
    exists = form.format(dir=dirs[1], name="outside")
    missing = form.format(dir=dirs[1], name="missing")
    status_a, message_a = _router_error(gateway, f"router-{exists}-0.5")
    status_b, message_b = _router_error(gateway, f"router-{missing}-0.5")
    assert status_a == status_b == 404
    assert message_a.replace("outside", "X") == message_b.replace("missing", "X")
    assert str(dirs[0]) not in message_a  # nor where the router directory is


def test_a_cascade_scorer_name_is_not_a_path(gateway: GatewayServer, dirs: tuple[Path, Path]) -> None:
    exists, missing = (
        _router_error(gateway, f"cascade-x/../../elsewhere/{name}:0.5") for name in ("outside", "missing")
    )
    assert exists[0] == missing[0] == 400
    assert exists[1].replace("outside", "X") == missing[1].replace("missing", "X")


@pytest.fixture(scope="module")
def keyed(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    keys = [
        {"name": "team-a", "sha256": hash_key("s3cret")},
        {"name": "ops", "sha256": hash_key("0ps"), "dashboard": "all"},
    ]
    settings = {"log_url": "none", "api_keys": keys}
    with GatewayServer({"models": _models(upstream), "gateway": settings}) as gw:
        yield gw


def test_models_need_the_key_when_keys_are_on(keyed: GatewayServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url, api_key="nope", max_retries=0).models.list()
    names = [m.id for m in openai.OpenAI(base_url=keyed.url, api_key="s3cret", max_retries=0).models.list()]
    assert "small" in names and "sizewise" in names
    bare = httpx.get(keyed.url + "/models", timeout=10)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "missing_api_key"


def test_metrics_need_the_key_when_keys_are_on(keyed: GatewayServer) -> None:
    url = keyed.url.removesuffix("/v1") + "/metrics"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer nope"}, timeout=10).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer s3cret"}, timeout=10).status_code == 403  # a client's key
    answer = httpx.get(url, headers={"authorization": "Bearer 0ps"}, timeout=10)  # an operator's key
    assert answer.status_code == 200 and "sizewise_requests" in answer.text


def test_healthz_stays_open_but_names_its_workers_to_an_operator_only(keyed: GatewayServer) -> None:
    """Which local models ran and when their workers restarted is usage: not for anyone who can reach the port."""
    url = keyed.url.removesuffix("/v1") + "/healthz"
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Bearer s3cret"}):
        answer = httpx.get(url, headers=headers, timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "ok" and "workers" not in answer.json()
    operator = httpx.get(url, headers={"authorization": "Bearer 0ps"}, timeout=10).json()
    assert operator["status"] == "ok" and "workers" in operator


def test_metrics_and_models_stay_open_without_keys(gateway: GatewayServer) -> None:
    assert httpx.get(gateway.url + "/models", timeout=10).status_code == 200
    assert httpx.get(gateway.url.removesuffix("/v1") + "/metrics", timeout=10).status_code == 200
