"""The gateway's OpenAPI schema (``GET /openapi.json``): every endpoint with its request and response models.

The handlers read their requests themselves (the chat body within ``gateway.max_body_bytes``, validated by
:class:`~sizewise.gateway.schemas.ChatCompletionRequest`), so FastAPI is given the request body's schema
here rather than a parameter to parse; responses are documented by the models of
:mod:`sizewise.gateway.responses`.

The app serves the handlers as plain Starlette routes and FastAPI builds the schema from ``APIRoute``
descriptions of the same handlers: an ``APIRoute`` costs about 20 us more per request (its dependency
solving: 30 vs 10 us in-process, FastAPI 0.165), and the gateway adds about 1.5 ms in all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from sizewise.gateway.anthropic import AnthropicRequest, CountTokensRequest
from sizewise.gateway.embeddings import EmbeddingRequest
from sizewise.gateway.feedback import FeedbackRequest
from sizewise.gateway.responses import ChatCompletion, ErrorBody, Health, ModelEntry, ModelList
from sizewise.gateway.schemas import ChatCompletionRequest

_REQUEST_REF = "#/components/schemas/ChatCompletionRequest"
#: Request bodies the handlers validate themselves, by component name.
_REQUESTS: dict[str, type[BaseModel]] = {
    "ChatCompletionRequest": ChatCompletionRequest,
    "AnthropicRequest": AnthropicRequest,
    "CountTokensRequest": CountTokensRequest,
    "EmbeddingRequest": EmbeddingRequest,
}


def _body(name: str) -> dict[str, Any]:
    """``openapi_extra`` for a request body validated by the handler with component ``name``."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": _ref(name)}}}}}


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": "an OpenAI-style error"} for status in statuses}


#: Keyword arguments of ``add_api_route`` per path: summary, response models, the chat request body.
ROUTE_DOCS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "summary": "Create a chat completion, routed to the smallest good-enough model",
        "response_model": None,
        "responses": {
            200: {
                "model": ChatCompletion,
                "description": "the answer (JSON), or server-sent `chat.completion.chunk` events when `stream`",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_errors(400, 401, 404, 413, 429, 499, 502),
        },
        "openapi_extra": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": _REQUEST_REF}}}}
        },
    },
    "/v1/models": {
        "summary": "The names the model field accepts",
        "response_model": None,
        "responses": {200: {"model": ModelList, "description": "catalog models and policies"}, **_errors(401)},
    },
    "/healthz": {
        "summary": "Liveness and the local workers' state",
        "response_model": None,
        "responses": {200: {"model": Health, "description": "the gateway is up"}},
    },
    "/readyz": {
        "summary": "Readiness: 200 once serving needs no cold start, 503 while `serve --warm` loads models",
        "response_model": None,
        "responses": {200: {"description": "ready"}, 503: {"description": "warming"}},
    },
    "/v1/messages": {
        "summary": "Anthropic Messages API, routed like a chat completion",
        "response_model": None,
        "responses": {
            200: {
                "description": "an Anthropic `message` (JSON), or Anthropic's server-sent events when `stream`",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_errors(400, 401, 404, 413, 429, 502),
        },
        "openapi_extra": _body("AnthropicRequest"),
    },
    "/v1/messages/count_tokens": {
        "summary": "Anthropic's token count: the gateway's estimate (characters / 4), no model is called",
        "response_model": None,
        "responses": {200: {"description": '`{"input_tokens": N}`'}, **_errors(400, 401, 413)},
        "openapi_extra": _body("CountTokensRequest"),
    },
    "/v1/models/{model_id:path}": {
        "summary": "One name the model field accepts",
        "response_model": None,
        "responses": {200: {"model": ModelEntry, "description": "the model"}, **_errors(401, 404)},
        "openapi_extra": {"parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {}}]},
    },
    "/v1/embeddings": {
        "summary": "Embeddings from the local MiniLM or a catalog embedding model",
        "response_model": None,
        "responses": {200: {"description": "OpenAI's embedding list"}, **_errors(400, 401, 404, 502)},
        "openapi_extra": _body("EmbeddingRequest"),
    },
    "/v1/route": {
        "summary": "The routing decision for a chat request, without calling a model",
        "response_model": None,
        "responses": {200: {"description": "the chosen model and fallbacks"}, **_errors(400, 401, 404, 429)},
        "openapi_extra": _body("ChatCompletionRequest"),
    },
    "/v1/feedback": {
        "summary": "Rate an answer by its request id (score in [0, 1] or thumbs), optionally with a reference",
        "response_model": None,
        "responses": {200: {"description": "the stored outcome"}, **_errors(400, 401, 404, 409, 503)},
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": FeedbackRequest.model_json_schema()}},
            }
        },
    },
    "/v1/audio/transcriptions": {
        "summary": "OpenAI's transcription API: the local Whisper model, escalating unsure transcripts to a remote one",
        "response_model": None,
        "responses": {
            200: {"description": "the transcript in `response_format` (json, text, verbose_json, srt, vtt)"},
            **_errors(400, 401, 404, 413, 502, 503),
        },
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file", "model"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "model": {"type": "string"},
                                "language": {"type": "string"},
                                "prompt": {"type": "string"},
                                "response_format": {
                                    "type": "string",
                                    "enum": ["json", "text", "verbose_json", "srt", "vtt"],
                                },
                                "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                            },
                        }
                    }
                },
            }
        },
    },
    "/metrics": {
        "summary": "Prometheus metrics",
        "response_model": None,
        "responses": {
            200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(400, 401, 403),
        },
        # With gateway.state_url every replica's series (label replica); local: this process's alone.
        "openapi_extra": {
            "parameters": [{"name": "scope", "in": "query", "schema": {"type": "string", "enum": ["all", "local"]}}]
        },
    },
}


def install_schema(app: FastAPI, handlers: Mapping[str, tuple[Callable[..., Any], str]]) -> None:
    """Make ``app.openapi()`` describe ``handlers`` (path -> (handler, method)) with :data:`ROUTE_DOCS`."""
    routes = [
        APIRoute(path, handler, methods=[method], **ROUTE_DOCS[path]) for path, (handler, method) in handlers.items()
    ]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _REQUESTS.items():
                request = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(request.pop("$defs", {}))
                components[name] = request
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
