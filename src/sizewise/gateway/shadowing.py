"""The gateway's side of shadow judging (:mod:`sizewise.learn.shadow`): choose, after each answer, whether
to shadow it, and hand the job to the runner in a background task that starts once the response is sent.

Only routed requests are considered (a router score and threshold; not a named model, a cascade or an
answer that came from a fallback), and only the other model of the router's pair, when no filter removed
it for this request (context, modality, privacy, budget). ``/metrics`` counts jobs in
``sizewise_shadow_jobs{event}``: ``queued``, ``dropped`` (queue full or shutting down), ``capped`` (daily
cap), ``privacy`` (a remote model kept away from personal data), ``failed``, ``judged``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from starlette.background import BackgroundTask

from sizewise.backends.base import ChatChunk, ChatRequest, ChatResult
from sizewise.cascade.graders import GRADERS
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.core.decision import Decision
from sizewise.errors import ConfigError
from sizewise.gateway.errors import GatewayError
from sizewise.gateway.streaming import OnDone
from sizewise.policy.types import RequestContext
from sizewise.serve.pipeline import Engine

if TYPE_CHECKING:
    from sizewise.learn.shadow import Sampler, ShadowJob, ShadowRunner

EVENTS = ("queued", "dropped", "capped", "privacy", "failed", "judged")


#: Where a streamed request's label waits in ``ctx.extras`` for :meth:`ShadowHook.tap`.
LABEL_KEY = "shadow_label"
#: Longest reference answer a request may carry (characters).
MAX_REFERENCE = 100_000


@dataclass(frozen=True)
class Label:
    """What a chat request says about its own right answer: ``sizewise.reference`` and, when the answer is
    checkable, ``sizewise.answer_format`` (a grader: ``numeric``, ``choice``, ``exact``)."""

    reference: str
    answer_format: str | None = None


def take_label(extra: dict[str, Any] | None) -> Label | None:
    """Remove ``reference`` and ``answer_format`` from the request's ``sizewise`` object (never sent upstream;
    the object's other fields are the feedback's) and return them; a 400 naming the field when malformed."""
    own = extra.get("sizewise") if extra else None
    if extra is None or not isinstance(own, dict) or not ({"reference", "answer_format"} & own.keys()):
        return None
    reference, answer_format = own.pop("reference", None), own.pop("answer_format", None)
    if not own:
        del extra["sizewise"]
    if isinstance(reference, int | float) and not isinstance(reference, bool) and math.isfinite(reference):
        reference = format(reference, ".15g") if isinstance(reference, float) else str(reference)  # "reference": 42
    if not isinstance(reference, str) or not reference.strip() or len(reference) > MAX_REFERENCE:
        message = f"sizewise.reference must be a number or a non-empty string of at most {MAX_REFERENCE:,} characters"
        raise GatewayError(400, message, "invalid_value", "sizewise.reference")
    if answer_format is not None and answer_format not in GRADERS:
        message = f"sizewise.answer_format must be one of {', '.join(GRADERS)}, not {answer_format!r}"
        raise GatewayError(400, message, "invalid_value", "sizewise.answer_format")
    return Label(reference, answer_format)


class ShadowHook:
    """Picks requests to shadow and queues them; one per app."""

    def __init__(
        self,
        engine: Engine,
        runner: ShadowRunner,
        sampler: Sampler,
        reasons: Callable[[RequestContext], list[str]] | None,
    ) -> None:
        self.engine = engine
        self.runner = runner
        self.sampler = sampler
        #: The privacy filter's ``reasons(ctx)`` (its scan of this request, made before routing), when privacy is on.
        self.reasons = reasons

    def after(
        self, ctx: RequestContext, decision: Decision, result: ChatResult, label: Label | None = None
    ) -> BackgroundTask | None:
        """A task to run once ``result`` is sent, when this request is chosen; None otherwise (most requests)."""
        if result.tool_calls:
            return None  # a tool call is no text answer to judge
        job = self._choose(ctx, decision, label)
        if job is None:
            return None
        job.answer = result.text
        return BackgroundTask(self._submit, job)

    def tap(
        self, ctx: RequestContext, decision: Decision, chunks: AsyncIterator[ChatChunk], on_done: OnDone
    ) -> tuple[AsyncIterator[ChatChunk], OnDone]:
        """For a stream: when chosen, chunks whose text is kept and an end report that queues the job once the
        stream is over (the client has its last event); else both unchanged (no cost per chunk)."""
        job = self._choose(ctx, decision, ctx.extras.get(LABEL_KEY))
        if job is None:
            return chunks, on_done
        parts: list[str] = []
        tools: list[bool] = []

        async def kept() -> AsyncIterator[ChatChunk]:
            try:
                async for chunk in chunks:
                    parts.append(chunk.text)
                    tools.append(bool(chunk.tool_calls))
                    yield chunk
            finally:  # the client may stop reading: close the upstream stream as sse_events would
                closer = getattr(chunks, "aclose", None)
                if closer is not None:
                    await closer()

        def done(status: int, prompt_tokens: int, completion_tokens: int) -> None:
            on_done(status, prompt_tokens, completion_tokens)
            if status == 200 and not any(tools):
                job.answer = "".join(parts)
                self.runner.submit(job)

        return kept(), done

    def _choose(self, ctx: RequestContext, decision: Decision, label: Label | None) -> ShadowJob | None:
        """A job for this request when the sampler picks it (its answer still to be filled in), else None."""
        from sizewise.learn.shadow import ShadowJob

        score, threshold = decision.score, decision.threshold
        if score is None or threshold is None or not math.isfinite(score) or decision.model is None:
            return None
        if decision.fell_back:
            return None  # a fault chose the answering model, not the router: its outcome says nothing of the router
        if decision.task is not None and decision.task.get("answered_by") in ("task_model", "teacher"):
            return None  # a task model (or its teacher, sent by the task) answered, not the router's choice
        if "tools" in ctx.request.extra or (ctx.request.extra.get("n") or 1) != 1:
            return None  # tool calls and several choices are not what the judges compare
        others = self._others(ctx, decision)
        if not others:
            return None
        chosen = self.sampler.choose(score, threshold)
        if chosen is None:
            return None
        return ShadowJob(
            request_id=ctx.request_id,
            request=dataclasses.replace(ctx.request, logprobs=False),
            question=ctx.text,
            served=decision.model,
            answer="",
            others=others,
            reference=label.reference if label else None,
            answer_format=label.answer_format if label else None,
            personal=bool(self.reasons(ctx)) if self.reasons is not None else None,
            detail={"chosen_by": chosen[0], "inclusion_p": chosen[1], "router_score": score, "threshold": threshold},
        )

    async def _submit(self, job: Any) -> None:
        # A coroutine, so Starlette runs it on the event loop (a plain function would go to a thread).
        self.runner.submit(job)

    def _others(self, ctx: RequestContext, decision: Decision) -> list[ModelSpec]:
        """The router pair's model that did not answer, unless a filter removed it for this request."""
        policy = self.engine.policy(ctx.model_field)  # cached: the one that just decided
        pair = [getattr(policy, "small", None), getattr(policy, "big", None)]
        removed = {name for report in decision.filters for name in report.removed}
        return [
            spec
            for spec in pair
            if isinstance(spec, ModelSpec) and spec.name != decision.model and spec.name not in removed
        ]

    async def aclose(self) -> None:
        """Wait briefly for jobs, then drop them (see :meth:`ShadowRunner.aclose`)."""
        await self.runner.aclose()


