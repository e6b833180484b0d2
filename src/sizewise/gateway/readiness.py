"""Readiness: ``GET /readyz`` (200 once the gateway can answer without a cold start, 503 before) and
:func:`warm_up`, which ``sizewise serve --warm`` runs before it says it is ready.

``/healthz`` is liveness (the process answers); ``/readyz`` is what a load balancer should wait for.
Without ``--warm`` the gateway is ready at once (models load lazily on their first request).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from sizewise.core.chat import ChatRequest
from sizewise.gateway.responses import JSON

if TYPE_CHECKING:
    from sizewise.catalog.schema import ModelSpec
    from sizewise.gateway.state import GatewayState
    from sizewise.serve.pipeline import Engine

logger = logging.getLogger("sizewise.gateway")


async def readyz(request: Request) -> Response:
    """``GET /readyz``: ``{"status": "ready"}`` (200) or ``{"status": "warming"}`` (503)."""
    state: GatewayState = request.app.state.gateway
    body = {"status": "ready" if state.ready else "warming"}
    return Response(json.dumps(body).encode(), status_code=200 if state.ready else 503, media_type=JSON)


def load_model(spec: ModelSpec, backend: Any) -> None:
    """Load one local model now (blocking). A chat model answers one token too: the first answer pages the
    weights in and sets up the context (seconds on a slow disk). Image and speech models have no chat."""
    backend.load()
    if spec.kind not in ("vision", "speech"):
        asyncio.run(backend.complete(ChatRequest([{"role": "user", "content": "Hello"}], max_tokens=1)))


def warm_up(engine: Engine, say: Callable[[str], None] = logger.info, skip: Collection[str] = ()) -> None:
    """Load every local model (those with a blocking ``load``; each answers one token) and the default
    policy's router, so the first request does not wait for them; ``say`` gets one line per step.
    ``skip`` names models loaded elsewhere (their own Ray deployments). Raises what a load raises."""
    import time

    from sizewise.progress import Progress

    local_specs = [spec for spec in engine.models if spec.location == "local" and spec.name not in skip]
    backends = [(spec, engine.backend(spec)) for spec in local_specs]
    local = [(spec, backend) for spec, backend in backends if getattr(backend, "load", None)]
    with Progress(len(local), "warming", "models") as bar:
        for spec, backend in local:
            started = time.perf_counter()
            say(f"warming: loading {spec.name} ...")
            bar.note(spec.name)
            load_model(spec, backend)
            say(f"warming: {spec.name} loaded in {time.perf_counter() - started:.1f} s")
            bar.update(1)
    scorer = getattr(engine.policy("sizewise"), "scorer", None)
    if scorer is not None:  # a learned router embeds text: the first score loads its embedding model
        started = time.perf_counter()
        scorer.score(["warm-up"])
        say(f"warming: router ready in {time.perf_counter() - started:.1f} s")
