"""A web page on another origin must not make a user's gateway call models: browsers send "simple" cross-site
POSTs (``text/plain``, forms, ``FormData``) without asking first, and the gateway reads ``text/plain`` as JSON.
A real gateway on 127.0.0.1, a recording upstream that shows whether a model was called.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from fakes import GatewayServer
from recording_upstream import RecordingUpstream

CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "spend the budget"}]})
FRIEND = "http://localhost:3000"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, Any]]:
    with RecordingUpstream() as upstream:
        model = {"name": "m", "context_window": 8192, "location": "remote", "backend": "openai"}
        catalog = {
            "models": [{**model, "settings": {"base_url": upstream.base_url, "model": "m", "timeout_s": 5}}],
            "gateway": {"log_url": f"sqlite:///{tmp_path_factory.mktemp('log')}/log.sqlite", "cors_origins": [FRIEND]},
        }
        with GatewayServer(catalog) as gateway:
            yield gateway, upstream


@pytest.fixture
def gateway(servers: tuple[GatewayServer, Any]) -> GatewayServer:
    servers[1].bodies.clear()
    return servers[0]


@pytest.mark.parametrize(
    ("path", "kind", "body"),
    [
        ("/chat/completions", "text/plain", CHAT),
        ("/chat/completions", "application/x-www-form-urlencoded", CHAT),
        ("/embeddings", "text/plain", json.dumps({"model": "m", "input": "x"})),
        ("/audio/transcriptions", "multipart/form-data; boundary=b", "--b--\r\n"),
    ],
    ids=["chat-text-plain", "chat-form", "embeddings", "transcription-formdata"],
)
@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_a_foreign_page_cannot_post(
    gateway: GatewayServer, servers: tuple[GatewayServer, Any], origin: str, path: str, kind: str, body: str
) -> None:
    response = httpx.post(gateway.url + path, content=body, headers={"content-type": kind, "origin": origin})
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "cross_site_request"
    assert servers[1].bodies == []
    row = next(r for r in gateway.rows() if r["request_id"] == response.headers["x-request-id"])
    assert row["status"] == 403  # refused, and still in the request log


def test_a_rebound_name_is_not_the_same_origin(gateway: GatewayServer, servers: tuple[GatewayServer, Any]) -> None:
    """DNS rebinding: evil.example now resolves to 127.0.0.1, so Origin and Host name the same site."""
    port = gateway.url.split(":")[-1].split("/")[0]
    site = f"evil.example:{port}"
    headers = {"content-type": "text/plain", "origin": f"http://{site}", "host": site}
    response = httpx.post(gateway.url + "/chat/completions", content=CHAT, headers=headers)
    assert response.status_code == 403 and servers[1].bodies == []


@pytest.mark.parametrize("origin", [None, FRIEND, "same"])
def test_programs_the_same_origin_and_cors_origins_still_post(
    gateway: GatewayServer, servers: tuple[GatewayServer, Any], origin: str | None
) -> None:
    headers = {"content-type": "text/plain"}
    if origin is not None:
        headers["origin"] = gateway.url.removesuffix("/v1") if origin == "same" else origin
    response = httpx.post(gateway.url + "/chat/completions", content=CHAT, headers=headers)
    assert response.status_code == 200, response.text
    assert len(servers[1].bodies) == 1


def test_the_openai_client_and_cross_site_reads_are_unaffected(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
    models = httpx.get(gateway.url + "/models", headers={"origin": "https://evil.example"})
    assert models.status_code == 200  # a GET changes nothing, and the page cannot read it without CORS
