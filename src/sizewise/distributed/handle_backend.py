"""A :class:`~sizewise.backends.base.Backend` that calls a model's Ray Serve deployment through its handle.

The gateway's engine calls it like any transport; the model runs in its own deployment (its own CPUs,
GPUs and replicas). Ray's own failures (a replica that died, a deployment that is gone) become a
retryable :class:`BackendError`, so the engine's one retry-then-fallback loop handles them as it handles
a dead upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatRequest, ChatResult

T = TypeVar("T")


def _translated(error: BaseException, model: str) -> BaseException:
    """The model's own :class:`BackendError` when the replica raised one, else a retryable one naming Ray's."""
    cause = getattr(error, "cause", None)  # RayTaskError carries the replica's exception
    if isinstance(cause, BackendError):
        return cause
    return BackendError(f"{model}: Ray deployment failed: {type(error).__name__}: {error}", retryable=True)


class RayHandleBackend(Backend):
    """Forwards ``complete``, ``stream`` and ``choice_logprobs`` to a ``ModelServer`` deployment handle."""

    def __init__(self, model: str, handle: Any) -> None:
        self.model = model
        self.handle = handle

    async def _call(self, response: Awaitable[T]) -> T:
        try:
            return await response
        except Exception as error:  # Ray's errors are many classes; each becomes one BackendError
            raise _translated(error, self.model) from None

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One whole answer from the model's deployment."""
        return await self._call(self.handle.complete.remote(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer's chunks as the deployment yields them (a streaming handle call)."""
        chunks = self.handle.options(stream=True).stream.remote(request)
        try:
            async for chunk in chunks:
                yield chunk
        except Exception as error:
            raise _translated(error, self.model) from None

    async def choice_logprobs(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        """Next-token log-probabilities, computed where the model lives."""
        return await self._call(self.handle.choice_logprobs.remote(request, choices))
