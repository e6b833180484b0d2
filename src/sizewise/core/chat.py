"""What a model is asked and what it answers: the types every backend, policy and the gateway share.

Plain dataclasses (no pydantic, no numpy), so the request path imports them for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class BackendError(Exception):
    """A model call failed. ``retryable`` says whether trying again (or another model) may help;
    ``retry_after_s`` is how long the upstream asked to wait first (its ``Retry-After``), when it did."""

    def __init__(
        self, message: str, *, retryable: bool = True, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


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
    #: OpenAI-format tool calls ``[{"id", "type": "function", "function": {"name", "arguments"}}]``.
    tool_calls: list[dict[str, Any]] | None = None
    #: The upstream's own answer fields kept verbatim where it sent them: ``id``, ``created``,
    #: ``system_fingerprint``, ``logprobs`` (the choice's OpenAI logprobs object), ``message`` (the message's
    #: other fields: ``refusal``, ``annotations``..., ``content: None`` when it was null), ``choices`` (all of
    #: them, for ``n > 1``). Local models fill ``logprobs`` and ``choices`` the same way.
    upstream: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatChunk:
    """A piece of a streamed answer. The last chunk has ``finish_reason`` and the usage counts."""

    text: str = ""
    finish_reason: str | None = None
    logprob: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: OpenAI-format tool call deltas of this chunk ``[{"index", "id"?, "type"?, "function": {...}}]``.
    tool_calls: list[dict[str, Any]] | None = None
    #: The upstream's own chunk fields kept verbatim (``id``, ``created``, ``system_fingerprint``, ``logprobs``,
    #: ``delta``: the delta's other fields such as ``refusal``, ``choices``: those past the first for ``n > 1``).
    upstream: dict[str, Any] = field(default_factory=dict)
