"""The gateway on Ray Serve: N fronts (the HTTP entry, :mod:`sizewise.distributed.forward`), N gateway
replicas (the FastAPI app of :func:`sizewise.gateway.app.create_app`, handed whole requests by the fronts,
which resend a request whose replica died) and one ``ModelServer`` deployment per local GGUF model, each
with its catalog entry's ``ray`` resources and autoscaling bounds.

Imports Ray at the top: only the ``--ray`` paths import this module. The replicas of the gateway share
nothing in memory; what must be one across them (sessions, budgets, the log) lives in the database
(``gateway.log_url`` / ``gateway.state_url``, PostgreSQL for real traffic).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from ray import serve

from sizewise.backends.base import Backend, ChatChunk, ChatRequest, ChatResult
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.distributed.forward import Forwarded, Front, Message, batched, run_asgi

logger = logging.getLogger(__name__)

#: The Serve application's name, and the prefix of its deployments' names.
APP_NAME = "sizewise"
#: Backends deployed as their own Ray deployments (GGUF chat models, the image classifier, the speech model);
#: the rest (remote upstreams, replay tables, task students) stay inside each gateway replica.
DEPLOYED_BACKENDS = frozenset({"llamacpp", "onnx", "whisper"})
#: A front only relays bytes: a tenth of a CPU in Ray's accounting, so it never crowds out a model.
FRONT_CPUS = 0.1


class ModelServer:
    """One local model behind a Ray Serve deployment: the catalog's backend, called through a handle."""

    async def __init__(self, spec: ModelSpec, catalog: Any, warm: bool = False) -> None:  # type: ignore[misc]
        from sizewise.backends.factory import make_backend
        from sizewise.gateway.readiness import load_model

        self.backend: Backend = make_backend(spec, catalog)
        if warm:  # Serve counts the replica as running only after this: ready means loaded
            await asyncio.to_thread(load_model, spec, self.backend)

    async def complete(self, request: ChatRequest) -> ChatResult:
        """A whole answer."""
        return await self.backend.complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer's chunks (a streaming deployment method)."""
        async for chunk in self.backend.stream(request):
            yield chunk

    async def choice_logprobs(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        """Next-token log-probabilities of ``choices``."""
        return await self.backend.choice_logprobs(request, choices)

    async def probabilities(self, image_bytes: bytes, index: int) -> Any:
        """An image classifier's class probabilities (the image decoded here, within the gateway's limits)."""
        classifier = self.backend.classifier  # type: ignore[attr-defined]
        return await asyncio.to_thread(classifier.probabilities, image_bytes, index)

    async def transcribe(self, data: bytes, language: str | None, prompt: str | None, temperature: float) -> Any:
        """A speech model's transcript of ``data`` (no cache here: the gateway keeps each client's)."""
        speech = self.backend
        return await asyncio.to_thread(speech.transcribe_sync, data, language, prompt, temperature)  # type: ignore[attr-defined]

    def worker_state(self) -> dict[str, Any] | None:
        """The model's worker process (pid, starts, crashes), as ``/healthz`` shows it in one process."""
        state = getattr(self.backend, "state", None)
        return state() if state is not None else None

    async def __del__(self) -> None:  # Serve awaits it when a replica stops: llama.cpp's worker ends with it
        await self.backend.aclose()


class GatewayReplica:
    """A gateway replica: :func:`create_app` with local models reached through their deployments' handles,
    answering whole HTTP requests handed over by the :class:`Front` (:meth:`handle`)."""

    async def __init__(  # type: ignore[misc]
        self,
        catalog: Any,
        settings: GatewaySettings,
        router_dir: str | None,
        log_url: str | None,
        handles: dict[str, Any],
        warm: bool = False,
    ) -> None:
        from sizewise.backends.factory import make_backend
        from sizewise.distributed.handle_backend import deployed_backend
        from sizewise.gateway.app import create_app

        def backend(spec: ModelSpec) -> Backend:
            if spec.name in handles:
                return deployed_backend(spec, catalog, handles[spec.name])
            return make_backend(spec, catalog)

        self.app = create_app(
            catalog, settings=settings, router_dir=router_dir, backend_factory=backend, log_url=log_url
        )
        self._lifespan = AsyncExitStack()
        await self._lifespan.enter_async_context(self.app.router.lifespan_context(self.app))
        if warm:  # the router's embedding model and the models that run in this replica (not deployed)
            from sizewise.gateway.readiness import warm_up

            engine = self.app.state.gateway.engine
            await asyncio.to_thread(warm_up, engine, logger.info, set(handles))

    async def handle(self, request: Forwarded) -> AsyncIterator[list[Message]]:
        """The gateway's ASGI messages for ``request``, batched (a streaming method: a streamed answer stays one)."""
        async for batch in batched(run_asgi(self.app, request)):
            yield batch

    async def __del__(self) -> None:  # Serve awaits it when a replica stops: close the log, the backends
        await self._lifespan.aclose()


@serve.ingress()
class FrontIngress:
    """The HTTP entry (behind Serve's proxy): a :class:`Front` that hands each request to a gateway replica."""

    def __init__(self, gateway: Any, body_limit: int, body_timeout_s: float) -> None:
        # One streaming call for every request: a unary call for whole answers measured 89 against 86
        # requests/s (1 replica, 2 CPUs), too little for a second path.
        self.gateway = gateway.options(stream=True)
        self.body_limit = body_limit
        self.body_timeout_s = body_timeout_s

    def __serve_build_asgi_app__(self) -> Any:
        from sizewise.gateway.body_deadline import BodyDeadline

        front = Front(lambda request: self.gateway.handle.remote(request), self.body_limit)
        return BodyDeadline(front, self.body_timeout_s)  # the front reads the body: a trickled one gets its 408


def model_deployment(spec: ModelSpec, catalog: Any, warm: bool = False) -> Any:
    """``spec``'s bound ``ModelServer`` deployment: its own CPUs/GPUs, fixed replicas or autoscaling bounds."""
    ray = spec.ray
    options: dict[str, Any] = {
        "name": f"model-{spec.name}",
        "ray_actor_options": {"num_cpus": ray.num_cpus, "num_gpus": ray.num_gpus},
        "max_ongoing_requests": ray.max_ongoing_requests,
    }
    if ray.min_replicas == ray.max_replicas:
        options["num_replicas"] = ray.max_replicas
    else:
        options["autoscaling_config"] = {"min_replicas": ray.min_replicas, "max_replicas": ray.max_replicas}
    return serve.deployment(**options)(ModelServer).bind(spec, catalog, warm)


def gateway_application(
    catalog: Any,
    settings: GatewaySettings,
    *,
    replicas: int,
    router_dir: str | Path | None = None,
    log_url: str | None = None,
    warm: bool = False,
    num_cpus: float = 0.5,
    max_ongoing_requests: int = 64,
) -> Any:
    """The bound Serve application: ``replicas`` fronts and gateway replicas over the model deployments.

    The gateway and its front are asynchronous (they wait on models, they do not compute them): each
    takes up to ``max_ongoing_requests`` at once, where Serve's default of 5 would queue a busy client.
    """
    from sizewise.gateway.audio import largest_upload
    from sizewise.gateway.state import unpack_catalog

    models, _ = unpack_catalog(catalog)
    handles = {
        spec.name: model_deployment(spec, catalog, warm)
        for spec in models
        if spec.location == "local" and spec.backend in DEPLOYED_BACKENDS
    }
    gateway = serve.deployment(
        name="gateway",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus},
        max_ongoing_requests=max_ongoing_requests,
    )(GatewayReplica)
    directory = None if router_dir is None else str(router_dir)
    front = serve.deployment(
        name="front",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": FRONT_CPUS},
        max_ongoing_requests=max_ongoing_requests,
    )(FrontIngress)
    body_limit = max(settings.max_body_bytes, largest_upload(models))
    gateways = gateway.bind(catalog, settings, directory, log_url, handles, warm)
    return front.bind(gateways, body_limit, settings.body_timeout_s)
