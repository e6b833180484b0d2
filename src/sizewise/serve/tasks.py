"""Task models on the request path (docs/gateway.md, Task models): a student answers its task when it is sure.

A request is *on-task* for a task model when the client names it (``"sizewise": {"task": "<name>"}``) or
when the domain filter matched the task's ``route``; every other request never meets a task model. For
an on-task request the engine asks the task desk after the filters and the policy (:meth:`TaskDesk.turn`):

* the student is sure (its calibrated confidence reaches its threshold): the label is the answer, no model is
  called, and the decision says ``answered_by: task_model`` with the confidence;
* it is unsure, not serving yet, or picked this request for an audit: the teacher answers (``unsure:
  teacher``, the default, when the teacher passed the filters) or the normal decision does (``unsure:
  policy``; an audit always asks the teacher). When the model that answered is the teacher, its answer is
  handed to the task's learner thread after the answer is complete (:meth:`TaskTurn.learn`), off the
  request path: the online student learns from it and audits are scored.

A request whose ``model`` is a task model is that task's, decided as ``model: sizewise`` (:meth:`TaskDesk.claim`).
A request naming another catalog model is answered by that model; when it names the teacher, its answer
still teaches the student.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizewise.backends.base import Backend
from sizewise.catalog.catalog import ladder_key
from sizewise.catalog.schema import ModelSpec
from sizewise.core.chat import BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.core.decision import Decision, RequestRejected, Step
from sizewise.core.text import content_text
from sizewise.policy.types import RequestContext
from sizewise.serve.call import replay
from sizewise.serve.task_model import Task, Verdict

logger = logging.getLogger(__name__)

#: ``RequestContext.extras`` key of the task the client named (``sizewise.task``).
TASK_KEY = "task"
#: Longest wait at shutdown for teacher answers still being learned.
CLOSE_WAIT_S = 30.0


def take_task(extra: dict[str, Any] | None) -> str | None:
    """Remove ``task`` from a chat request's ``sizewise`` object (never sent upstream) and return it; a 400
    naming ``sizewise.task`` when it is not a non-empty string."""
    own = extra.get("sizewise") if extra else None
    if extra is None or not isinstance(own, dict) or "task" not in own:
        return None
    task = own.pop("task")
    if not own:
        del extra["sizewise"]
    if not isinstance(task, str) or not task.strip():
        raise RequestRejected(400, "sizewise.task must name a task model (a string)", "invalid_value", "sizewise.task")
    return task


def task_text(messages: list[dict[str, Any]]) -> str:
    """What a student reads of a conversation: each message's text, one per line, without the role prefixes of
    ``conversation_text``, so a one-message request reads exactly like an outcome table's ``prompt``."""
    return "\n".join(text for m in messages if m.get("content") and (text := content_text(m.get("content"))))


@dataclass
class TaskTurn:
    """What the task desk did with one request: the student's answer, or the models to call and what to learn."""

    #: The models to try in order (the policy's, or the teacher first).
    order: list[ModelSpec]
    #: The student's answer (no model is called).
    answer: ChatResult | None = None
    #: The teacher was put first: call it as a routed model even under a cascade policy.
    teacher_first: bool = False
    #: Where the teacher's answer goes (None: nothing to learn): (text, answer, client).
    learner: Callable[[str, str, str | None], None] | None = None
    teacher: str | None = None
    text: str = ""
    #: Whose request it is (the API key's name; None when keys are off): the task's quotas count clients.
    client: str | None = None

    def learn(self, model: str | None, answer: str) -> None:
        """``model`` answered this request with ``answer``: the task learns it when ``model`` is its teacher."""
        if self.learner is not None and model == self.teacher and answer:
            self.learner(self.text, answer, self.client)

    def tap(self, chunks: AsyncIterator[ChatChunk], decision: Decision) -> AsyncIterator[ChatChunk]:
        """``chunks`` as they come; when the teacher streams, its complete answer is learned at the end."""
        if self.learner is None or decision.model != self.teacher:
            return chunks
        return self._tapped(chunks, decision)

    async def _tapped(self, chunks: AsyncIterator[ChatChunk], decision: Decision) -> AsyncIterator[ChatChunk]:
        parts: list[str] = []
        try:
            async for chunk in chunks:
                parts.append(chunk.text)
                # Before the final chunk goes out: its reader may stop there. A cut answer ("length") teaches nothing.
                if chunk.finish_reason is not None and chunk.finish_reason != "length":
                    self.learn(decision.model, "".join(parts))
                yield chunk
        finally:  # closed early (the client left): the upstream stream is closed too
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()


