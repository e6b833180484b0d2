"""Request validation for ``POST /v1/chat/completions`` (pydantic, OpenAI's field names and types).

Unknown top-level fields are kept and passed through to upstreams that understand them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class Message(BaseModel):
    """One chat message; content is a string or a list of typed parts (text, image_url, ...)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat completion request, as far as sizewise reads it."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(default="sizewise", min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    logprobs: bool = False

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
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
