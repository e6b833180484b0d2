"""Ray's parts without a cluster: the handle transport's errors, and a catalog entry's deployment options."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("ray")


# -- the handle transport: Ray's errors as the engine understands them -----------------------------------


class _Method:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def remote(self, *args: Any) -> Any:
        async def answer() -> Any:
            if isinstance(self.outcome, BaseException):
                raise self.outcome
            return self.outcome

        return answer()


class _Handle:
    def __init__(self, outcome: Any) -> None:
        self.complete = self.choice_logprobs = _Method(outcome)


def test_the_handle_backend_keeps_the_models_error_and_makes_rays_retryable() -> None:
    import asyncio

    from ray.exceptions import ActorDiedError, RayTaskError

    from sizewise.core.chat import BackendError, ChatRequest, ChatResult
    from sizewise.distributed.handle_backend import RayHandleBackend

    request = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    result = ChatResult(model="m", text="hello")
    assert asyncio.run(RayHandleBackend("m", _Handle(result)).complete(request)) is result
    refused = BackendError("context too long", retryable=False, status=400)
    wrapped = RayTaskError("complete", "traceback", refused).as_instanceof_cause()  # what a handle raises
    with pytest.raises(BackendError) as caught:
        asyncio.run(RayHandleBackend("m", _Handle(wrapped)).complete(request))
    assert caught.value is refused and not caught.value.retryable  # the model's own verdict, not Ray's wrapper
    with pytest.raises(BackendError) as caught:
        asyncio.run(RayHandleBackend("m", _Handle(ActorDiedError())).choice_logprobs(request, ["yes", "no"]))
    assert caught.value.retryable and "m: Ray deployment failed: ActorDiedError" in str(caught.value)


def test_a_models_ray_section_sizes_its_deployment() -> None:
    """The catalog's ``ray`` section becomes the deployment's CPUs, GPUs and autoscaling bounds (no cluster)."""
    pytest.importorskip("ray")
    from sizewise.catalog import load_catalog
    from sizewise.catalog.schema import ModelSpec
    from sizewise.distributed.deployments import model_deployment

    catalog = load_catalog(None)
    entry = catalog.get("smollm2-135m").model_dump()
    entry["ray"] = {"num_cpus": 2, "num_gpus": 0.5, "min_replicas": 0, "max_replicas": 3, "max_ongoing_requests": 2}
    deployment = model_deployment(ModelSpec.model_validate(entry), catalog)._bound_deployment
    assert deployment.name == "model-smollm2-135m" and deployment.max_ongoing_requests == 2
    assert deployment.ray_actor_options == {"num_cpus": 2, "num_gpus": 0.5}
    bounds = deployment._deployment_config.autoscaling_config
    assert (bounds.min_replicas, bounds.max_replicas) == (0, 3)
    fixed = model_deployment(catalog.get("smollm2-135m"), catalog)._bound_deployment  # default: one replica
    assert fixed.num_replicas == 1 and fixed._deployment_config.autoscaling_config is None
    with pytest.raises(ValueError, match="max_replicas"):
        ModelSpec.model_validate({**entry, "ray": {"max_replicas": 0}})
    with pytest.raises(ValueError, match="min_replicas 3 is above max_replicas 2"):
        ModelSpec.model_validate({**entry, "ray": {"min_replicas": 3, "max_replicas": 2}})
