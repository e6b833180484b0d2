"""The OpenAI-compatible routing gateway: build one with :func:`create_app` (there is no global app).

Endpoints: ``POST /v1/chat/completions`` (streaming and not), ``GET /v1/models`` (and ``/{id}``),
``GET /healthz``, ``GET /metrics``, Anthropic's ``POST /v1/messages`` (:mod:`sizewise.gateway.messages`),
``POST /v1/route`` and ``POST /v1/embeddings`` (:mod:`sizewise.gateway.endpoints`,
:mod:`sizewise.gateway.embeddings`), and their OpenAPI schema at ``GET /openapi.json``. The ``model`` field selects
``sizewise`` (the default policy), a registered policy (``router-<name>-<threshold>``, ``cascade-...``)
or a catalog model (no routing). Every answer says what was decided: headers ``x-sizewise-model``,
``x-sizewise-score``, ``x-sizewise-threshold`` and a ``sizewise`` object in the body (in the final
chunk for streams).

HTTP only: the handlers are module-level functions that read one :class:`GatewayState` from
``request.app.state.gateway``; deciding, calling models and the budget's bookkeeping are the
engine's (:mod:`sizewise.serve.pipeline`). The chat handler reads the raw body and validates it with
pydantic itself (within ``gateway.max_body_bytes``); FastAPI builds the OpenAPI schema of every
endpoint (:mod:`sizewise.gateway.openapi`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from sizewise.backends.base import Backend, ChatChunk
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.gateway.access_log import AccessLog
from sizewise.gateway.audio import transcriptions
from sizewise.gateway.body_deadline import BodyDeadline
from sizewise.gateway.client_texts import ClientTexts
from sizewise.gateway.dashboard import install_dashboard
from sizewise.gateway.embeddings import embeddings
from sizewise.gateway.endpoints import model_by_id, route
from sizewise.gateway.errors import GatewayError, error_response
from sizewise.gateway.feedback import PendingNotes, post_feedback, start_outcomes, take_inline
from sizewise.gateway.messages import count_tokens, messages
from sizewise.gateway.metrics_shared import exposition
from sizewise.gateway.openapi import install_schema
from sizewise.gateway.origin import CrossSiteGuard
from sizewise.gateway.readiness import readyz
from sizewise.gateway.responses import JSON, completion_body, decision_headers
from sizewise.gateway.schemas import parse_request, request_context
from sizewise.gateway.shadowing import LABEL_KEY, take_label
from sizewise.gateway.state import GatewayState, ReportedStream, StreamReport, build_state, unpack_catalog
from sizewise.gateway.streaming import OnDone, sse_events
from sizewise.policy.types import Decision, RequestContext
from sizewise.serve.tasks import TASK_KEY, take_task

#: The old private name, still imported by the CLI and tests.
_unpack = unpack_catalog

logger = logging.getLogger("sizewise.gateway")


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


# -- handlers ----------------------------------------------------------------------------------------------
async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``: decide, call, answer (JSON or SSE), log."""
    state = _state(request)
    started = time.perf_counter()
    request_id = state.next_id()
    ctx: RequestContext | None = None
    api_key: str | None = None
    decision: Decision | None = None
    try:
        record = state.keys.check(request.headers)
        api_key = record.name if record else None
        body = await parse_request(request, state.settings.max_body_bytes, state.settings.max_messages)
        # The `sizewise` object (feedback on an earlier answer) is the gateway's, never sent upstream.
        label = take_label(body.model_extra)  # sizewise.reference / answer_format: what shadow judging grades by
        task = take_task(body.model_extra)  # sizewise.task: the task model this request is for (serve.tasks)
        notes = PendingNotes(state.outcomes, take_inline(body.model_extra), api_key)  # stored while the model answers
        # n > 1 passes through: upstreams answer n choices, local models n samples in turn (docs/gateway.md).
        ctx = request_context(request, body, stream=body.stream, api_key=api_key, request_id=request_id)
        ctx.extras[TASK_KEY] = task
        if body.stream:
            ctx.extras[LABEL_KEY] = label  # for shadow judging, once the stream is over
            return await _stream(state, ctx, started, api_key, request, notes)
        result, decision = await state.engine.complete(ctx)
        decision.notes.update(await notes.result())
    except Exception as error:  # one JSON line to the client, never a traceback; the log keeps the row
        failure, headers = state.refuse(error, ctx, decision, started, request_id=request_id, api_key=api_key)
        return error_response(failure.status, failure.message, failure.code, failure.param, headers)
    state.finish(
        ctx,
        decision,
        499 if await request.is_disconnected() else 200,  # a client gone before its answer: a disconnect
        started,
        request_id=request_id,
        api_key=api_key,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
    body_bytes = completion_body(result, decision, request_id, logprobs=body.logprobs)
    # Shadow judging starts only once the response is sent (a background task), never on the request path.
    later = state.shadow.after(ctx, decision, result, label) if state.shadow is not None else None
    return Response(body_bytes, headers=decision_headers(decision, request_id), media_type=JSON, background=later)


async def _stream(
    state: GatewayState,
    ctx: RequestContext,
    started: float,
    api_key: str | None,
    request: Request,
    notes: PendingNotes | None = None,
) -> Response:
    chunks, decision, spec = await state.engine.open_stream(ctx)
    decision.notes.update(await notes.result() if notes is not None else {})
    report = StreamReport(state, ctx, decision, chunks, started, api_key)
    if await request.is_disconnected():  # gone while the first chunk was awaited: nobody to send it to
        await report.if_never_started()
        return Response(status_code=499)
    asked = ctx.request.extra.get("stream_options") or {}
    include_usage = isinstance(asked, dict) and asked.get("include_usage") is True
    shown: AsyncIterator[ChatChunk] = chunks
    on_done: OnDone = report.done  # typed as the callback, so the shadow tap's may replace it
    if state.shadow is not None:  # a chosen stream keeps its text; its shadow job is queued when it is over
        shown, on_done = state.shadow.tap(ctx, decision, chunks, report.done)
    events = sse_events(shown, decision, spec.name, ctx.request_id, on_done, include_usage=include_usage)
    headers = decision_headers(decision, ctx.request_id)
    return ReportedStream(events, report.if_never_started, media_type="text/event-stream", headers=headers)


def _denied(state: GatewayState, request: Request) -> Response | None:
    """A 401 when keys are on and this request has none that is valid (model names and usage are not public)."""
    try:
        state.keys.check(request.headers)
    except GatewayError as error:
        return error_response(error.status, error.message, error.code)
    return None


def _not_operator(state: GatewayState, request: Request) -> Response | None:
    """A 403 for a key that may see only its own traffic: /metrics counts every client's requests and cost."""
    if _operator(state, request):
        return None
    message = "/metrics counts every client's traffic: it needs an operator key (api_keys[].dashboard: all)"
    return error_response(403, message, "metrics_forbidden")


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: the names the ``model`` field accepts (``endpoints.advertised_names``)."""
    state = _state(request)
    return _denied(state, request) or Response(state.model_list, media_type=JSON)


async def healthz(request: Request) -> Response:
    """``GET /healthz``: liveness and the model count; each local worker's state with keys off or to an operator."""
    state = _state(request)
    health: dict[str, Any] = {"status": "ok", "models": len(state.engine.models)}
    if _operator(state, request):  # which models ran, and when they restarted: an operator's business
        health["workers"] = state.engine.backend_states()
    return Response(json.dumps(health).encode(), media_type=JSON)


def _operator(state: GatewayState, request: Request) -> bool:
    """True with keys off, or for a valid operator's key (``dashboard: all``); never an error (``/healthz`` is open)."""
    try:
        record = state.keys.check(request.headers)
    except GatewayError:
        return False
    return record is None or record.dashboard == "all"


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: Prometheus text; with shared state every replica's, labelled ``replica`` (metrics_shared)."""
    state = _state(request)
    denied = _denied(state, request) or _not_operator(state, request)
    if denied is not None:
        return denied
    try:  # ?scope=local: this process's alone (a Prometheus that scrapes every replica itself)
        body = await exposition(state.metrics, state.shared_metrics, request.query_params.get("scope"))
    except GatewayError as error:
        return error_response(error.status, error.message, error.code, error.param)
    return Response(body, media_type=state.metrics.content_type)


async def _http_error(_: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    code = "not_found" if status == 404 else "http_error"
    return error_response(status, str(getattr(error, "detail", error)), code)


async def _unexpected(request: Request, error: Exception) -> Response:
    # One line, no traceback and not the error's text (a database error carries its SQL and parameters,
    # which may hold other clients' rows): the server log has the details.
    logger.error("%s %s: unexpected error", request.method, request.url.path, exc_info=error)
    return error_response(500, f"internal error ({type(error).__name__}); the gateway's log has it", "internal_error")


HANDLERS: dict[str, tuple[Callable[[Request], Awaitable[Response]], str]] = {
    "/v1/chat/completions": (chat_completions, "POST"),
    "/v1/models": (list_models, "GET"),
    "/healthz": (healthz, "GET"),
    "/readyz": (readyz, "GET"),
    "/metrics": (metrics_endpoint, "GET"),
    "/v1/feedback": (post_feedback, "POST"),
    "/v1/messages": (messages, "POST"),
    "/v1/messages/count_tokens": (count_tokens, "POST"),
    "/v1/models/{model_id:path}": (model_by_id, "GET"),
    "/v1/embeddings": (embeddings, "POST"),
    "/v1/route": (route, "POST"),
    "/v1/audio/transcriptions": (transcriptions, "POST"),
}


# -- the app -----------------------------------------------------------------------------------------------
def create_app(
    catalog: Any,
    *,
    settings: GatewaySettings | None = None,
    router_dir: str | Path | None = None,
    backend_factory: Callable[[ModelSpec], Backend] | None = None,
    log_url: str | None = None,
) -> FastAPI:
    """A gateway app for ``catalog`` (a loaded catalog or a ``CatalogSpec``).

    ``settings`` overrides the catalog's ``gateway`` section; ``log_url`` overrides ``settings.log_url``
    (pass ``"none"`` to switch the request log off); ``backend_factory`` defaults to
    :func:`sizewise.backends.factory.make_backend`.
    """
    state = build_state(
        catalog, settings=settings, router_dir=router_dir, backend_factory=backend_factory, log_url=log_url
    )
    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # FastAPI >= 0.160 wraps every request in OpenTelemetry by default; sizewise has /metrics.
        options["telemetry"] = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(title="sizewise gateway", lifespan=_lifespan, docs_url=None, redoc_url=None, **options)
    app.state.gateway = state
    state.outcomes = start_outcomes(state)  # feedback, kept vectors, savings estimate (None without a log)
    for path, (handler, method) in HANDLERS.items():  # plain routes: no dependency solving per request
        app.add_route(path, handler, methods=[method])
    install_schema(app, HANDLERS)
    install_dashboard(app)  # /dashboard: charts of the request log, behind the key (docs/gateway.md)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(CrossSiteGuard, allowed=state.settings.cors_origins)  # cross-site POSTs: 403 (gateway/origin.py)
    app.add_middleware(BodyDeadline, timeout_s=state.settings.body_timeout_s)  # a trickling body: 408 (slowloris)
    app.add_middleware(ClientTexts)  # a request's texts stay out of the shared embedding caches (timing)
    if state.settings.access_log:  # one line per request on the sizewise.access logger (uvicorn's stays off)
        app.add_middleware(AccessLog)
    if state.settings.cors_origins:  # browser pages on these origins may call the gateway and read its headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=state.settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=[*decision_headers(Decision(policy=""), ""), "retry-after"],
        )
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: GatewayState = app.state.gateway
    if state.shared_metrics is not None:  # a served app publishes its /metrics for the other replicas
        await asyncio.to_thread(state.shared_metrics.start)
    yield
    if state.shared_metrics is not None:
        await asyncio.to_thread(state.shared_metrics.stop)
    if state.shadow is not None:  # before the backends close: running shadow jobs use them
        await state.shadow.aclose()
    await state.engine.aclose()
    if state.log is not None:
        state.log.close()
    if state.outcomes is not None:  # after the log: its writer hands the last prompts to the outcome store
        state.outcomes.close()
