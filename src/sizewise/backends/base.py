"""One interface for every way of calling a model (the httpx "transport" idea).

The policy and the gateway call a :class:`Backend` and never know whether the model
runs in-process (llama.cpp), behind an OpenAI-compatible HTTP upstream, or is a
replay of recorded answers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

# The chat types live on the ground floor (sizewise.core.chat); re-exported here for old imports.
from sizewise.core.chat import BackendError as BackendError
from sizewise.core.chat import ChatChunk as ChatChunk
from sizewise.core.chat import ChatRequest as ChatRequest
from sizewise.core.chat import ChatResult as ChatResult


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
