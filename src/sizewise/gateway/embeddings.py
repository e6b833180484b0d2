"""``POST /v1/embeddings`` in OpenAI's format: the local all-MiniLM-L6-v2 (:mod:`sizewise.embedding`) or a
catalog model of ``kind: embedding`` behind an OpenAI-compatible upstream (the request is passed through).

The local model gives 384 unit-length floats per input (texts beyond 256 tokens are truncated, as
sentence-transformers does); ``encoding_format: base64`` packs them as little-endian float32, which is
what the official ``openai`` client asks for by default. It reads text only (token-id inputs are a 400)
and has one size (``dimensions`` other than 384 is a 400: cutting MiniLM's vectors short is not a
smaller embedding, it is a worse one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from sizewise.errors import SizewiseError
from sizewise.gateway.endpoints import LOCAL_EMBEDDING, LOCAL_EMBEDDING_NAMES
from sizewise.gateway.errors import GatewayError, error_response, from_validation
from sizewise.gateway.responses import JSON
from sizewise.gateway.schemas import read_body

if TYPE_CHECKING:
    from sizewise.catalog.schema import ModelSpec
    from sizewise.gateway.state import GatewayState

#: OpenAI's own limit on inputs per request.
MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, strict=True)
    user: str | None = None


async def embeddings(request: Request) -> Response:
    """``POST /v1/embeddings``."""
    state: GatewayState = request.app.state.gateway
    try:
        state.keys.check(request.headers)
        raw = await read_body(request, state.settings.max_body_bytes)
        try:
            body = EmbeddingRequest.model_validate_json(raw)
        except ValidationError as error:
            raise from_validation(error) from None
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > MAX_INPUTS:
            raise GatewayError(400, f"input must hold 1 to {MAX_INPUTS} items", "invalid_value", "input")
        name = state.engine.aliases.get(body.model, body.model)
        if name in LOCAL_EMBEDDING_NAMES:
            answer = await _local(body, texts)
        else:
            answer = await _upstream(state, name, raw)
    except GatewayError as error:
        return error_response(error.status, error.message, error.code, error.param)
    return Response(json.dumps(answer).encode(), media_type=JSON)


async def _local(body: EmbeddingRequest, texts: list[Any]) -> dict[str, Any]:
    if not all(isinstance(text, str) for text in texts):
        raise GatewayError(400, f"{LOCAL_EMBEDDING} reads text: send strings, not token ids", "invalid_value", "input")
    if any(not text for text in texts):
        raise GatewayError(400, "input must not contain empty strings", "invalid_value", "input")
    if body.dimensions not in (None, 384):
        message = f"{LOCAL_EMBEDDING} has 384 dimensions; it cannot give {body.dimensions}"
        raise GatewayError(400, message, "invalid_value", "dimensions")
    try:
        vectors, tokens = await asyncio.to_thread(_encode, texts)  # numpy work: off the event loop
    except SizewiseError as error:  # the model is not installed here: the server's state, not the request's fault
        raise GatewayError(503, f"{LOCAL_EMBEDDING} is unavailable: {error}", "model_unavailable", "model") from None
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, body.encoding_format)}
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": LOCAL_EMBEDDING, "usage": usage}


def _encode(texts: list[str]) -> tuple[Any, int]:
    from sizewise.embedding import embed
    from sizewise.embedding.model import get_model

    # A request's texts: no progress line on the server's console, and neither cache. The caches are shared by
    # every client and the disk one outlives the process, so a text answered from them (twice as fast) would tell
    # any client that someone had embedded it, ever; and each new text would grow the file for good.
    vectors = embed(texts, cache=False, progress=False)
    tokens = sum(len(ids) for ids in get_model().token_ids(texts))
    return vectors, tokens


def _encoded(vector: Any, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return [float(x) for x in vector]


async def _upstream(state: GatewayState, name: str, raw: bytes) -> dict[str, Any]:
    """Pass the request to a catalog embedding model's upstream, under its upstream name."""
    spec = state.engine.by_name.get(name)
    if spec is None:
        if name in state.engine.unavailable:
            raise GatewayError(
                503, f"model {name!r} is unavailable: {state.engine.unavailable[name]}", "model_unavailable", "model"
            )
        known = ", ".join([LOCAL_EMBEDDING, *(s.name for s in state.engine.models if s.kind == "embedding")])
        raise GatewayError(404, f"unknown embedding model {name!r}; use one of: {known}", "model_not_found", "model")
    if spec.kind != "embedding" or spec.backend != "openai":
        message = (
            f"model {name!r} does not make embeddings (kind {spec.kind!r}); use {LOCAL_EMBEDDING} or an embedding model"
        )
        raise GatewayError(400, message, "model_not_suitable", "model")
    body = {**json.loads(raw), "model": spec.settings.get("model") or spec.name}
    backend = state.engine.backend(spec)  # its pooled httpx client, closed with the engine
    try:
        response = await backend.client.post("embeddings", json=body, headers=_headers(spec))  # type: ignore[attr-defined]
    except httpx.HTTPError as error:
        raise GatewayError(
            502, f"{name}: upstream unreachable: {error or type(error).__name__}", "upstream_error"
        ) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code >= 400 or not isinstance(answer, dict):
        status = response.status_code if 400 <= response.status_code < 500 else 502
        raise GatewayError(
            status, f"{name}: upstream answered {response.status_code}: {response.text[:200]}", "upstream_error"
        )
    return {**answer, "model": spec.name}


def _headers(spec: ModelSpec) -> dict[str, str]:
    headers = dict(spec.settings.get("headers") or {})
    variable = spec.settings.get("api_key_env")
    if variable and os.environ.get(variable):
        headers["Authorization"] = f"Bearer {os.environ[variable]}"
    return headers
