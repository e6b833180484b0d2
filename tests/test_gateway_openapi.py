"""The gateway's OpenAPI schema lists every endpoint with its request and response models, and the app's
state is one object that handlers read (no closures)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from sizewise.catalog.schema import CatalogSpec
from sizewise.gateway.app import HANDLERS, GatewayState, create_app

MODEL = {
    "name": "m",
    "backend": "openai",
    "context_window": 4096,
    "settings": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    app = create_app(CatalogSpec.model_validate({"models": [MODEL], "gateway": {"log_url": "none"}}))
    assert isinstance(app.state.gateway, GatewayState)
    with TestClient(app) as client:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        return dict(response.json())


def _ref(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    name = ref.removeprefix("#/components/schemas/")
    return dict(schema["components"]["schemas"][name])


def test_every_endpoint_is_in_the_schema(schema: dict[str, Any]) -> None:
    paths = {path.replace(":path}", "}") for path in HANDLERS}  # a path convertor is not part of the schema
    assert set(schema["paths"]) == paths
    feedback = schema["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "score" in feedback["properties"]
    assert paths >= {"/v1/chat/completions", "/v1/models", "/healthz", "/metrics", "/v1/messages", "/v1/route"}
    assert paths >= {"/v1/models/{model_id}", "/v1/embeddings", "/v1/messages/count_tokens"}
    assert set(schema["paths"]["/v1/chat/completions"]) == {"post"}


def test_chat_request_body_is_the_validated_model(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    body = _ref(schema, operation["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert {"model", "messages", "max_tokens", "stream", "temperature"} <= set(body["properties"])
    assert body["required"] == ["messages"]
    message = _ref(schema, body["properties"]["messages"]["items"]["$ref"])  # nested models resolve too
    assert "role" in message["properties"]


def test_responses_name_their_models(schema: dict[str, Any]) -> None:
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    answer = _ref(schema, chat["200"]["content"]["application/json"]["schema"]["$ref"])
    assert {"id", "choices", "usage", "sizewise"} <= set(answer["properties"])
    assert "text/event-stream" in chat["200"]["content"]
    assert {"400", "401", "413", "502"} <= set(chat)
    error = _ref(schema, chat["502"]["content"]["application/json"]["schema"]["$ref"])
    assert "error" in error["properties"]
    models = schema["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "data" in _ref(schema, models["$ref"])["properties"]
    health = schema["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "workers" in _ref(schema, health["$ref"])["properties"]
