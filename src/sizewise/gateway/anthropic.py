"""Anthropic's Messages API (``POST /v1/messages``) translated to and from the chat-completions vocabulary.

A Messages request becomes an OpenAI chat body (system prompt first, ``tool_use`` blocks as assistant
``tool_calls``, ``tool_result`` blocks as ``tool`` messages, images as ``image_url`` data URLs, tools'
``input_schema`` as function ``parameters``), which is validated by the same schema as
``/v1/chat/completions`` and goes through the same decision and model call. The answer comes back as
Anthropic content blocks (``text``, ``tool_use``) with ``stop_reason`` and ``usage``; errors in Anthropic's
shape ``{"type": "error", "error": {"type", "message"}}``. Fields without an OpenAI counterpart
(``top_k``, ``thinking``, ``cache_control``, ...) are accepted and ignored, so Claude Code's requests pass.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from starlette.responses import Response

from sizewise.core.chat import ChatResult
from sizewise.core.decision import Decision
from sizewise.gateway.errors import GatewayError, from_validation
from sizewise.gateway.schemas import MAX_TOKENS, ChatCompletionRequest, message_limit

#: Anthropic's error ``type`` per HTTP status (``api_error`` for the rest).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}

#: OpenAI ``finish_reason`` -> Anthropic ``stop_reason`` (``stop`` is ``end_turn`` or ``stop_sequence``).
STOP_REASONS = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

#: Assistant blocks that carry nothing a chat-completions model can read back.
_SKIPPED = ("thinking", "redacted_thinking")


class AnthropicMessage(BaseModel):
    """One turn: ``user`` or ``assistant``, content a string or a list of typed blocks."""

    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class AnthropicRequest(BaseModel):
    """The Messages request, as far as sizewise reads it (unknown fields are ignored)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1, le=MAX_TOKENS, strict=True)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    metadata: dict[str, Any] | None = None
    stream: bool = Field(default=False, strict=True)
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None

    @field_validator("messages", mode="before")
    @classmethod
    def _not_too_many(cls, value: Any, info: ValidationInfo) -> Any:
        return message_limit(value, info)  # as for chat completions


class CountTokensRequest(AnthropicRequest):
    """``/v1/messages/count_tokens``: a Messages request without ``max_tokens``."""

    max_tokens: int = Field(default=1, ge=1, le=MAX_TOKENS, strict=True)


def parse_messages(
    raw: bytes, max_messages: int, model: type[AnthropicRequest] = AnthropicRequest
) -> tuple[AnthropicRequest, ChatCompletionRequest]:
    """The Messages request in ``raw`` and its chat-completions form, both validated; a :class:`GatewayError`
    (400) naming the first bad field otherwise."""
    try:
        body = model.model_validate_json(raw, context={"max_messages": max_messages})
    except ValidationError as error:
        raise from_validation(error) from None
    try:
        chat = ChatCompletionRequest.model_validate(to_openai(body), context={"max_messages": max_messages})
    except ValidationError as error:
        raise from_validation(error) from None
    return body, chat


def to_openai(body: AnthropicRequest) -> dict[str, Any]:
    """The OpenAI chat-completions body of a Messages request."""
    messages: list[dict[str, Any]] = []
    if body.system:
        messages.append({"role": "system", "content": _system_text(body.system)})
    for index, message in enumerate(body.messages):
        messages += _user(message, index) if message.role == "user" else [_assistant(message, index)]
    chat: dict[str, Any] = {"model": body.model, "messages": messages, "max_tokens": body.max_tokens}
    for name in ("temperature", "top_p", "stream"):
        if (value := getattr(body, name)) is not None:
            chat[name] = value
    if body.stop_sequences:
        chat["stop"] = body.stop_sequences
    user = (body.metadata or {}).get("user_id")
    if isinstance(user, str) and user:
        chat["user"] = user
    if body.tools:
        chat["tools"] = [_tool(tool, index) for index, tool in enumerate(body.tools)]
    if body.tool_choice:
        chat.update(_tool_choice(body.tool_choice))
    extra = body.model_extra or {}
    config: dict[str, Any] = extra["output_config"] if isinstance(extra.get("output_config"), dict) else {}
    output = config.get("format") or extra.get("output_format")  # output_format: the structured-outputs beta
    if output is not None:
        chat["response_format"] = _response_format(output)
    return chat


def _response_format(output: Any) -> dict[str, Any]:
    """Anthropic's structured output (``{"type": "json_schema", "schema": ...}``) as OpenAI's ``response_format``,
    so the capability filter sends it only to models that honour a schema."""
    if (
        not isinstance(output, dict)
        or output.get("type") != "json_schema"
        or not isinstance(output.get("schema"), dict)
    ):
        where = "output_config.format"
        raise GatewayError(
            400, f"{where}: expected {{'type': 'json_schema', 'schema': {{...}}}}", "invalid_value", where
        )
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": output["schema"], "strict": True}}


def _system_text(system: str | list[dict[str, Any]]) -> str:
    if isinstance(system, str):
        return system
    parts = []
    for index, block in enumerate(system):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise GatewayError(400, f"system.{index}: only text blocks are allowed", "invalid_value", "system")
        parts.append(block["text"])
    return "\n\n".join(parts)


def _user(message: AnthropicMessage, index: int) -> list[dict[str, Any]]:
    """A user turn: its ``tool_result`` blocks as ``tool`` messages (OpenAI wants them right after the
    assistant's calls), then the rest as one user message."""
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for number, block in enumerate(message.content):
        where = f"messages.{index}.content.{number}"
        if block.get("type") == "tool_result":
            text, images = _tool_result(block, where)
            tools.append({"role": "tool", "tool_call_id": _string(block, "tool_use_id", where), "content": text})
            parts += images  # a tool message holds text only: its images go to the user message after it
        else:
            parts.append(_part(block, where))
    if parts:
        tools.append({"role": "user", "content": parts})
    return tools


