"""The OpenAI-compatible routing gateway: build one with :func:`create_app` (there is no global app).

Endpoints: ``POST /v1/chat/completions`` (streaming and not), ``GET /v1/models``, ``GET /healthz``,
``GET /metrics``. The ``model`` field selects ``sizewise`` (the default policy), a registered policy
(``router-<name>-<threshold>``, ``cascade-...``) or a catalog model (no routing). Every answer says
what was decided: headers ``x-sizewise-model``, ``x-sizewise-score``, ``x-sizewise-threshold`` and a
``sizewise`` object in the body (in the final chunk for streams).

The chat handler reads the raw body and validates it with pydantic itself (no FastAPI body
parsing, no middleware) to keep the gateway's own overhead small.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse

from sizewise.backends.base import Backend, BackendError, ChatResult
from sizewise.catalog.schema import CatalogSpec, GatewaySettings, ModelSpec
from sizewise.errors import ConfigError, SizewiseError, UnknownModelError, UnknownNameError
from sizewise.gateway.auth import KeyChecker
from sizewise.gateway.errors import GatewayError, error_response
from sizewise.gateway.log import LogEntry, RequestLog
from sizewise.gateway.metrics import Metrics
from sizewise.gateway.schemas import parse_request
from sizewise.gateway.streaming import sse_events
from sizewise.policy.engine import AllModelsFailed, Engine
from sizewise.policy.types import Decision, RequestContext, RequestRejected

JSON = "application/json"
logger = logging.getLogger("sizewise.gateway")


def _unpack(catalog: Any) -> tuple[list[ModelSpec], GatewaySettings]:
    """Models and gateway settings of a catalog object (``CatalogSpec`` or the loaded ``Catalog``)."""
    if isinstance(catalog, CatalogSpec):
        return list(catalog.models), catalog.gateway
    spec = getattr(catalog, "spec", None)
    if isinstance(spec, CatalogSpec):
        return list(spec.models), spec.gateway
    models = getattr(catalog, "models", None)
    if models is None:
        raise ConfigError("create_app needs a catalog with models")
    models = list(models.values()) if isinstance(models, dict) else list(models)
    return models, getattr(catalog, "gateway", None) or GatewaySettings()


def _headers(decision: Decision, request_id: str) -> dict[str, str]:
    return {
        "x-sizewise-model": decision.model or "",
        "x-sizewise-score": "" if decision.score is None else f"{decision.score:.6g}",
        "x-sizewise-threshold": "" if decision.threshold is None else f"{decision.threshold:.6g}",
        "x-sizewise-policy": decision.policy,
        "x-sizewise-fallback": decision.fallback_from or "",
        "x-request-id": request_id,
    }


def _error_status(error: Exception) -> GatewayError:
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, RequestRejected):
        return GatewayError(error.status, error.message, error.code, error.param)
    if isinstance(error, UnknownModelError | UnknownNameError):
        return GatewayError(404, str(error), "model_not_found", "model")
    if isinstance(error, AllModelsFailed):
        return GatewayError(502, f"every model failed: {error}", "upstream_error")
    return GatewayError(400, str(error), "invalid_request")


def _check_configured_policy(engine: Engine, settings: GatewaySettings) -> None:
    """Build the policy the catalog configures, so a bad ``gateway.router`` or ``gateway.default_policy``
    fails at start-up with a clear message instead of at the first request."""
    if settings.router is None and settings.default_policy == "sizewise":
        return  # the built-in default: a broken default.zip falls back to the heuristic, with a warning
    try:
        engine.policy("sizewise")
    except (SizewiseError, RequestRejected) as error:  # RequestRejected: e.g. a bad cascade-<scorer> name
        raise ConfigError(
            f"gateway settings (router {settings.router!r}, default_policy {settings.default_policy!r}): {error}"
        ) from None


def _load_replay_tables(engine: Engine) -> None:
    """Build the ``replay`` backends now (reading a table is quick), so a table that is a folder, not a
    readable table or without the model's answers fails at start-up instead of at the first request."""
    for spec in engine.models:
        if spec.backend == "openai":
            engine.backend(spec)  # cheap (no connection yet); a bad ca_bundle fails here, at start-up
        if spec.backend != "replay":
            continue
        try:
            engine.backend(spec)
        except (SizewiseError, BackendError) as error:
            raise ConfigError(f"model {spec.name!r}: cannot replay its table: {error}") from None


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
    if isinstance(catalog, CatalogSpec):
        from sizewise.catalog.catalog import Catalog

        catalog = Catalog(catalog)  # backends resolve model files through the Catalog object
    models, catalog_settings = _unpack(catalog)
    settings = settings or catalog_settings
    default_backends = backend_factory is None
    if backend_factory is None:
        backend_factory = _default_backends(catalog)

    if router_dir is None and settings.router_dir is not None:
        resolve = getattr(catalog, "resolve", Path)
        router_dir = resolve(settings.router_dir)
    directory = Path(router_dir) if router_dir is not None else None
    engine = Engine(models, settings, backend_factory, router_dir=directory, catalog=catalog)
    _check_configured_policy(engine, settings)
    if default_backends:
        _load_replay_tables(engine)
    url = log_url or settings.log_url
    request_log = None if url == "none" else RequestLog(url, log_text=settings.log_text)
    metrics = Metrics.for_gateway(engine.by_name, settings.default_policy)
    if request_log is not None:
        request_log.register(metrics.registry)  # a writer that cannot write shows in /metrics
    # Request ids: a random per-app prefix plus a counter (unique, and cheaper than uuid4 per request).
    id_prefix = os.urandom(6).hex()
    id_counter = itertools.count(1)
    keys = KeyChecker(settings.api_keys)
    settle_hooks = [hook for f in engine.filters if (hook := getattr(f, "settle", None)) is not None]
    llms = engine.env.llms()
    big = engine.by_name[settings.ladder[-1]] if settings.ladder else (llms[-1] if llms else models[-1])
    model_list = json.dumps(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "sizewise"}
                for name in [*engine.policy_names(), *engine.by_name]
            ],
        }
    ).encode()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.aclose()
        if request_log is not None:
            request_log.close()

    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # FastAPI >= 0.160 wraps every request in OpenTelemetry by default; sizewise has /metrics.
        options["telemetry"] = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(
        title="sizewise gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, **options
    )
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.request_log = request_log

    def finish(
        ctx: RequestContext | None,
        decision: Decision | None,
        status: int,
        started: float,
        *,
        request_id: str,
        api_key: str | None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        latency = time.perf_counter() - started
        if ctx is not None:
            for settle in settle_hooks:
                try:
                    settle(ctx, decision, prompt_tokens, completion_tokens)
                except Exception:  # bookkeeping must not fail an answered request; the filter logs its own
                    metrics.errors.labels("settle").inc()
        metrics.observe(decision, status, latency, prompt_tokens, completion_tokens)
        if request_log is not None and status != 401:  # 401s are counted, not stored: no disk to fill for anyone
            request_log.write(
                LogEntry(
                    request_id=request_id,
                    text=ctx.text if ctx else "",
                    status=status,
                    latency_s=latency,
                    decision=decision,
                    api_key=api_key,
                    user=ctx.user if ctx else None,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    big_cost=big.cost_usd(prompt_tokens, completion_tokens),
                    stream=bool(ctx and ctx.stream),
                )
            )

    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        request_id = f"{id_prefix}{next(id_counter):x}"
        ctx: RequestContext | None = None
        api_key: str | None = None
        decision: Decision | None = None
        try:
            record = keys.check(request.headers)
            api_key = record.name if record else None
            body = await parse_request(request, settings.max_body_bytes, settings.max_messages)
            if body.n > 1:
                raise GatewayError(400, "n > 1 is not supported: send one request per answer", "unsupported_n", "n")
            ctx = engine.context(
                body.to_chat_request(),
                model_field=body.model,
                stream=body.stream,
                user=body.user,
                api_key=api_key,
                headers=request.headers,
                request_id=request_id,
            )
            if body.stream:
                return await _stream(ctx, started, api_key, request)
            result, decision = await engine.complete(ctx)
        except (GatewayError, RequestRejected, SizewiseError, AllModelsFailed) as error:
            failure = _error_status(error)
            if isinstance(error, AllModelsFailed):
                decision = error.decision
            finish(ctx, decision, failure.status, started, request_id=request_id, api_key=api_key)
            headers = _headers(decision, request_id) if decision else {"x-request-id": request_id}
            return error_response(failure.status, failure.message, failure.code, failure.param, headers)
        except Exception as error:  # a bug: still logged, and one JSON line to the client, never a traceback
            logger.exception("request %s: unexpected error", request_id)
            finish(ctx, decision, 500, started, request_id=request_id, api_key=api_key)
            return error_response(500, f"internal error: {type(error).__name__}: {error}", "internal_error")
        finish(
            ctx,
            decision,
            499 if await request.is_disconnected() else 200,  # a client gone before its answer: a disconnect
            started,
            request_id=request_id,
            api_key=api_key,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
        )
        return Response(
            _completion_body(result, decision, request_id), headers=_headers(decision, request_id), media_type=JSON
        )

    async def _stream(ctx: RequestContext, started: float, api_key: str | None, request: Request) -> Response:
        chunks, decision, spec = await engine.open_stream(ctx)

        done: list[int] = []

        def on_done(status: int, prompt_tokens: int, completion_tokens: int) -> None:
            done.append(status)
            finish(
                ctx,
                decision,
                status,
                started,
                request_id=ctx.request_id,
                api_key=api_key,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )

        async def if_never_started() -> None:  # the client left before the first byte: sse_events never ran
            if not done:
                closer = getattr(chunks, "aclose", None)
                if closer is not None:
                    await closer()
                on_done(499, 0, 0)

        if await request.is_disconnected():  # gone while the first chunk was awaited: nobody to send it to
            await if_never_started()
            return Response(status_code=499)
        events = sse_events(chunks, decision, spec.name, ctx.request_id, on_done)
        headers = _headers(decision, ctx.request_id)
        return _ReportedStream(events, if_never_started, media_type="text/event-stream", headers=headers)

    def guarded(handler: Callable[[], Response]) -> Callable[[Request], Any]:
        """``handler`` behind the API key when keys are on (model names and usage are not public)."""

        async def endpoint(request: Request) -> Response:
            try:
                keys.check(request.headers)
            except GatewayError as error:
                return error_response(error.status, error.message, error.code)
            return handler()

        return endpoint

    def list_models() -> Response:
        return Response(model_list, media_type=JSON)

    async def healthz(_: Request) -> Response:
        health = {"status": "ok", "models": len(models), "workers": engine.backend_states()}
        return Response(json.dumps(health).encode(), media_type=JSON)

    def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    # Plain Starlette routes (no FastAPI dependency solving): the handlers read the request themselves.
    app.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_route("/v1/models", guarded(list_models), methods=["GET"])
    app.add_route("/healthz", healthz, methods=["GET"])
    app.add_route("/metrics", guarded(metrics_endpoint), methods=["GET"])

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> Response:
        code = "not_found" if error.status_code == 404 else "http_error"
        return error_response(error.status_code, str(error.detail), code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> Response:
        # One line, no traceback: the server log has the details.
        return error_response(500, f"internal error: {type(error).__name__}: {error}", "internal_error")

    return app


class _ReportedStream(StreamingResponse):
    """A streaming response that runs ``after`` once it is over, sent or not (the log gets its row)."""

    def __init__(self, content: AsyncIterator[bytes], after: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.after = after

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.after()


def _default_backends(catalog: Any) -> Callable[[ModelSpec], Backend]:
    """``make_backend`` with the catalog, which resolves model files, tables and CA bundles."""
    from sizewise.backends.factory import make_backend

    return lambda spec: make_backend(spec, catalog)


def _completion_body(result: ChatResult, decision: Decision, request_id: str) -> bytes:
    body = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": decision.model or result.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
        "sizewise": decision.to_dict(),
    }
    return json.dumps(body).encode()
