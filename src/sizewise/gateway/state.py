"""What the gateway's handlers share (:class:`GatewayState`), how it is built from a catalog
(:func:`build_state`), and how a streamed answer is finished exactly once (:class:`StreamReport`,
:class:`ReportedStream`): kept apart from :mod:`sizewise.gateway.app`'s handlers so each module reads in one sitting.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.responses import StreamingResponse

from sizewise.backends.base import Backend, BackendError, ChatChunk
from sizewise.catalog.schema import CatalogSpec, GatewaySettings, ModelSpec
from sizewise.errors import ConfigError, SizewiseError
from sizewise.gateway.auth import KeyChecker
from sizewise.gateway.endpoints import advertised_names
from sizewise.gateway.errors import GatewayError
from sizewise.gateway.feedback import GatewayOutcomes
from sizewise.gateway.log import LogEntry, RequestLog
from sizewise.gateway.metrics import Metrics
from sizewise.gateway.metrics_shared import SharedMetrics, share_metrics
from sizewise.gateway.responses import decision_headers, error_status, model_list
from sizewise.gateway.shadowing import ShadowHook, build_shadow
from sizewise.policy.types import Decision, RequestContext, RequestRejected
from sizewise.serve.call import AllModelsFailed
from sizewise.serve.pipeline import Engine

logger = logging.getLogger("sizewise.gateway")


@dataclass
class GatewayState:
    """Everything the handlers share, in ``app.state.gateway``."""

    engine: Engine
    settings: GatewaySettings
    metrics: Metrics
    log: RequestLog | None
    keys: KeyChecker
    #: The ``/v1/models`` body, encoded once.
    model_list: bytes
    #: Request ids: a random per-app prefix plus a counter (unique, and cheaper than uuid4 per request).
    id_prefix: str = field(default_factory=lambda: os.urandom(6).hex())
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    #: Feedback, kept prompt vectors and the savings estimate (:mod:`sizewise.gateway.feedback`); None without a log.
    outcomes: GatewayOutcomes | None = None
    #: Shadow judging (``gateway.shadow``), None when off.
    shadow: ShadowHook | None = None
    #: ``GET /readyz``'s answer: False while ``sizewise serve --warm`` loads the models.
    ready: bool = True
    #: Every replica's ``/metrics`` in the shared database (``gateway.state_url``); None: this process's only.
    shared_metrics: SharedMetrics | None = None

    def next_id(self) -> str:
        """A new request id."""
        return f"{self.id_prefix}{next(self.ids):x}"

    def refuse(
        self,
        error: Exception,
        ctx: RequestContext | None,
        decision: Decision | None,
        started: float,
        *,
        request_id: str,
        api_key: str | None,
    ) -> tuple[GatewayError, dict[str, str]]:
        """A request that failed: logged with its status; returns the error and headers the client gets
        (each API writes them in its own error shape). Anything unforeseen is a bug: a 500, still logged."""
        if isinstance(error, GatewayError | RequestRejected | SizewiseError | AllModelsFailed):
            failure = error_status(error)
            decision = error.decision if isinstance(error, AllModelsFailed) else decision
        else:
            logger.exception("request %s: unexpected error", request_id)
            # Never the error's text: a database error carries its SQL and parameters (other clients' rows).
            message = f"internal error ({type(error).__name__}); the gateway's log has it under request {request_id}"
            failure = GatewayError(500, message, "internal_error")
        self.finish(ctx, decision, failure.status, started, request_id=request_id, api_key=api_key)
        return failure, decision_headers(decision, request_id) if decision else {"x-request-id": request_id}

    def finish(
        self,
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
        """A request is over: the engine settles it, metrics count it, the log stores it."""
        latency = time.perf_counter() - started
        if ctx is not None and not self.engine.settle(ctx, decision, prompt_tokens, completion_tokens):
            self.metrics.errors.labels("settle").inc()
        self.metrics.observe(decision, status, latency, prompt_tokens, completion_tokens)
        if self.log is not None and status != 401:  # 401s are counted, not stored: no disk to fill for anyone
            self.log.write(
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
                    big_cost=self.engine.big.cost_usd(prompt_tokens, completion_tokens),
                    stream=bool(ctx and ctx.stream),
                )
            )


def build_state(
    catalog: Any,
    *,
    settings: GatewaySettings | None = None,
    router_dir: str | Path | None = None,
    backend_factory: Callable[[ModelSpec], Backend] | None = None,
    log_url: str | None = None,
) -> GatewayState:
    """The engine, request log, metrics and keys of a gateway (see :func:`create_app`)."""
    if isinstance(catalog, CatalogSpec):
        from sizewise.catalog.catalog import Catalog

        catalog = Catalog(catalog)  # backends resolve model files through the Catalog object
    models, catalog_settings = unpack_catalog(catalog)
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
    names = advertised_names(engine)  # real names a picker can offer; the patterns are in docs/gateway.md
    state = GatewayState(engine, settings, metrics, request_log, KeyChecker(settings.api_keys), model_list(names))
    state.shadow = build_shadow(engine, settings, url, metrics.registry)
    state.shared_metrics = share_metrics(settings, metrics)  # the app's lifespan starts and stops it
    return state


def unpack_catalog(catalog: Any) -> tuple[list[ModelSpec], GatewaySettings]:
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


def _check_configured_policy(engine: Engine, settings: GatewaySettings) -> None:
    """Build the policy the catalog configures, so a bad ``gateway.router`` or ``gateway.default_policy``
    fails at start-up with a clear message instead of at the first request; so does a default router file
    that is corrupt or was trained on another embedding than the one installed."""
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


def _default_backends(catalog: Any) -> Callable[[ModelSpec], Backend]:
    """``make_backend`` with the catalog, which resolves model files, tables and CA bundles."""
    from sizewise.backends.factory import make_backend

    return lambda spec: make_backend(spec, catalog)


@dataclass
class StreamReport:
    """Finishes a streamed request exactly once: when its events end, or when they never started."""

    state: GatewayState
    ctx: RequestContext
    decision: Decision
    chunks: AsyncIterator[ChatChunk]
    started: float
    api_key: str | None
    finished: bool = False

    def done(self, status: int, prompt_tokens: int, completion_tokens: int) -> None:
        """``sse_events``' report of how the stream ended."""
        self.finished = True
        self.state.finish(
            self.ctx,
            self.decision,
            status,
            self.started,
            request_id=self.ctx.request_id,
            api_key=self.api_key,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    async def if_never_started(self) -> None:
        """The client left before the first byte (``sse_events`` never ran): close the upstream, log a 499."""
        if not self.finished:
            closer = getattr(self.chunks, "aclose", None)
            if closer is not None:
                await closer()
            self.done(499, 0, 0)


class ReportedStream(StreamingResponse):
    """A streaming response that runs ``after`` once it is over, sent or not (the log gets its row)."""

    def __init__(self, content: AsyncIterator[bytes], after: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.after = after

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.after()


#: The old private name, still imported by the CLI.
_unpack = unpack_catalog
