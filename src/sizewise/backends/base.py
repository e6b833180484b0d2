"""One interface for every way of calling a model (the httpx "transport" idea).

The policy and the gateway call a :class:`Backend` and never know whether the model
runs in-process (llama.cpp), behind an OpenAI-compatible HTTP upstream, or is a
replay of recorded answers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


class BackendError(Exception):
    """A model call failed. ``retryable`` says whether trying again (or another model) may help."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass
class ChatRequest:
    """What a backend is asked: OpenAI-style messages plus sampling settings."""

    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    logprobs: bool = False
    #: Other OpenAI parameters passed through to upstreams that understand them.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatResult:
    """A finished answer with its usage, latency and (when available) per-token logprobs."""

    model: str
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    tokens: list[str] | None = None
    logprobs: list[float] | None = None


@dataclass
class ChatChunk:
    """A piece of a streamed answer. The last chunk has ``finish_reason`` and the usage counts."""

    text: str = ""
    finish_reason: str | None = None
    logprob: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Backend(ABC):
    """A callable model. Implementations: llamacpp, openai (HTTP upstream), replay."""

    #: The catalog name of the model this backend serves.
    model: str

    @abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResult:
        """Generate a whole answer."""

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Generate an answer piece by piece."""

    async def choice_logprobs(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        """Log-probability of each one-token ``choices`` as the next token after ``request``.

        Used by the verifier scorer ("is this answer right? yes/no"). Backends that
        cannot give it raise :class:`BackendError` with ``retryable=False``.
        """
        raise BackendError(f"{type(self).__name__} cannot score next-token choices", retryable=False)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections or model memory."""