def _assistant(message: AnthropicMessage, index: int) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": "assistant", "content": message.content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for number, block in enumerate(message.content):
        where = f"messages.{index}.content.{number}"
        kind = block.get("type")
        if kind == "text":
            texts.append(_string(block, "text", where))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            name = _string(block, "name", where)
            calls.append(
                {
                    "id": _string(block, "id", where),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        elif kind not in _SKIPPED:
            raise GatewayError(
                400, f"{where}: block type {kind!r} is not supported in an assistant turn", "invalid_value", where
            )
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _part(block: dict[str, Any], where: str) -> dict[str, Any]:
    """A content part of a user message from an Anthropic block (text, image, document)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _string(block, "text", where)}
    if kind in ("image", "document"):
        source = block.get("source") or {}
        if source.get("type") == "text" and kind == "document":
            return {"type": "text", "text": _string(source, "data", where + ".source")}
        if source.get("type") == "url":
            url = _string(source, "url", where + ".source")
        elif source.get("type") == "base64":
            media = _string(source, "media_type", where + ".source")
            url = f"data:{media};base64,{_string(source, 'data', where + '.source')}"
        else:
            raise GatewayError(400, f"{where}.source: type must be base64 or url", "invalid_value", where)
        if kind == "image":
            return {"type": "image_url", "image_url": {"url": url}}
        return {"type": "file", "file": {"file_data": url, "filename": str(block.get("title") or "document")}}
    raise GatewayError(400, f"{where}: block type {kind!r} is not supported in a user turn", "invalid_value", where)


def _tool_result(block: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    """A ``tool_result``'s text (``is_error`` said in words) and its image parts."""
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for number, inner in enumerate(content):
            part = _part(inner, f"{where}.content.{number}")
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
    elif content is not None:
        raise GatewayError(400, f"{where}.content: expected a string or a list of blocks", "invalid_value", where)
    text = "\n".join(texts)
    return (f"Error: {text}" if block.get("is_error") else text), images


def _tool(tool: dict[str, Any], index: int) -> dict[str, Any]:
    where = f"tools.{index}"
    if tool.get("type") not in (None, "custom"):  # server tools (web search, bash, ...) run at Anthropic
        raise GatewayError(
            400,
            f"{where}: tool type {tool['type']!r} is not supported; give name and input_schema",
            "invalid_value",
            where,
        )
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise GatewayError(400, f"{where}: input_schema must be a JSON schema object", "invalid_value", where)
    function: dict[str, Any] = {"name": _string(tool, "name", where), "parameters": schema}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    kind = choice.get("type")
    mapped: dict[str, Any]
    if kind in ("auto", "none"):
        mapped = {"tool_choice": kind}
    elif kind == "any":
        mapped = {"tool_choice": "required"}
    elif kind == "tool":
        mapped = {"tool_choice": {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}}
    else:
        raise GatewayError(400, "tool_choice.type must be auto, any, tool or none", "invalid_value", "tool_choice")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        mapped["parallel_tool_calls"] = False
    return mapped


def _string(block: dict[str, Any], key: str, where: str) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise GatewayError(400, f"{where}: {key!r} must be a string", "invalid_value", where)
    return value


# -- the answer ------------------------------------------------------------------------------------------
def stop_reason(finish_reason: str | None, upstream: dict[str, Any], stops: list[str] | None) -> tuple[str, str | None]:
    """(``stop_reason``, ``stop_sequence``). OpenAI's ``stop`` does not say whether a stop sequence ended the
    answer; an upstream that does (vLLM's ``stop_reason``, SGLang's ``matched_stop``) is believed."""
    mapped = STOP_REASONS.get(finish_reason or "stop")
    if mapped is not None:
        return mapped, None
    choice = (upstream.get("choices") or [{}])[0] if isinstance(upstream.get("choices"), list) else {}
    for matched in (choice.get("stop_reason"), choice.get("matched_stop"), upstream.get("stop_reason")):
        if isinstance(matched, str) and matched in (stops or []):
            return "stop_sequence", matched
    return "end_turn", None


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's ``arguments`` (a JSON string) as the ``input`` object Anthropic clients expect."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        value = None
    # A model's malformed arguments are kept for the client to see, not dropped.
    return value if isinstance(value, dict) else {"arguments": arguments}


def message_body(result: ChatResult, decision: Decision, request_id: str, stops: list[str] | None) -> bytes:
    """An Anthropic ``message`` object with the decision in ``sizewise``."""
    content: list[dict[str, Any]] = []
    if result.text or not result.tool_calls:
        content.append({"type": "text", "text": result.text})
    for call in result.tool_calls or []:
        function = call.get("function") or {}
        block = {"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or ""}
        content.append({**block, "input": tool_input(function.get("arguments"))})
    finish = "tool_calls" if result.tool_calls and result.finish_reason == "stop" else result.finish_reason
    reason, sequence = stop_reason(finish, result.upstream, stops)
    body = {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": decision.model or result.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": {"input_tokens": result.prompt_tokens, "output_tokens": result.completion_tokens},
        "sizewise": decision.to_dict(),
    }
    return json.dumps(body).encode()


def error_payload(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error body."""
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An Anthropic-style JSON error response."""
    body = json.dumps(error_payload(status, message)).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)
