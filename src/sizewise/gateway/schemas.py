"""Request validation for ``POST /v1/chat/completions`` (pydantic, OpenAI's field names and types).

Unknown top-level fields are kept and passed through to upstreams that understand them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sizewise.backends.base import ChatRequest

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


#: Content part types: OpenAI's chat API and the image/audio spellings of its Responses API.
PART_TYPES = ("text", "image_url", "input_image", "image", "input_audio", "audio", "file", "refusal")


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
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    n: int = Field(default=1, ge=1, strict=True)
    stream: bool = Field(default=False, strict=True)
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, strict=True)
    user: str | None = None
    logprobs: bool = Field(default=False, strict=True)

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[Message]) -> list[Message]:
        if not any(message.content for message in value):
            raise ValueError("the prompt is empty: every message has empty content")
        return value

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
        return ChatRequest(
            messages=[m.model_dump(exclude_none=True) for m in self.messages],
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
            logprobs=self.logprobs,
            extra=extra,
        )