def build_shadow(engine: Engine, settings: GatewaySettings, log_url: str | None, registry: Any) -> ShadowHook | None:
    """The hook for ``settings.shadow`` (None when it is off); a :class:`ConfigError` for a bad setting."""
    shadow = settings.shadow
    if not shadow.enabled:
        return None
    from sizewise.learn.judges import LLMJudge
    from sizewise.learn.outcomes import OutcomeStore
    from sizewise.learn.shadow import Sampler, ShadowRunner, feedback_reference
    from sizewise.learn.shadow_spend import SpendLedger

    url = shadow.outcomes_url or (log_url if log_url not in (None, "none") else None)
    if url is None:
        raise ConfigError("gateway.shadow needs a database for outcomes: set gateway.log_url or shadow.outcomes_url")
    judge_name = shadow.judge or engine.big.name
    judge_spec = engine.by_name.get(engine.aliases.get(judge_name, judge_name))
    if judge_spec is None:
        raise ConfigError(f"gateway.shadow.judge: {judge_name!r} is not a catalog model that can be called")
    events = Counter("sizewise_shadow_jobs", "Shadow judging jobs by what became of them", ["event"], registry=registry)
    counters = {event: events.labels(event) for event in EVENTS}  # every series shows, at 0 until it happens
    personal, reasons = _privacy(engine, settings)
    store = OutcomeStore(url)
    runner = ShadowRunner(
        shadow,
        engine.backend,
        store,
        SpendLedger(url),
        judge=LLMJudge(judge_spec, engine.backend(judge_spec)),
        personal=personal,
        count=lambda event: counters[event].inc(),
        timeout_s=settings.request_timeout_s,
        reference_for=lambda request_id: feedback_reference(store.engine, request_id),
    )
    sampler = Sampler(shadow.uniform_rate, shadow.active_rate, shadow.active_width)
    return ShadowHook(engine, runner, sampler, reasons)


def _privacy(engine: Engine, settings: GatewaySettings) -> tuple[Callable[[ChatRequest], bool] | None, Any]:
    """Under ``privacy: local-only``: the gateway's own privacy scan as a yes/no for any request, and the
    engine's privacy filter's ``reasons(ctx)`` (its scan made before routing, free to read), if it has one.
    (None, None) when privacy is off."""
    if settings.privacy != "local-only":
        return None, None
    from sizewise.policy.constraints.privacy import PrivacyFilter

    found = next((f for f in engine.filters if isinstance(f, PrivacyFilter)), None)
    scanner = found or PrivacyFilter(opaque=settings.privacy_opaque)

    def personal(request: ChatRequest) -> bool:
        scan = scanner.scan(request)
        return bool(scan.rules) or (scanner.opaque == "personal" and bool(scan.opaque))

    return personal, found.reasons if found is not None else None