class TaskBackend(Backend):
    """The backend a task model shows the engine: its student's label, or a non-retryable error when unsure."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.model = task.name

    async def complete(self, request: ChatRequest) -> ChatResult:
        verdict = await asyncio.to_thread(self.task.verdict, task_text(request.messages))
        if verdict.label is None:
            raise BackendError(f"{self.task.name}: {verdict.why}", retryable=False)
        return ChatResult(self.task.name, verdict.label, latency_s=verdict.latency_s)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async def chunks() -> AsyncIterator[ChatChunk]:
            async for chunk in replay(await self.complete(request)):
                yield chunk

        return chunks()


class TaskDesk:
    """The catalog's task models, how requests are bound to them, and the thread that teaches them."""

    def __init__(self, tasks: list[Task], model_names: set[str] | None = None) -> None:
        self.tasks = {task.name: task for task in tasks}
        #: What a client names a catalog model by (names and aliases): such a request gets that model.
        self.model_names = model_names or set()
        self.by_route = {task.settings.route: task for task in tasks if task.settings.route}
        # One thread: teacher answers are learned in arrival order, refits never overlap, requests never wait.
        self._learner = ThreadPoolExecutor(1, thread_name_prefix="sizewise-distill")

    @classmethod
    def build(cls, models: list[ModelSpec], catalog: Any = None, router_dir: Path | None = None) -> TaskDesk | None:
        """The desk of the ``kind: task`` entries of ``models`` (None when there are none); a
        :class:`ConfigError` for a task whose teacher or route is not in the catalog, or whose files are bad."""
        specs = [spec for spec in models if spec.kind == "task" or spec.backend == "task"]
        if not specs:
            return None
        from sizewise.catalog.tasks import TEACHER_KINDS
        from sizewise.errors import ConfigError

        resolve = getattr(catalog, "resolve", None) or (lambda value: Path(value).expanduser())
        routes = {route.name for route in getattr(catalog, "routes", None) or []}
        kinds = {spec.name: spec.kind for spec in models}
        tasks = []
        for spec in specs:
            task = Task.from_spec(spec, resolve, router_dir)
            teacher, route = task.settings.teacher, task.settings.route
            if kinds.get(teacher) not in TEACHER_KINDS:
                what = "is not a catalog model" if teacher not in kinds else f"is a {kinds[teacher]!r} model"
                raise ConfigError(f"task model {spec.name!r}: teacher {teacher!r} {what}; it must be a chat model")
            if route is not None and route not in routes:
                raise ConfigError(f"task model {spec.name!r}: route {route!r} is not a catalog route")
            tasks.append(task)
        return cls(tasks, {name for spec in models for name in (spec.name, *spec.aliases)})

    def backends(self) -> dict[str, Backend]:
        """One backend per task model, for the engine's table of backends."""
        return {name: TaskBackend(task) for name, task in self.tasks.items()}

    def claim(self, ctx: RequestContext, name: str) -> None:
        """A request whose ``model`` names task model ``name`` is that task's: decided as ``model: sizewise``."""
        if name not in self.tasks:
            return
        named = ctx.extras.get(TASK_KEY)
        if named is not None and named != name:
            message = f"model {ctx.model_field!r} is task model {name!r}, but sizewise.task names {named!r}"
            raise RequestRejected(400, message, "invalid_value", "sizewise.task")
        ctx.extras[TASK_KEY], ctx.model_field = name, "sizewise"

    def bound(self, ctx: RequestContext) -> Task | None:
        """The task this request is for: the one it names, else the one whose route the domain filter matched."""
        named = ctx.extras.get(TASK_KEY)
        if named is not None:
            task = self.tasks.get(named)
            if task is None:
                known = ", ".join(self.tasks) or "none"
                message = f"sizewise.task {named!r} is not a task model of this gateway (tasks: {known})"
                raise RequestRejected(400, message, "unknown_task", "sizewise.task")
            return task
        route = (ctx.extras.get("domain") or {}).get("route")
        return self.by_route.get(route) if route is not None else None

    async def turn(self, ctx: RequestContext, decision: Decision, order: list[ModelSpec]) -> TaskTurn:
        """Answer with the student, or say which models to call (see the module docstring)."""
        task = self.bound(ctx)
        if task is None:
            return TaskTurn(order)
        text = task_text(ctx.messages)
        turn = TaskTurn(
            order, learner=self._learn_for(task), teacher=task.settings.teacher, text=text, client=ctx.api_key
        )
        if ctx.model_field in self.model_names:  # a named model answers; the teacher's answer still teaches
            decision.task = {"task": task.name, "answered_by": "named model"}
            return turn
        shape = _asks_for_more(ctx)
        if shape is not None:  # a label is no answer to it: the policy decides, as for any request
            decision.task = {"task": task.name, "answered_by": "policy", "note": f"the request asks for {shape}"}
            return turn
        verdict = await asyncio.to_thread(task.verdict, text, ctx.api_key)
        decision.task = _report(task, verdict)
        if verdict.label is not None:
            turn.answer = _answer(task, verdict, ctx, decision)
            return turn
        teacher = next((spec for spec in order if spec.name == task.settings.teacher), None)
        if teacher is not None and (verdict.audit or task.settings.unsure == "teacher"):
            others = sorted((spec for spec in order if spec is not teacher), key=ladder_key, reverse=True)
            turn.order, turn.teacher_first = [teacher, *others], True
            decision.model, decision.escalated = teacher.name, True
            decision.reason = f"task {task.name!r}: {verdict.why}; its teacher answers"
            decision.task["answered_by"] = "teacher"
        else:
            decision.task["answered_by"] = "policy"
            if teacher is None:
                decision.task["note"] = "the teacher did not pass the filters"
        return turn

    def _learn_for(self, task: Task) -> Callable[[str, str, str | None], None] | None:
        if task.online is None and task.student is None:
            return None

        def learn(text: str, answer: str, client: str | None) -> None:
            self._learner.submit(_observe, task, text, answer, client)

        return learn

    async def aclose(self) -> None:
        """Learn what is queued (up to :data:`CLOSE_WAIT_S`), then keep each online student in its file."""
        await asyncio.to_thread(self._close)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every teacher answer handed over is learned and no student is refitting; False on timeout."""
        deadline = time.monotonic() + timeout_s
        try:
            self._learner.submit(lambda: None).result(timeout=timeout_s)
        except Exception:
            return False
        return all(task.wait_for_refit(max(0.0, deadline - time.monotonic())) for task in self.tasks.values())

    def _close(self) -> None:
        if not self.wait_idle(CLOSE_WAIT_S):  # a refit still running is lost; what it learned from is kept
            logger.warning("task desk: shutting down with teacher answers queued or a refit running")
        self._learner.shutdown(wait=False, cancel_futures=True)
        for task in self.tasks.values():
            try:
                task.save()
            except Exception:
                logger.exception("task %s: its online student could not be saved", task.name)


def _asks_for_more(ctx: RequestContext) -> str | None:
    """What the request asks for beyond one plain answer (tools, a JSON format, several choices, logprobs), if any."""
    extra = ctx.request.extra
    if extra.get("tools"):
        return "tools"
    response_format = extra.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        return f"response_format {response_format.get('type')}"
    if (extra.get("n") or 1) != 1:
        return "several choices"
    if ctx.request.logprobs:
        return "logprobs"
    return None


def _observe(task: Task, text: str, answer: str, client: str | None) -> None:
    try:
        task.observe(text, answer, client)
    except Exception:  # a teacher answer that cannot be learned costs that answer, never the thread
        logger.exception("task %s: a teacher answer could not be learned", task.name)


def _report(task: Task, verdict: Verdict) -> dict[str, Any]:
    """The decision's ``task`` object: which task, which student, its confidence and threshold."""
    return {
        "task": task.name,
        "answered_by": "task_model" if verdict.label is not None else None,
        "student": verdict.student,
        "label": verdict.label,
        "confidence": _rounded(verdict.confidence),
        "threshold": _rounded(verdict.threshold),
        "audit": verdict.audit,
        "reason": verdict.why,
        "latency_ms": round(verdict.latency_s * 1000, 3),
    }


