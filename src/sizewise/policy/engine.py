"""The policy engine: request -> filters -> policy -> model call (retry once, then fall back) -> answer.

The engine knows nothing about HTTP; the gateway builds a :class:`RequestContext`, asks the engine
for an answer (:meth:`Engine.complete`) or a stream (:meth:`Engine.open_stream`), and logs the
:class:`Decision` it gets back. See :mod:`sizewise.policy.types` for how to add filters and policies.

Faults: a call that raises (timeout, connection refused, 5xx, a stream cut before its first chunk)
is retried once on the same model when the error is retryable, then the next candidate of the plan
is tried. Only candidates that passed every filter are tried, so a fallback still satisfies the
request. Each attempt is a :class:`Step` of the decision; ``decision.fallback_from`` names the model
that was chosen when another one answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.core.text import conversation_text
from sizewise.errors import SizewiseError, UnknownModelError
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
    Step,
    build_filters,
    load_extensions,
    policy_factory,
    policy_keys,
)

MAX_STICKY_SESSIONS = 10_000
MAX_CACHED_POLICIES = 256


class AllModelsFailed(Exception):
    """Every candidate failed; carries the decision with one step per attempt."""

    def __init__(self, decision: Decision) -> None:
        super().__init__("; ".join(decision.errors) or "no model could answer")
        self.decision = decision


def _modalities(messages: list[dict[str, Any]]) -> frozenset[str]:
    found = {"text"}
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in ("image_url", "image", "input_image"):
                    found.add("image")
                elif kind in ("input_audio", "audio"):
                    found.add("audio")
                elif kind == "file":  # a document part: only a model whose catalog entry takes files
                    found.add("file")
    return frozenset(found)


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
        self.models = list(models)
        self.by_name = {spec.name: spec for spec in self.models}
        self.settings = settings
        self._backend_factory = backend_factory
        self._backends: dict[str, Backend] = {}
        self.env = PolicyEnv(self.models, settings, self.backend, router_dir=router_dir, catalog=catalog)
        if filters is None:
            filters = build_filters(self.env)
        self.filters = filters
        # Filters that must approve each model call just before it is made (the budget's reservation).
        self._admits = [admit for f in filters if (admit := getattr(f, "admit", None)) is not None]
        self._policies: dict[str, Policy] = {}
        self._sticky: OrderedDict[str, str] = OrderedDict()

    # -- set-up ----------------------------------------------------------------
    def backend(self, spec: ModelSpec) -> Backend:
        """The (lazily created, shared) backend of a catalog model."""
        backend = self._backends.get(spec.name)
        if backend is None:
            backend = self._backends[spec.name] = self._backend_factory(spec)
        return backend

    def policy(self, model_field: str) -> Policy:
        """The policy (or bypass) serving a ``model`` field; built once and cached."""
        policy = self._policies.get(model_field)
        if policy is not None:
            return policy
        if model_field in self.by_name:
            policy = BypassPolicy(self.by_name[model_field])
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
        if (
            len(self._policies) >= MAX_CACHED_POLICIES
        ):  # clients may send many thresholds; factories cache the heavy parts
            self._policies.clear()
        self._policies[model_field] = policy
        return policy

    def policy_names(self) -> list[str]:
        """Names to advertise in ``/v1/models`` besides the catalog models."""
        patterns = {"router-": "router-<name>-<threshold>", "multi-": "multi-<router>-<target>"}
        return ["sizewise", *(patterns[key] for key in policy_keys() if key in patterns)]

    def context(
        self,
        request: ChatRequest,
        *,
        model_field: str,
        stream: bool = False,
        user: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> RequestContext:
        """Parse what filters and policies need from a validated request."""
        headers = headers or {}
        text = conversation_text(request.messages)
        max_latency: float | None = None
        raw = headers.get("x-sizewise-max-latency-ms")
        if raw is not None:
            try:
                max_latency = float(raw)
            except ValueError:
                raise RequestRejected(
                    400, "header x-sizewise-max-latency-ms must be a number", "invalid_header"
                ) from None
            if not math.isfinite(max_latency) or max_latency <= 0:
                raise RequestRejected(400, "header x-sizewise-max-latency-ms must be positive", "invalid_header")
        return RequestContext(
            request=request,
            messages=request.messages,
            text=text,
            modalities=_modalities(request.messages),
            prompt_tokens=math.ceil(len(text) / 4),
            max_tokens=request.max_tokens,
            stream=stream,
            model_field=model_field,
            request_id=request_id or uuid.uuid4().hex,
            api_key=api_key,
            user=user,
            max_latency_ms=max_latency,
            headers=headers,
        )

    # -- deciding --------------------------------------------------------------
    def filter(self, ctx: RequestContext, decision: Decision) -> list[ModelSpec]:
        """Run every filter in order; raises :class:`RequestRejected` when none is left."""
        candidates = self.models
        for flt in self.filters:
            candidates, report = flt.apply(ctx, candidates)
            decision.filters.append(report)
            if not candidates:
                raise RequestRejected(400, f"no model satisfies this request ({flt.name})", "no_model_available")
        return candidates

    async def _plan(self, ctx: RequestContext, policy: RoutingPolicy, candidates: list[ModelSpec]) -> Plan:
        if self.settings.sticky_sessions and ctx.user:
            name = self._sticky.get(ctx.user)
            spec = self.by_name.get(name) if name else None
            if spec is not None and spec in candidates:
                self._sticky.move_to_end(ctx.user)
                return Plan([spec, *(s for s in candidates if s is not spec)], reason="sticky session")
        return await policy.plan(ctx, candidates)

    def _remember(self, ctx: RequestContext, model: str) -> None:
        if self.settings.sticky_sessions and ctx.user and ctx.user not in self._sticky:
            self._sticky[ctx.user] = model
            if len(self._sticky) > MAX_STICKY_SESSIONS:
                self._sticky.popitem(last=False)

    async def decide(self, ctx: RequestContext) -> tuple[Policy, Decision, list[ModelSpec]]:
        """Filters and the policy: returns (policy, decision so far, models to try in order)."""
        policy = self.policy(ctx.model_field)
        decision = Decision(policy=policy.name)
        for flt in self.filters:  # a filter's slow part (the privacy scan) runs off the event loop here
            prepare = getattr(flt, "prepare", None)
            if prepare is not None:
                await prepare(ctx)
        reports = len(decision.filters)
        while True:
            try:
                candidates = self.filter(ctx, decision)
                break
            except RequestRejected as rejection:
                # "Not now": a rejection may carry ``async wait() -> bool`` (the budget, held by requests in
                # flight, waits for them to settle); True runs the chain again, False keeps the rejection.
                wait = getattr(rejection, "wait", None)
                if wait is None or not await wait():
                    raise
                del decision.filters[reports:]
        if isinstance(policy, RoutingPolicy):
            plan = await self._plan(ctx, policy, candidates)
            if not plan.models:
                raise RequestRejected(400, "the policy found no model for this request", "no_model_available")
            decision.model = plan.models[0].name
            decision.score, decision.threshold = plan.score, plan.threshold
            decision.escalated, decision.reason = plan.escalated, plan.reason
            return policy, decision, plan.models
        return policy, decision, candidates

    # -- calling ---------------------------------------------------------------
    def admit(self, spec: ModelSpec, ctx: RequestContext) -> None:
        """Ask each admitting filter before calling ``spec``; a refusal is a non-retryable BackendError."""
        for admit in self._admits:
            admit(ctx, spec)

    async def call(self, spec: ModelSpec, ctx: RequestContext) -> ChatResult:
        """One model call under the request timeout (no retry); errors become :class:`BackendError`."""
        try:
            self.admit(spec, ctx)
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await self.backend(spec).complete(ctx.request)
        except BackendError:
            raise
        except TimeoutError:
            raise BackendError(f"{spec.name}: timed out after {self.settings.request_timeout_s:g}s") from None
        except SizewiseError as error:  # e.g. a model file missing: this model cannot answer, others may
            raise BackendError(f"{spec.name}: {error}", retryable=False) from None
        except Exception as error:  # a backend bug must not become a 500: treat it as a failed call
            raise BackendError(f"{spec.name}: {type(error).__name__}: {error}") from None

    async def _attempts(self, spec: ModelSpec, ctx: RequestContext, decision: Decision) -> ChatResult | None:
        """Call ``spec``, retrying once when the error is retryable; record each attempt."""
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                result = await self.call(spec, ctx)
            except BackendError as error:
                _record_failure(decision, spec, f"attempt {attempt} failed", started, str(error))
                if not error.retryable:
                    return None
                continue
            cost = spec.cost_usd(result.prompt_tokens, result.completion_tokens)
            decision.steps.append(
                Step(
                    spec.name,
                    score=decision.score,
                    threshold=decision.threshold,
                    accepted=True,
                    reason="answered",
                    cost=cost,
                    latency_s=time.perf_counter() - started,
                )
            )
            decision.cost += cost
            return result
        return None

    def _fell_back(self, decision: Decision, chosen: str | None, answered: str) -> None:
        if chosen is not None and answered != chosen:
            decision.fallback_from = chosen
        decision.model = answered

    async def complete(self, ctx: RequestContext) -> tuple[ChatResult, Decision]:
        """A whole answer; raises :class:`RequestRejected` or :class:`AllModelsFailed`."""
        policy, decision, order = await self.decide(ctx)
        if isinstance(policy, CascadePolicy):
            return await self._cascade(ctx, policy, order, decision)
        chosen = decision.model
        for spec in order:
            result = await self._attempts(spec, ctx, decision)
            if result is not None:
                self._fell_back(decision, chosen, spec.name)
                self._remember(ctx, spec.name)
                return result, decision
        raise AllModelsFailed(decision)

    async def _cascade(
        self, ctx: RequestContext, policy: CascadePolicy, candidates: list[ModelSpec], decision: Decision
    ) -> tuple[ChatResult, Decision]:
        async def call(spec: ModelSpec, inner: RequestContext) -> ChatResult:
            # The cascade sees one call per rung; retries stay inside, recorded in this decision.
            result = await self._attempts(spec, inner, decision)
            if result is None:
                raise BackendError(f"{spec.name}: failed twice", retryable=False)
            return result

        try:
            result, cascade_decision = await policy.run(ctx, candidates, call)
        except BackendError as error:
            decision.errors.append(str(error))
            raise AllModelsFailed(decision) from None
        cascade_decision.filters = decision.filters + cascade_decision.filters
        cascade_decision.errors = decision.errors + cascade_decision.errors
        if not cascade_decision.steps:
            cascade_decision.steps = decision.steps
        cascade_decision.cost = cascade_decision.cost or decision.cost
        cascade_decision.policy = policy.name
        self._remember(ctx, result.model)
        return result, cascade_decision

    async def open_stream(self, ctx: RequestContext) -> tuple[AsyncIterator[ChatChunk], Decision, ModelSpec]:
        """A stream whose first chunk already arrived (so faults before it fall back transparently).

        Returns (chunks including the first, decision, the model answering). A fault after the
        first chunk raises from the iterator; the gateway reports it in-stream.
        Cascades are buffered: the accepted answer comes as one chunk.
        """
        policy, decision, order = await self.decide(ctx)
        if isinstance(policy, CascadePolicy):
            result, decision = await self._cascade(ctx, policy, order, decision)
            return _replay(result), decision, self.by_name.get(result.model, order[0])
        chosen = decision.model
        for spec in order:
            for attempt in (1, 2):
                started = time.perf_counter()
                iterator: AsyncIterator[ChatChunk] | None = None
                try:
                    self.admit(spec, ctx)
                    iterator = self.backend(spec).stream(ctx.request).__aiter__()
                    async with asyncio.timeout(self.settings.request_timeout_s):
                        first = await iterator.__anext__()
                except StopAsyncIteration:
                    first = ChatChunk(finish_reason="stop", prompt_tokens=0, completion_tokens=0)
                except Exception as error:
                    message = "timed out" if isinstance(error, TimeoutError) else str(error) or type(error).__name__
                    _record_failure(decision, spec, f"stream attempt {attempt} failed", started, message)
                    if iterator is not None:
                        await _close(iterator)
                    if isinstance(error, BackendError) and not error.retryable:
                        break
                    continue
                decision.steps.append(
                    Step(
                        spec.name,
                        score=decision.score,
                        threshold=decision.threshold,
                        accepted=True,
                        reason="streaming",
                        latency_s=time.perf_counter() - started,
                    )
                )
                self._fell_back(decision, chosen, spec.name)
                self._remember(ctx, spec.name)
                assert iterator is not None  # set before the first chunk could arrive
                return _prepend(first, iterator), decision, spec
        raise AllModelsFailed(decision)

    def backend_states(self) -> dict[str, Any]:
        """The state of each opened backend that reports one (local models: worker pid, starts, crashes)."""
        states = {name: getattr(backend, "state", lambda: None)() for name, backend in self._backends.items()}
        return {name: state for name, state in states.items() if state is not None}

    async def aclose(self) -> None:
        """Close every backend that was opened."""
        for backend in self._backends.values():
            with contextlib.suppress(Exception):  # closing is best effort at shutdown
                await backend.aclose()
        self._backends.clear()


async def _prepend(first: ChatChunk, rest: AsyncIterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
    yield first
    if first.finish_reason is not None:
        return
    async for chunk in rest:
        yield chunk


async def _replay(result: ChatResult) -> AsyncIterator[ChatChunk]:
    yield ChatChunk(text=result.text)
    yield ChatChunk(
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )


async def _close(iterator: AsyncIterator[ChatChunk]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):  # the stream already failed; closing is best effort
            await closer()


def _record_failure(decision: Decision, spec: ModelSpec, reason: str, started: float, message: str) -> None:
    """Add a failed attempt to the decision's steps and errors (what the response and the log show)."""
    decision.steps.append(Step(spec.name, reason=reason, latency_s=time.perf_counter() - started, error=message))
    # Backend errors already start with the model's name; name it once.
    decision.errors.append(message if message.startswith(f"{spec.name}: ") else f"{spec.name}: {message}")
