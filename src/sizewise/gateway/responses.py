"""What the gateway answers: routing headers, the completion body, errors by exception, and the
response models that the OpenAPI schema (``/openapi.json``) describes."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field

from sizewise.backends.base import ChatResult
from sizewise.errors import UnknownModelError, UnknownNameError
from sizewise.gateway.errors import GatewayError
from sizewise.policy.types import Decision, RequestRejected
from sizewise.serve.call import AllModelsFailed

JSON = "application/json"


def decision_headers(decision: Decision, request_id: str) -> dict[str, str]:
    """The ``x-sizewise-*`` headers of an answer (what was decided) and its request id."""
    return {
        "x-sizewise-model": decision.model or "",
        "x-sizewise-score": "" if decision.score is None else f"{decision.score:.6g}",
        "x-sizewise-threshold": "" if decision.threshold is None else f"{decision.threshold:.6g}",
        "x-sizewise-policy": decision.policy,
        "x-sizewise-fallback": decision.fallback_from or "",
        "x-sizewise-session": decision.session or "",  # what session affinity did (new, same, kept...)
        "x-request-id": request_id,
    }


def error_status(error: Exception) -> GatewayError:
    """The client-facing error of a foreseen failure (status, message, code, param)."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, RequestRejected):
        return GatewayError(error.status, error.message, error.code, error.param)
    if isinstance(error, UnknownModelError | UnknownNameError):
        return GatewayError(404, str(error), "model_not_found", "model")
    if isinstance(error, AllModelsFailed):
        if error.status is not None:  # every model refused the request itself: the client's to fix
            return GatewayError(error.status, f"the request was refused: {error}", "invalid_request")
        return GatewayError(502, f"every model failed: {error}", "upstream_error")
    return GatewayError(400, str(error), "invalid_request")


def answer_message(result: ChatResult) -> dict[str, Any]:
    """The answer's OpenAI ``message``: content (null when the model answered only with tool calls or a
    refusal, or the upstream said null), ``tool_calls``, and the upstream message's other fields as sent."""
    others = result.upstream.get("message") or {}
    message: dict[str, Any] = {"role": "assistant", **others, "content": result.text}
    if not result.text and (result.tool_calls or others.get("refusal") or ("content" in others)):
        message["content"] = None
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    return message


def completion_body(result: ChatResult, decision: Decision, request_id: str, *, logprobs: bool = True) -> bytes:
    """An OpenAI ``chat.completion`` object with the decision in ``sizewise``.

    The upstream's ``id``, ``created``, ``system_fingerprint``, logprobs object and choices past the first
    (``n > 1``) are kept as it sent them; ``logprobs=False`` (the client did not ask; a cascade's scorer did)
    leaves the logprobs out."""
    upstream = result.upstream
    choice = {
        "index": 0,
        "message": answer_message(result),
        "logprobs": upstream.get("logprobs") if logprobs else None,
        "finish_reason": result.finish_reason,
    }
    body: dict[str, Any] = {
        "id": upstream.get("id") or f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": upstream.get("created") or int(time.time()),
        "model": decision.model or result.model,
        **{k: upstream[k] for k in ("system_fingerprint", "service_tier") if k in upstream},
        "choices": [choice, *(upstream.get("choices") or [])[1:]],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
        "sizewise": decision.to_dict(),
    }
    return json.dumps(body).encode()


def model_entry(name: str) -> dict[str, Any]:
    """One model in OpenAI's shape with Anthropic's fields beside (``type``, ``display_name``, ``created_at``),
    so both clients' ``models.list()`` read it."""
    anthropic = {"type": "model", "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
    return {"id": name, "object": "model", "created": 0, "owned_by": "sizewise", **anthropic}


def model_list(names: list[str]) -> bytes:
    """The ``/v1/models`` body (encoded once per app: it never changes); Anthropic's paging fields too."""
    data = [model_entry(name) for name in names]
    pages = {"has_more": False, "first_id": names[0] if names else None, "last_id": names[-1] if names else None}
    return json.dumps({"object": "list", "data": data, **pages}).encode()


# -- response models: documentation only (the handlers write their bodies themselves, for speed) --------------
class AssistantMessage(BaseModel):
    """The answer's message."""

    role: str = "assistant"
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(BaseModel):
    """One answer (``n`` of them when the client asked an upstream for ``n``)."""

    index: int
    message: AssistantMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: str


class Usage(BaseModel):
    """Token counts as the answering model reported them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """OpenAI's ``chat.completion``; streams send ``chat.completion.chunk`` events instead (SSE)."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    sizewise: dict[str, Any] = Field(description="the decision: policy, model, score, threshold, steps, filters")


class ModelEntry(BaseModel):
    """A name the ``model`` field accepts: a catalog model, ``sizewise`` or a policy pattern."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "sizewise"


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: str = "list"
    data: list[ModelEntry]


class Health(BaseModel):
    """``GET /healthz``."""

    status: str
    models: int
    workers: dict[str, Any] = Field(description="state of each local model's worker process")


class ErrorDetail(BaseModel):
    """OpenAI's error shape."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error the gateway answers."""

    error: ErrorDetail
