"""The one retry/fallback loop, for whole answers and for streams alike.

A model call that raises (timeout, connection refused, 5xx, a stream cut before its first chunk) is
retried once on the same model when the error is retryable, then the next model of the plan is tried
(:func:`fall_back`). An upstream's ``Retry-After`` is waited out before that retry when it is short (at most
``Calls.max_retry_after_s`` and the request timeout); a longer one counts as the model failing now.
A cascade uses only the retry (:func:`retry`): it climbs its own ladder. Each
attempt is a :class:`Step` of the decision; ``decision.fallback_from`` names the model that was
chosen when another one answered.

What differs between answers and streams is only the attempt (:func:`answer` or :func:`first_chunk`)
and how a success is recorded; both live in a :class:`Mode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatResult
from sizewise.catalog.schema import ModelSpec
from sizewise.errors import SizewiseError
from sizewise.policy.types import Decision, RequestContext, Step

T = TypeVar("T")

#: Asks the filters' ``admit`` hooks before a call; raising a non-retryable BackendError skips the model.
Admit = Callable[[ModelSpec, RequestContext], Awaitable[None]]


class AllModelsFailed(Exception):
    """Every candidate failed; carries the decision with one step per attempt."""

    def __init__(self, decision: Decision, status: int | None = None) -> None:
        super().__init__("; ".join(decision.errors) or "no model could answer")
        self.decision = decision
        #: A 4xx when every model refused the request itself (a JSON schema no grammar takes, a field an
        #: upstream rejects): the client's mistake, not a gateway failure (502).
        self.status = status


def as_backend_error(spec: ModelSpec, error: Exception, timeout_s: float) -> BackendError:
    """Any failure of a model call as a :class:`BackendError` (a backend bug must not become a 500)."""
    if isinstance(error, BackendError):
        return error
    if isinstance(error, TimeoutError):
        return BackendError(f"{spec.name}: timed out after {timeout_s:g}s")
    if isinstance(error, SizewiseError):  # e.g. a model file missing: this model cannot answer, others may
        return BackendError(f"{spec.name}: {error}", retryable=False)
    return BackendError(f"{spec.name}: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class Calls:
    """How to reach a model: its backend, the request timeout, the admission check and the longest
    ``Retry-After`` waited out before a retry."""

    backend: Callable[[ModelSpec], Backend]
    timeout_s: float
    admit: Admit
    max_retry_after_s: float = 5.0

    @property
    def longest_wait_s(self) -> float:
        """The longest ``Retry-After`` honoured: the setting, never past the request timeout."""
        return min(self.max_retry_after_s, self.timeout_s)


async def answer(calls: Calls, spec: ModelSpec, ctx: RequestContext) -> ChatResult:
    """One whole answer under the request timeout (no retry); errors become :class:`BackendError`."""
    try:
        await calls.admit(spec, ctx)
        async with asyncio.timeout(calls.timeout_s):
            return await calls.backend(spec).complete(ctx.request)
    except Exception as error:
        raise as_backend_error(spec, error, calls.timeout_s) from None


async def first_chunk(calls: Calls, spec: ModelSpec, ctx: RequestContext) -> AsyncIterator[ChatChunk]:
    """A stream whose first chunk already arrived (so a fault before it can still fall back)."""
    iterator: AsyncIterator[ChatChunk] | None = None
    try:
        await calls.admit(spec, ctx)
        iterator = calls.backend(spec).stream(ctx.request).__aiter__()
        async with asyncio.timeout(calls.timeout_s):
            first = await iterator.__anext__()
    except StopAsyncIteration:
        first = ChatChunk(finish_reason="stop", prompt_tokens=0, completion_tokens=0)
    except Exception as error:
        if iterator is not None:
            await _close(iterator)
        raise as_backend_error(spec, error, calls.timeout_s) from None
    assert iterator is not None  # set before the first chunk could arrive
    return _prepend(first, iterator)


@dataclass(frozen=True)
class Mode(Generic[T]):
    """What one attempt is (an answer or an opened stream) and how its success is recorded."""

    attempt: Callable[[Calls, ModelSpec, RequestContext], Awaitable[T]]
    #: Step reason of a failed attempt, before its number ("attempt 1 failed").
    failed: str
    #: Step reason of the attempt that succeeded.
    succeeded: str
    #: Cost of a success (an answer knows its usage; a stream only at its end).
    cost: Callable[[ModelSpec, T], float]


ANSWER: Mode[ChatResult] = Mode(
    answer, "attempt", "answered", lambda spec, r: spec.cost_usd(r.prompt_tokens, r.completion_tokens)
)
STREAM: Mode[AsyncIterator[ChatChunk]] = Mode(first_chunk, "stream attempt", "streaming", lambda spec, _: 0.0)


async def retry(
    calls: Calls,
    mode: Mode[T],
    spec: ModelSpec,
    ctx: RequestContext,
    decision: Decision,
    failures: list[BackendError] | None = None,
) -> T | None:
    """Call ``spec``, once more when the error is retryable (after its ``Retry-After`` when that is short);
    each attempt is a step of ``decision``, each failure is added to ``failures``."""
    for number in (1, 2):
        started = time.perf_counter()
        try:
            value = await mode.attempt(calls, spec, ctx)
        except BackendError as error:
            message, again = str(error), error.retryable and number == 1
            if failures is not None:
                failures.append(error)
            wait = error.retry_after_s if again else None
            if wait is not None and wait > calls.longest_wait_s:
                message += f" (Retry-After {wait:g}s is longer than the {calls.longest_wait_s:g}s the gateway waits)"
                again = False
            record_failure(decision, spec, f"{mode.failed} {number} failed", started, message)
            if not again:
                return None
            if wait:
                await asyncio.sleep(wait)
            continue
        cost = mode.cost(spec, value)
        decision.steps.append(
            Step(
                spec.name,
                score=decision.score,
                threshold=decision.threshold,
                accepted=True,
                reason=mode.succeeded,
                cost=cost,
                latency_s=time.perf_counter() - started,
            )
        )
        decision.cost += cost
        return value
    return None


async def fall_back(
    calls: Calls, mode: Mode[T], order: list[ModelSpec], ctx: RequestContext, decision: Decision
) -> tuple[T, ModelSpec]:
    """The first model of ``order`` that answers (each retried once); :class:`AllModelsFailed` if none."""
    chosen = decision.model
    failures: list[BackendError] = []
    for spec in order:
        value = await retry(calls, mode, spec, ctx, decision, failures)
        if value is not None:
            if chosen is not None and spec.name != chosen:
                decision.fallback_from = chosen
            decision.model = spec.name
            return value, spec
    # 400, 413, 422: the request; a 401/403/404 is the gateway's own configuration (a key, a model name): 502.
    refused = [e.status for e in failures if not e.retryable and e.status in (400, 413, 422)]
    raise AllModelsFailed(decision, refused[-1] if failures and len(refused) == len(failures) else None)


def record_failure(decision: Decision, spec: ModelSpec, reason: str, started: float, message: str) -> None:
    """Add a failed attempt to the decision's steps and errors (what the response and the log show)."""
    decision.steps.append(Step(spec.name, reason=reason, latency_s=time.perf_counter() - started, error=message))
    # Backend errors already start with the model's name; name it once.
    decision.errors.append(message if message.startswith(f"{spec.name}: ") else f"{spec.name}: {message}")


async def replay(result: ChatResult) -> AsyncIterator[ChatChunk]:
    """A whole answer as a stream of two chunks (a cascade's accepted answer, streamed once chosen): its text,
    tool calls (each with its stream ``index``) and the upstream's own fields, then the finish and usage."""
    calls = [{"index": i, **call} for i, call in enumerate(result.tool_calls or [])] or None
    upstream = {k: v for k, v in result.upstream.items() if k in ("id", "created", "system_fingerprint")}
    if "logprobs" in result.upstream:
        upstream["logprobs"] = result.upstream["logprobs"]
    yield ChatChunk(text=result.text, tool_calls=calls, upstream=upstream)
    yield ChatChunk(
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )


async def _prepend(first: ChatChunk, rest: AsyncIterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
    yield first
    if first.finish_reason is not None:
        return
    async for chunk in rest:
        yield chunk


async def _close(iterator: AsyncIterator[ChatChunk]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):  # the stream already failed; closing is best effort
            await closer()


__all__ = [
    "ANSWER",
    "STREAM",
    "AllModelsFailed",
    "Calls",
    "Mode",
    "answer",
    "as_backend_error",
    "fall_back",
    "first_chunk",
    "replay",
    "retry",
]
