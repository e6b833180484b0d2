"""The gateway on Ray Serve: one ingress deployment (the FastAPI app of
:func:`sizewise.gateway.app.create_app`, N replicas) and one ``ModelServer`` deployment per local GGUF model,
each with its catalog entry's ``ray`` resources and autoscaling bounds.

Imports Ray at the top: only the ``--ray`` paths import this module. The replicas of the gateway share
nothing in memory; what must be one across them (sessions, budgets, the log) lives in the database
(``gateway.log_url`` / ``gateway.state_url``, PostgreSQL for real traffic).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from sizewise.backends.base import Backend, ChatChunk, ChatRequest, ChatResult
from sizewise.catalog.schema import GatewaySettings, ModelSpec

#: The Serve application's name, and the prefix of its deployments' names.
APP_NAME = "sizewise"
#: Backends deployed as their own Ray deployments; the rest (remote upstreams, replay, in-process task
#: students, the image and speech models with their own endpoints) stay inside each gateway replica.
DEPLOYED_BACKENDS = frozenset({"llamacpp"})


class ModelServer:
    """One local model behind a Ray Serve deployment: the catalog's backend, called through a handle."""

    def __init__(self, spec: ModelSpec, catalog: Any) -> None:
        from sizewise.backends.factory import make_backend

        self.backend: Backend = make_backend(spec, catalog)

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

    async def __del__(self) -> None:  # Serve awaits it when a replica stops: llama.cpp's worker ends with it
        await self.backend.aclose()


@serve.ingress()
class GatewayIngress:
    """A gateway replica: :func:`create_app` with local models reached through their deployments' handles."""

    def __init__(
        self,
        catalog: Any,
        settings: GatewaySettings,
        router_dir: str | None,
        log_url: str | None,
        handles: dict[str, Any],
    ) -> None:
        self.catalog, self.settings, self.router_dir, self.log_url = catalog, settings, router_dir, log_url
        self.handles = handles

    def __serve_build_asgi_app__(self) -> Any:
        from sizewise.backends.factory import make_backend
        from sizewise.distributed.handle_backend import RayHandleBackend
        from sizewise.gateway.app import create_app

        def backend(spec: ModelSpec) -> Backend:
            if spec.name in self.handles:
                return RayHandleBackend(spec.name, self.handles[spec.name])
            return make_backend(spec, self.catalog)

        return create_app(
            self.catalog,
            settings=self.settings,
            router_dir=self.router_dir,
            backend_factory=backend,
            log_url=self.log_url,
        )


def model_deployment(spec: ModelSpec, catalog: Any) -> Any:
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
    return serve.deployment(**options)(ModelServer).bind(spec, catalog)


def gateway_application(
    catalog: Any,
    settings: GatewaySettings,
    *,
    replicas: int,
    router_dir: str | Path | None = None,
    log_url: str | None = None,
    num_cpus: float = 0.5,
    max_ongoing_requests: int = 64,
) -> Any:
    """The bound Serve application: the gateway ingress with ``replicas`` replicas over the model deployments.

    A gateway replica is asynchronous (it waits on models, it does not compute them): it takes up to
    ``max_ongoing_requests`` at once, where Serve's default of 5 would queue a busy client's requests.
    """
    from sizewise.gateway.state import unpack_catalog

    models, _ = unpack_catalog(catalog)
    handles = {
        spec.name: model_deployment(spec, catalog)
        for spec in models
        if spec.location == "local" and spec.backend in DEPLOYED_BACKENDS
    }
    gateway = serve.deployment(
        name="gateway",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus},
        max_ongoing_requests=max_ongoing_requests,
    )(GatewayIngress)
    directory = None if router_dir is None else str(router_dir)
    return gateway.bind(catalog, settings, directory, log_url, handles)
