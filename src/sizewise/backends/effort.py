"""A reasoning-effort rung's backend: the model's own backend, called with the rung's ``reasoning_effort``.

The effort travels in ``ChatRequest.extra`` (what every backend passes upstream); a request that
sends its own ``reasoning_effort`` keeps it (the gateway never overrides a field the client sent).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from sizewise.backends.base import Backend
from sizewise.core.chat import ChatChunk, ChatRequest, ChatResult


class EffortBackend(Backend):
    """Wraps ``inner`` so each call carries ``reasoning_effort=effort`` unless the request has one."""

    def __init__(self, inner: Backend, effort: str) -> None:
        self.inner = inner
        self.effort = effort
        self.model = getattr(inner, "model", "")

    def _with_effort(self, request: ChatRequest) -> ChatRequest:
        if request.extra.get("reasoning_effort") is not None:
            return request
        return dataclasses.replace(request, extra={**request.extra, "reasoning_effort": self.effort})

    async def complete(self, request: ChatRequest) -> ChatResult:
        return await self.inner.complete(self._with_effort(request))

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.inner.stream(self._with_effort(request))

    async def choice_logprobs(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        return await self.inner.choice_logprobs(self._with_effort(request), choices)

    def state(self) -> Any:
        """The wrapped backend's state (a local model's worker), when it reports one."""
        return getattr(self.inner, "state", lambda: None)()

    async def aclose(self) -> None:
        await self.inner.aclose()
