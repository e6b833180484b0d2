"""Request validation for ``POST /v1/chat/completions`` (pydantic, OpenAI's field names and types).

Unknown top-level fields are kept and passed through to upstreams that understand them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from starlette.requests import ClientDisconnect, Request

from sizewise.core.chat import ChatRequest
from sizewise.gateway.errors import GatewayError, from_validation
from sizewise.policy.types import RequestContext

#: Fields handled here; everything else a client sends is passed through in ``ChatRequest.extra``.
_KNOWN = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "seed",
    "user",
    "logprobs",
}

#: Fields read here that upstreams get as the client sent them (through ``ChatRequest.extra``).
_FORWARDED = ("max_completion_tokens", "n", "stream_options", "user")

#: Upper bounds for client integers: a 400-digit ``max_tokens`` is a 400 here, not an overflow later
#: (cost arithmetic, a 64-bit database column, an upstream's own int32).
MAX_TOKENS = 2**31 - 1
INT64 = 2**63

#: Content part types: OpenAI's chat API and the image/audio spellings of its Responses API.
PART_TYPES = ("text", "image_url", "input_image", "image", "input_audio", "audio", "file", "refusal")


def message_limit(value: Any, info: ValidationInfo) -> Any:
    """``messages`` within ``gateway.max_messages`` (pydantic's validation context), checked before the
    messages themselves are validated, so a flood of tiny messages costs a len(), not a model each."""
    limit = (info.context or {}).get("max_messages")
    if limit is not None and isinstance(value, list) and len(value) > limit:
        raise ValueError(f"too many messages: {len(value)}, at most {limit} (gateway.max_messages)")
    return value


class Message(BaseModel):
    """One chat message; content is a string or a list of typed parts (text, image_url, ...)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _known_parts(cls, value: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        for index, part in enumerate(value if isinstance(value, list) else []):
            kind = part.get("type")
            if kind not in PART_TYPES:
                raise ValueError(f"part {index} has unsupported type {kind!r}; use one of {', '.join(PART_TYPES)}")
            if kind == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"part {index} of type 'text' needs a string 'text'")
        return value

    @model_validator(mode="after")
    def _content_given(self) -> Message:
        if self.content is None and self.role != "assistant":  # only an assistant turn (tool calls) may omit it
            raise ValueError(f"a {self.role} message needs 'content'")
        return self


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat completion request, as far as sizewise reads it."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(default="sizewise", min_length=1)
    messages: list[Message] = Field(min_length=1)
    # strict: JSON true is not the number 1, and "yes" or 1 is not true.
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    n: int = Field(default=1, ge=1, le=128, strict=True)
    stream: bool = Field(default=False, strict=True)
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-INT64, lt=INT64, strict=True)
    user: str | None = None
    logprobs: bool = Field(default=False, strict=True)

    @field_validator("messages", mode="before")
    @classmethod
    def _not_too_many(cls, value: Any, info: ValidationInfo) -> Any:
        return message_limit(value, info)

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[Message]) -> list[Message]:
        if not any(message.content for message in value):
            raise ValueError("the prompt is empty: every message has empty content")
        return value

    @model_validator(mode="after")
    def _finite_numbers(self) -> ChatCompletionRequest:
        # JSON NaN, Infinity and 1e400 parse as non-finite floats in pass-through fields; no upstream
        # accepts them back (the call would fail as a 502 instead of a 400 here).
        pending: list[Any] = [self.model_extra, self.stream_options]
        for message in self.messages:
            pending += [message.model_extra, message.content]
        while pending:
            value = pending.pop()
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("numbers must be finite (NaN, Infinity and 1e400 are not)")
            if isinstance(value, dict):
                pending.extend(value.values())
            elif isinstance(value, list):
                pending.extend(value)
        return self

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> ChatCompletionRequest:
        # OpenAI's own check (a 400 from any upstream); here it is one for every model, local ones included.
        extra = self.model_extra or {}
        choice, tools = extra.get("tool_choice"), extra.get("tools")
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            name = choice["function"].get("name")
            names = [t.get("function", {}).get("name") for t in tools or [] if isinstance(t, dict)]
            if name not in names:
                raise ValueError(f"tool_choice names function {name!r}, which is not in tools")
        return self

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        if value == "" or (isinstance(value, list) and "" in value):
            raise ValueError("a stop sequence must not be empty")
        return value

    def to_chat_request(self) -> ChatRequest:
        """The backend-facing request."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        extra = {k: v for k, v in (self.model_extra or {}).items() if k not in _KNOWN}
        # Read here, and still passed through as the client sent them (n, user, stream_options, and
        # max_completion_tokens, which must not become max_tokens upstream).
        extra.update((name, getattr(self, name)) for name in _FORWARDED if name in self.model_fields_set)
        return ChatRequest(
            # As sent: an assistant turn's ``content: null`` beside its tool_calls stays null.
            messages=[m.model_dump(exclude_unset=True) for m in self.messages],
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
            logprobs=self.logprobs,
            extra=extra,
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read chunk by chunk; 413 as soon as it passes ``limit`` bytes (or says it will),
    so an oversized upload costs at most ``limit`` bytes of memory and is never parsed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
    except ClientDisconnect:  # gone mid-upload: a disconnect (499 in the log), not a server error
        raise GatewayError(499, "the client closed the connection before its body was sent", "client_closed") from None
    return bytes(body)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"request body larger than {limit} bytes (gateway.max_body_bytes)", "body_too_large")


async def parse_request(request: Request, max_body_bytes: int, max_messages: int) -> ChatCompletionRequest:
    """Read and validate a chat request within the gateway's limits; a :class:`GatewayError` otherwise."""
    raw = await read_body(request, max_body_bytes)
    try:
        return ChatCompletionRequest.model_validate_json(raw, context={"max_messages": max_messages})
    except ValidationError as error:
        raise from_validation(error) from None


def max_latency_header(headers: Mapping[str, str]) -> float | None:
    """The request's latency target from header ``x-sizewise-max-latency-ms`` (None when absent)."""
    raw = headers.get("x-sizewise-max-latency-ms")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise GatewayError(400, "header x-sizewise-max-latency-ms must be a number", "invalid_header") from None
    if not math.isfinite(value) or value <= 0:
        raise GatewayError(400, "header x-sizewise-max-latency-ms must be positive", "invalid_header")
    return value


def request_context(
    request: Request, chat: ChatCompletionRequest, *, stream: bool, api_key: str | None, request_id: str
) -> RequestContext:
    """The engine's view of a validated chat request (chat completions, /v1/messages, /v1/route): the body
    plus what its headers say (``x-sizewise-max-latency-ms``, ``x-sizewise-session-id``)."""
    from sizewise.serve.context import build_context

    return build_context(
        chat.to_chat_request(),
        model_field=chat.model,
        stream=stream,
        user=chat.user,
        api_key=api_key,
        request_id=request_id,
        max_latency_ms=max_latency_header(request.headers),
        session_id=request.headers.get("x-sizewise-session-id"),
    )
