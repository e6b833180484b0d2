"""The request pipeline driven directly, with in-memory backends: no server, no HTTP, milliseconds a test.

Each backend follows a script, one action per call ("ok", "retryable", "fatal", "bug", "cut" before the
first chunk, "late-cut" after it), then answers "ok". The engine is built with its own filter list, so
no catalog check, database or embedding model is involved.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.policy.types import FilterReport, RequestContext
from sizewise.serve.call import AllModelsFailed
from sizewise.serve.context import build_context
from sizewise.serve.pipeline import Engine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ScriptedBackend(Backend):
    """Answers ``<model>: <last message>``; each call first takes the next action of its script."""

    def __init__(self, model: str, script: list[str], logprob: float = -0.05, delay_s: float = 0.0) -> None:
        self.model = model
        self.script = list(script)
        self.logprob = logprob
        self.delay_s = delay_s
        self.calls = 0

    def _next(self) -> str:
        self.calls += 1
        return self.script.pop(0) if self.script else "ok"

    @staticmethod
    def _fail(action: str) -> None:
        if action == "retryable":
            raise BackendError("upstream 503", status=503)
        if action == "fatal":
            raise BackendError("upstream 400", retryable=False, status=400)
        if action in ("bug", "cut"):
            raise ConnectionError("connection reset")

    async def complete(self, request: ChatRequest) -> ChatResult:
        action = self._next()
        await asyncio.sleep(self.delay_s)
        self._fail(action)
        text = f"{self.model}: {request.messages[-1]['content']}"
        return ChatResult(self.model, text, prompt_tokens=10, completion_tokens=5, logprobs=[self.logprob] * 5)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        action = self._next()
        self._fail(action)
        yield ChatChunk(text=f"{self.model}: ")
        if action == "late-cut":
            raise ConnectionError("cut mid-stream")
        yield ChatChunk(text=str(request.messages[-1]["content"]))
        yield ChatChunk(finish_reason="stop", prompt_tokens=10, completion_tokens=2)


def spec(name: str, params_b: float, price: float) -> ModelSpec:
    return ModelSpec(
        name=name, backend="openai", context_window=8192, params_b=params_b, price_in=price, price_out=price
    )


SMALL, BIG = spec("small", 0.5, 0.1), spec("big", 7.0, 1.0)


def make_engine(
    small: list[str] | None = None, big: list[str] | None = None, *, filters: list[Any] | None = None, **kw: Any
) -> tuple[Engine, dict[str, ScriptedBackend]]:
    backends = {"small": ScriptedBackend("small", small or [], logprob=-3.0), "big": ScriptedBackend("big", big or [])}
    # These tests name "small" to drive the fallback loop: named models may fall back here.
    settings = GatewaySettings(log_url="none", **{"fallback_for_named_models": True, **kw})
    engine = Engine([SMALL, BIG], settings, lambda s: backends[s.name], filters=filters or [])
    return engine, backends


def ctx(model: str = "small", text: str = "hello", stream: bool = False) -> RequestContext:
    request = ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=16)
    return build_context(request, model_field=model, stream=stream, request_id="r1")


async def drain(chunks: AsyncIterator[ChatChunk]) -> str:
    return "".join([chunk.text async for chunk in chunks])


# -- answers ------------------------------------------------------------------------------------------------
async def test_answer_from_the_chosen_model() -> None:
    engine, backends = make_engine()
    result, decision = await engine.complete(ctx())
    assert result.text == "small: hello" and decision.model == "small" and decision.fallback_from is None
    assert [(s.model, s.reason, s.accepted) for s in decision.steps] == [("small", "answered", True)]
    assert decision.cost == pytest.approx(SMALL.cost_usd(10, 5)) and decision.cost > 0
    assert backends["big"].calls == 0


async def test_retryable_error_is_retried_once_on_the_same_model() -> None:
    engine, backends = make_engine(small=["retryable"])
    result, decision = await engine.complete(ctx())
    assert result.text == "small: hello" and decision.fallback_from is None
    assert [s.reason for s in decision.steps] == ["attempt 1 failed", "answered"]
    assert decision.errors == ["small: upstream 503"] and backends["small"].calls == 2


async def test_retry_once_then_fall_back_to_the_next_model() -> None:
    engine, backends = make_engine(small=["retryable", "retryable"])
    result, decision = await engine.complete(ctx())
    assert result.text == "big: hello" and decision.model == "big" and decision.fallback_from == "small"
    assert [(s.model, s.reason) for s in decision.steps] == [
        ("small", "attempt 1 failed"),
        ("small", "attempt 2 failed"),
        ("big", "answered"),
    ]
    assert backends["small"].calls == 2 and len(decision.errors) == 2


async def test_a_named_model_does_not_fall_back_by_default() -> None:
    engine, backends = make_engine(small=["retryable", "retryable"], fallback_for_named_models=False)
    with pytest.raises(AllModelsFailed, match="small: "):
        await engine.complete(ctx())
    assert backends["small"].calls == 2 and backends["big"].calls == 0


async def test_non_retryable_error_falls_back_without_a_retry() -> None:
    engine, backends = make_engine(small=["fatal"])
    result, decision = await engine.complete(ctx())
    assert result.text == "big: hello" and decision.fallback_from == "small"
    assert backends["small"].calls == 1 and decision.errors == ["small: upstream 400"]


async def test_a_backend_bug_is_a_failed_call_not_a_crash() -> None:
    engine, _ = make_engine(small=["bug"])
    _, decision = await engine.complete(ctx())
    assert decision.errors == ["small: ConnectionError: connection reset"] and decision.model == "small"


async def test_a_slow_model_times_out_and_the_next_one_answers() -> None:
    engine, backends = make_engine(request_timeout_s=0.02)
    backends["small"].delay_s = 1.0
    started = time.perf_counter()
    result, decision = await engine.complete(ctx())
    assert result.text == "big: hello" and decision.errors == ["small: timed out after 0.02s"] * 2
    assert time.perf_counter() - started < 0.5


async def test_every_model_failing_raises_with_one_step_per_attempt() -> None:
    engine, _ = make_engine(small=["retryable"] * 2, big=["retryable"] * 2)
    with pytest.raises(AllModelsFailed) as caught:
        await engine.complete(ctx())
    assert [s.model for s in caught.value.decision.steps] == ["small", "small", "big", "big"]
    assert all(s.error for s in caught.value.decision.steps)


# -- streams ------------------------------------------------------------------------------------------------
async def test_stream_arrives_with_its_first_chunk() -> None:
    engine, _ = make_engine()
    chunks, decision, answering = await engine.open_stream(ctx(stream=True))
    assert answering.name == "small" and [s.reason for s in decision.steps] == ["streaming"]
    assert await drain(chunks) == "small: hello"


async def test_stream_cut_before_its_first_chunk_falls_back() -> None:
    engine, backends = make_engine(small=["cut", "cut"])
    chunks, decision, answering = await engine.open_stream(ctx(stream=True))
    assert answering.name == "big" and decision.fallback_from == "small" and decision.model == "big"
    assert [s.reason for s in decision.steps] == ["stream attempt 1 failed", "stream attempt 2 failed", "streaming"]
    assert await drain(chunks) == "big: hello" and backends["small"].calls == 2


async def test_stream_cut_after_its_first_chunk_raises_from_the_iterator() -> None:
    engine, backends = make_engine(small=["late-cut"])
    chunks, decision, answering = await engine.open_stream(ctx(stream=True))
    assert answering.name == "small" and decision.fallback_from is None
    with pytest.raises(ConnectionError, match="cut mid-stream"):
        await drain(chunks)
    assert backends["big"].calls == 0  # bytes may have reached the client: no fallback after the first chunk


async def test_non_retryable_stream_error_falls_back_at_once() -> None:
    engine, backends = make_engine(small=["fatal"])
    chunks, _decision, _ = await engine.open_stream(ctx(stream=True))
    assert await drain(chunks) == "big: hello" and backends["small"].calls == 1


# -- cascade ------------------------------------------------------------------------------------------------
async def test_cascade_escalates_and_writes_into_the_engines_decision() -> None:
    report = FilterReport("seen", note="ran before the cascade")
    keep = _Recorder("seen", [], report=report)
    engine, backends = make_engine(filters=[keep])
    result, decision = await engine.complete(ctx("cascade-logprob"))
    assert result.text == "big: hello" and decision.model == "big" and decision.escalated
    assert decision.policy == "cascade-logprob" and decision.filters == [report]
    assert [(s.model, s.accepted) for s in decision.steps] == [("small", False), ("big", True)]
    assert "escalate" in decision.steps[0].reason and decision.steps[0].score is not None
    assert decision.cost == pytest.approx(SMALL.cost_usd(10, 5) + BIG.cost_usd(10, 5))
    assert backends["small"].calls == backends["big"].calls == 1


async def test_cascade_rung_that_fails_twice_is_skipped_and_its_errors_kept() -> None:
    engine, _backends = make_engine(small=["retryable", "retryable"])
    result, decision = await engine.complete(ctx("cascade-logprob"))
    assert result.text == "big: hello" and decision.fallback_from == "small"
    assert decision.errors == ["small: upstream 503", "small: upstream 503"]
    assert [(s.model, s.error is not None) for s in decision.steps] == [("small", True), ("big", False)]


async def test_cascade_stream_is_the_accepted_answer_replayed() -> None:
    engine, _ = make_engine()
    chunks, decision, answering = await engine.open_stream(ctx("cascade-logprob", stream=True))
    assert answering.name == "big" == decision.model and await drain(chunks) == "big: hello"


# -- filters ------------------------------------------------------------------------------------------------
class _Recorder:
    """A filter that keeps everything, records which thread ran it, and may sleep (a blocking I/O stand-in)."""

    def __init__(
        self, name: str, log: list[tuple[str, int]], *, blocking: bool = False, sleep_s: float = 0.0, report: Any = None
    ) -> None:
        self.name, self.log, self.blocking, self.sleep_s = name, log, blocking, sleep_s
        self.report = report or FilterReport(name)

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        time.sleep(self.sleep_s)
        self.log.append((self.name, threading.get_ident()))
        return candidates, self.report


async def test_filters_keep_their_order_and_blocking_ones_run_off_the_event_loop() -> None:
    log: list[tuple[str, int]] = []
    filters = [_Recorder("a", log), _Recorder("b", log, blocking=True), _Recorder("c", log)]
    engine, _ = make_engine(filters=filters)
    _, decision = await engine.complete(ctx())
    loop_thread = threading.get_ident()
    assert [name for name, _ in log] == ["a", "b", "c"] == [r.filter for r in decision.filters]
    assert log[0][1] == loop_thread and log[1][1] != loop_thread and log[2][1] != loop_thread


async def _worst_loop_stall(blocking: bool) -> float:
    """The longest gap between 5 ms ticks on the event loop while a request runs a 200 ms filter."""
    engine, _ = make_engine(filters=[_Recorder("slow", [], blocking=blocking, sleep_s=0.2)])
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    await engine.complete(ctx())
    await asyncio.sleep(0.02)  # let the ticker see the gap: complete() may return without suspending
    ticker.cancel()
    return max(gaps)


async def test_a_slow_filter_no_longer_stalls_other_requests() -> None:
    assert await _worst_loop_stall(blocking=True) < 0.1
    # The control: the same filter run on the loop stalls it for its whole 200 ms.
    assert await _worst_loop_stall(blocking=False) >= 0.19


async def test_a_blocking_admit_runs_in_a_worker_thread() -> None:
    threads: list[int] = []

    class Admitting(_Recorder):
        def admit(self, ctx: RequestContext, spec: ModelSpec) -> None:
            threads.append(threading.get_ident())
            if spec.name == "small":
                raise BackendError("small: over budget", retryable=False)

    engine, backends = make_engine(filters=[Admitting("budget", [], blocking=True)])
    result, _decision = await engine.complete(ctx())
    assert result.text == "big: hello" and backends["small"].calls == 0
    assert threads and threading.get_ident() not in threads


def test_settle_reports_a_failed_hook_without_raising() -> None:
    class Settling(_Recorder):
        def settle(self, ctx: RequestContext, decision: Any, prompt_tokens: int, completion_tokens: int) -> None:
            raise RuntimeError("ledger down")

    engine, _ = make_engine(filters=[Settling("budget", [])])
    assert engine.settle(ctx(), None) is False
    assert make_engine()[0].settle(ctx(), None) is True


async def test_the_built_in_slow_filters_stay_off_the_event_loop() -> None:
    from sizewise.policy.constraints.budget import BudgetFilter
    from sizewise.policy.constraints.latency import LatencyFilter
    from sizewise.policy.domains import DomainFilter

    assert BudgetFilter.blocking and DomainFilter.blocking  # SQL and an embedding model: the engine threads them
    threads: list[int] = []

    def measure() -> dict[str, float]:  # the request log's p95 scan
        threads.append(threading.get_ident())
        return {"small": 50.0, "big": 5000.0}

    engine, _ = make_engine(filters=[LatencyFilter(GatewaySettings(log_url="none"), measure)])
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    result, decision = await engine.complete(build_context(request, model_field="small", max_latency_ms=100.0))
    assert result.text == "small: hi" and "big" in decision.filters[0].removed
    assert threads and threading.get_ident() not in threads
