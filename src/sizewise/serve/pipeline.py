"""The request pipeline: request -> filters -> policy -> model call (retry once, then fall back) -> answer.

The engine knows nothing about HTTP: the gateway builds a :class:`RequestContext` from plain values
(:func:`sizewise.serve.context.build_context`), asks the engine for an answer (:meth:`Engine.complete`)
or a stream (:meth:`Engine.open_stream`), logs the :class:`Decision` it gets back and tells the engine
when the request is over (:meth:`Engine.settle`). See :mod:`sizewise.policy.types` for how to add
filters and policies, and :mod:`sizewise.serve.call` for the retry/fallback loop.

Blocking work stays off the event loop: a filter's ``prepare`` is awaited first (the privacy scan in its
own thread), then the chain runs in order, from the first filter marked ``blocking`` (SQL, an embedding
model) to the end in one worker thread; a blocking filter's ``admit`` runs in a thread as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatResult
from sizewise.backends.effort import EffortBackend
from sizewise.backends.openai_compat import missing_api_key
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.errors import ConfigError, UnknownModelError
from sizewise.policy.routing import BypassPolicy
from sizewise.policy.types import (
    CascadePolicy,
    Decision,
    Filter,
    Plan,
    Policy,
    PolicyEnv,
    RequestContext,
    RequestRejected,
    RoutingPolicy,
    filter_factories,
    load_extensions,
    policy_factory,
)
from sizewise.serve.call import ANSWER, STREAM, AllModelsFailed, Calls, fall_back, replay, retry
from sizewise.serve.images import ImageStep
from sizewise.serve.router_watch import watch_router
from sizewise.serve.session import Affinity, session_of, sources
from sizewise.serve.session_sql import session_store
from sizewise.serve.tasks import TaskDesk, TaskTurn

MAX_CACHED_POLICIES = 256

logger = logging.getLogger(__name__)


class Engine:
    """Decides and calls models for chat requests. One per app; safe to share across requests."""

    def __init__(
        self,
        models: list[ModelSpec],
        settings: GatewaySettings,
        backend_factory: Callable[[ModelSpec], Backend],
        *,
        router_dir: Path | None = None,
        catalog: Any = None,
        filters: list[Filter] | None = None,
    ) -> None:
        load_extensions()
        #: Models that cannot be called (an unset API-key variable): left out of routing and fallbacks.
        self.unavailable = {spec.name: why for spec in models if (why := missing_api_key(spec)) is not None}
        for name, why in self.unavailable.items():
            logger.warning("model %s skipped: %s", name, why)
        self.models = [spec for spec in models if spec.name not in self.unavailable]
        if not self.models:
            raise ConfigError(f"no model can be called: {'; '.join(f'{n}: {w}' for n, w in self.unavailable.items())}")
        self.by_name = {spec.name: spec for spec in self.models}
        #: Other names a client may send for a model (its catalog ``aliases``).
        self.aliases = {alias: spec.name for spec in models for alias in spec.aliases}
        self.settings = settings
        self._backend_factory = backend_factory
        self._backends: dict[str, Backend] = {}
        self.env = PolicyEnv(self.models, settings, self.backend, router_dir=router_dir, catalog=catalog)
        #: Task models (``kind: task``): students that answer their narrow task when sure (None: the catalog has none).
        self.tasks = TaskDesk.build(models, catalog, router_dir)  # all models: a teacher may lack its key for now
        if self.tasks is not None:
            self._backends.update(self.tasks.backends())
        if filters is None:
            filters = [f for f in (factory(self.env) for factory in filter_factories().values()) if f is not None]
        self.filters = filters
        # The chain runs on the event loop up to the first blocking filter, the rest in one worker thread.
        self._inline = next((i for i, f in enumerate(filters) if getattr(f, "blocking", False)), len(filters))
        self._prepares = [prepare for f in filters if (prepare := getattr(f, "prepare", None)) is not None]
        # Filters that must approve each model call just before it is made (the budget's reservation).
        self._admits = [(admit, getattr(f, "blocking", False)) for f in filters if (admit := getattr(f, "admit", None))]
        self._settles = [settle for f in filters if (settle := getattr(f, "settle", None)) is not None]
        # Admissions get their own threads: queued behind a burst of new requests' filter chains, a request
        # that already holds a reservation would wait for all of them (and find the budget taken).
        self._admit_pool = ThreadPoolExecutor(4, thread_name_prefix="sizewise-admit") if self._admits else None
        #: The model a request's cost is compared with (the log's ``big_cost``): the top of the ladder.
        self.big = self._big_model()
        self.calls = Calls(self.backend, settings.request_timeout_s, self.admit, settings.max_retry_after_s)
        self._policies: dict[str, Policy] = {}
        #: Where session ids come from (none: no session affinity), and the sessions' models.
        self.session_sources = sources(settings)
        # In memory, or in the database replicas share (gateway.state_url: serve.session_sql).
        self.sessions = Affinity(session_store(settings), settings.session_margin)
        #: Follows the router promoted in the replicas' shared database (None: no state_url or router_dir).
        self.router_watch = watch_router(settings, router_dir, self.refresh_policies)
        #: The local image classifier in front of the chat models (None: the catalog has no vision model).
        self.images = ImageStep.build(self.models, self.backend, settings)

    # -- set-up ----------------------------------------------------------------
    def backend(self, spec: ModelSpec) -> Backend:
        """The (lazily created, shared) backend of a catalog model."""
        backend = self._backends.get(spec.name)
        if backend is None:
            backend = self._backend_factory(spec)
            if spec.reasoning_effort is not None:  # a reasoning-effort rung: its effort goes upstream
                backend = EffortBackend(backend, spec.reasoning_effort)
            self._backends[spec.name] = backend
        return backend

    def policy(self, model_field: str) -> Policy:
        """The policy (or bypass) serving a ``model`` field; built once and cached."""
        policy = self._policies.get(model_field)
        if policy is not None:
            return policy
        policy = self._build_policy(model_field)
        if len(self._policies) >= MAX_CACHED_POLICIES:  # clients may send many thresholds; factories cache the rest
            self._policies.clear()
        self._policies[model_field] = policy
        return policy

    def refresh_policies(self) -> None:
        """Forget every built policy once a promoted router arrived (``serve.router_watch``, in its thread):
        the default policy is built first, off the event loop, so no request waits for the new router."""
        self._policies = {"sizewise": self._build_policy("sizewise")}

    def _build_policy(self, model_field: str) -> Policy:
        name = self.aliases.get(model_field, model_field)
        policy: Policy
        if name in self.unavailable:
            message = f"model {name!r} is unavailable: {self.unavailable[name]}"
            raise RequestRejected(503, message, "model_unavailable", "model")
        if name in self.by_name:
            policy = BypassPolicy(self.by_name[name], fallback=self.settings.fallback_for_named_models)
        else:
            target = model_field
            if model_field == "sizewise" and self.settings.default_policy != "sizewise":
                target = self.settings.default_policy
            factory = policy_factory(target)
            if factory is None:
                raise UnknownModelError(
                    f"unknown model {target!r}; use a catalog model ({', '.join(self.by_name)}), "
                    "'sizewise', router-<name>-<threshold> or multi-<router>-<target>"
                )
            policy = factory(target, self.env)
            policy.name = model_field
        return policy

    def _big_model(self) -> ModelSpec:
        ladder = self.env.ladder()
        return ladder[-1] if ladder else self.models[-1]

    # -- deciding --------------------------------------------------------------
    def filter(self, ctx: RequestContext, decision: Decision) -> list[ModelSpec]:
        """Run every filter in order (blocking ones included); raises :class:`RequestRejected` when none is left."""
        return self._run_filters(self.filters, ctx, decision, self.models)

    async def _filter(self, ctx: RequestContext, decision: Decision) -> list[ModelSpec]:
        for prepare in self._prepares:  # a filter's slow part (the privacy scan) runs off the event loop here
            await prepare(ctx)
        return await self._chain(ctx, decision)

    async def _chain(self, ctx: RequestContext, decision: Decision) -> list[ModelSpec]:
        inline, blocking = self.filters[: self._inline], self.filters[self._inline :]
        reports = len(decision.filters)
        while True:
            try:
                candidates = self._run_filters(inline, ctx, decision, self.models)
                if blocking:  # SQL, log scans, embeddings: in a worker thread, so other requests keep moving
                    candidates = await asyncio.to_thread(self._run_filters, blocking, ctx, decision, candidates)
                return candidates
            except RequestRejected as rejection:
                # "Not now": a rejection may carry ``async wait() -> bool`` (the budget, held by requests in
                # flight, waits for them to settle); True runs the chain again, False keeps the rejection.
                wait = getattr(rejection, "wait", None)
                if wait is None or not await wait():
                    raise
                del decision.filters[reports:]

    @staticmethod
    def _run_filters(
        filters: list[Filter], ctx: RequestContext, decision: Decision, candidates: list[ModelSpec]
    ) -> list[ModelSpec]:
        for flt in filters:
            candidates, report = flt.apply(ctx, candidates)
            decision.filters.append(report)
            if not candidates:
                raise RequestRejected(400, f"no model satisfies this request ({flt.name})", "no_model_available")
        return candidates

    async def _plan(
        self, ctx: RequestContext, policy: RoutingPolicy, candidates: list[ModelSpec], decision: Decision
    ) -> Plan:
        plan = await policy.plan(ctx, candidates)
        if isinstance(policy, BypassPolicy) or not self.session_sources:  # a named model: no substitute
            return plan
        if ctx.session is None:
            found = session_of(
                ctx.request, self.session_sources, header=ctx.session_id, user=ctx.user, client=ctx.api_key
            )
            ctx.session, ctx.session_lookup = found if found else (None, False)
        if ctx.session is None:
            return plan
        plan, decision.session = await self.sessions.steer_async(ctx, plan, candidates)
        return plan

    async def _remember(self, ctx: RequestContext, decision: Decision, model: str) -> None:
        await self.sessions.remember_async(ctx, decision.session, model)

    async def decide(self, ctx: RequestContext) -> tuple[Policy, Decision, list[ModelSpec]]:
        """Filters and the policy: returns (policy, decision so far, models to try in order)."""
        if self.tasks is not None:  # "model": "<a task model>" is that task's request, decided as "sizewise"
            self.tasks.claim(ctx, self.aliases.get(ctx.model_field, ctx.model_field))
        policy = self.policy(ctx.model_field)
        decision = Decision(policy=policy.name)
        if "audio" in ctx.modalities:  # heard first: the decision and text models see the transcript (serve.speech)
            from sizewise.serve.speech import transcribe_parts

            hears = isinstance(policy, BypassPolicy) and "audio" in policy.spec.modalities  # it hears for itself
            await transcribe_parts(self, ctx, decision, keep_audio=hears)
        candidates = await self._filter(ctx, decision)
        if isinstance(policy, RoutingPolicy):
            plan = await self._plan(ctx, policy, candidates, decision)
            if not plan.models:
                raise RequestRejected(400, "the policy found no model for this request", "no_model_available")
            decision.model = plan.models[0].name
            decision.score, decision.threshold = plan.score, plan.threshold
            decision.escalated, decision.reason = plan.escalated, plan.reason
            return policy, decision, plan.models
        return policy, decision, candidates

    # -- calling ---------------------------------------------------------------
    async def admit(self, spec: ModelSpec, ctx: RequestContext) -> None:
        """Ask each admitting filter before calling ``spec``; a refusal is a non-retryable BackendError."""
        for admit, blocking in self._admits:
            if blocking:
                await asyncio.get_running_loop().run_in_executor(self._admit_pool, admit, ctx, spec)
            else:
                admit(ctx, spec)

    async def complete(self, ctx: RequestContext) -> tuple[ChatResult, Decision]:
        """A whole answer; raises :class:`RequestRejected` or :class:`AllModelsFailed`."""
        if (answered := await self._image_answer(ctx)) is not None:
            return answered
        policy, decision, order = await self.decide(ctx)
        if self.images is not None:
            self.images.note(ctx, decision)
        turn = await self._task_turn(ctx, decision, order)
        if turn.answer is not None:  # a task model's student was sure: no model is called
            return turn.answer, decision
        if isinstance(policy, CascadePolicy) and not turn.teacher_first:
            result = await self._cascade(ctx, policy, turn.order, decision)
        else:
            result, spec = await fall_back(self.calls, ANSWER, turn.order, ctx, decision)
            await self._remember(ctx, decision, spec.name)
        turn.learn(decision.model, result.text)  # the teacher's answer teaches its task, in the task's own thread
        return result, decision

    async def open_stream(self, ctx: RequestContext) -> tuple[AsyncIterator[ChatChunk], Decision, ModelSpec]:
        """A stream whose first chunk already arrived (so faults before it fall back transparently).

        Returns (chunks including the first, decision, the model answering). A fault after the
        first chunk raises from the iterator; the gateway reports it in-stream.
        Cascades are buffered: the accepted answer comes as one chunk.
        """
        if (answered := await self._image_answer(ctx)) is not None:
            return replay(answered[0]), answered[1], self.by_name[answered[0].model]
        policy, decision, order = await self.decide(ctx)
        if self.images is not None:
            self.images.note(ctx, decision)
        turn = await self._task_turn(ctx, decision, order)
        if turn.answer is not None:
            return replay(turn.answer), decision, self.by_name[turn.answer.model]
        if isinstance(policy, CascadePolicy) and not turn.teacher_first:
            result = await self._cascade(ctx, policy, turn.order, decision)
            turn.learn(decision.model, result.text)
            return replay(result), decision, self.by_name.get(result.model, order[0])
        chunks, spec = await fall_back(self.calls, STREAM, turn.order, ctx, decision)
        await self._remember(ctx, decision, spec.name)
        return turn.tap(chunks, decision), decision, spec

    async def _task_turn(self, ctx: RequestContext, decision: Decision, order: list[ModelSpec]) -> TaskTurn:
        """What the task models make of the request (``sizewise.serve.tasks``): an answer, or the models to call."""
        if self.tasks is None:
            return TaskTurn(order)
        return await self.tasks.turn(ctx, decision, order)

    async def _image_answer(self, ctx: RequestContext) -> tuple[ChatResult, Decision] | None:
        """The local classifier's answer to a request with an image (:mod:`sizewise.serve.images`), if it gives one."""
        if self.images is None:
            return None
        name = self.aliases.get(ctx.model_field, ctx.model_field)
        return await self.images.answer(ctx, name if name in self.by_name else None)

    async def _cascade(
        self, ctx: RequestContext, policy: CascadePolicy, candidates: list[ModelSpec], decision: Decision
    ) -> ChatResult:
        """Run a cascade that writes its rungs into ``decision``; each rung's call is retried once."""

        async def call(spec: ModelSpec, inner: RequestContext) -> ChatResult:
            # The cascade records one step per rung; a rung's retries leave only their errors here.
            attempts = Decision(policy=decision.policy)
            result = await retry(self.calls, ANSWER, spec, inner, attempts)
            decision.errors += attempts.errors
            if result is None:
                raise BackendError(f"{spec.name}: failed twice", retryable=False)
            return result

        try:
            return await policy.run(ctx, candidates, call, decision)
        except BackendError as error:
            decision.errors.append(str(error))
            raise AllModelsFailed(decision) from None

    # -- finishing -------------------------------------------------------------
    def settle(
        self, ctx: RequestContext, decision: Decision | None, prompt_tokens: int = 0, completion_tokens: int = 0
    ) -> bool:
        """Tell the filters a request is over (the budget turns its reservation into the real cost).

        ``decision`` is None (or has no answer) when the request failed. Returns False when a hook
        failed: bookkeeping must not fail an answered request, and the filter logs its own error.
        """
        ok = True
        for settle in self._settles:
            try:
                settle(ctx, decision, prompt_tokens, completion_tokens)
            except Exception:
                ok = False
        return ok

    def backend_states(self) -> dict[str, Any]:
        """The state of each opened backend that reports one (local models: worker pid, starts, crashes)."""
        states = {name: getattr(backend, "state", lambda: None)() for name, backend in self._backends.items()}
        return {name: state for name, state in states.items() if state is not None}

    async def aclose(self) -> None:
        """Keep what the task models learned, close every backend that was opened, and the admission threads."""
        if self.tasks is not None:
            await self.tasks.aclose()
        for backend in self._backends.values():
            with contextlib.suppress(Exception):  # closing is best effort at shutdown
                await backend.aclose()
        self._backends.clear()
        if self._admit_pool is not None:
            self._admit_pool.shutdown(wait=False)
        if self.router_watch is not None:
            await asyncio.to_thread(self.router_watch.stop)


__all__ = ["AllModelsFailed", "Engine"]