def _answer(task: Task, verdict: Verdict, ctx: RequestContext, decision: Decision) -> ChatResult:
    """The student's label as a chat answer, written into ``decision`` as the one step taken."""
    assert verdict.label is not None
    completion = max(1, math.ceil(len(verdict.label) / 4))
    cost = task.spec.cost_usd(ctx.prompt_tokens, completion)
    decision.model, decision.escalated = task.name, False
    decision.score, decision.threshold = verdict.confidence, verdict.threshold
    decision.reason = f"task {task.name!r}: {verdict.why} ({_confidence_line(verdict)})"
    decision.steps.append(
        Step(
            task.name,
            score=verdict.confidence,
            threshold=verdict.threshold,
            accepted=True,
            reason="task model answered",
            cost=cost,
            latency_s=verdict.latency_s,
        )
    )
    decision.cost += cost
    return ChatResult(
        task.name,
        verdict.label,
        prompt_tokens=ctx.prompt_tokens,
        completion_tokens=completion,
        latency_s=verdict.latency_s,
    )


def _confidence_line(verdict: Verdict) -> str:
    if verdict.confidence is None or verdict.threshold is None:
        return "confident"
    return f"confidence {verdict.confidence:.3f} >= threshold {verdict.threshold:.3f}"


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


__all__ = ["TASK_KEY", "TaskBackend", "TaskDesk", "TaskTurn", "take_task"]
