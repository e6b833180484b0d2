"""``multi-<router>-<target>``: one router chooses among many catalog models (N-model routing).

``<router>`` is a router file (``<router_dir>/<router>.zip``, from ``sizewise train`` or
``sizewise add-model``) that predicts a quality for every model it was trained on (``mf``, ``knn``,
``sw-ranking``, ``embed-logreg``, ``embed-mlp``, or an ``ensemble`` of those), named as in the
catalog. Per request, among the candidates the hard constraints left and the router knows, the
policy takes the cheapest whose predicted quality reaches ``target`` (the rule of
:func:`sizewise.routers.multi.cheapest_meeting`), or the one predicted best when none does.
Cheapest means lowest catalog price (input plus output per token), then fewest parameters, so local
models (price 0) order by size. The other known candidates follow as fault fallbacks, best
predicted first; candidates the router does not know come last, largest first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sizewise.catalog.catalog import ladder_key
from sizewise.catalog.schema import ModelSpec
from sizewise.core.decision import RequestRejected
from sizewise.errors import UnknownNameError
from sizewise.policy.routing import load_router, parse_router_field
from sizewise.policy.types import Plan, PolicyEnv, RequestContext, RoutingPolicy, register_policy
from sizewise.routers.multi import cheapest_meeting

PREFIX = "multi-"


def cost_order(spec: ModelSpec) -> tuple[float, float, float, str]:
    """Sort key, cheapest first: price per token, then size (unknown size last, as in the ladder)."""
    return (spec.price_in + spec.price_out, *ladder_key(spec))


class MultiRouterPolicy(RoutingPolicy):
    """Cheapest candidate whose predicted quality reaches ``target``; else the best predicted."""

    def __init__(self, name: str, router: Any, target: float) -> None:
        super().__init__(name)
        self.router = router
        self.target = target

    async def predict(self, text: str) -> dict[str, float]:
        """Predicted quality of every model the router knows, for one conversation."""
        import anyio

        # Learned routers embed text (milliseconds of CPU): off the event loop.
        quality = await anyio.to_thread.run_sync(self.router.predict_quality, [text])
        return {str(model): float(q) for model, q in zip(self.router.models_, quality[0], strict=True)}

    async def plan(self, ctx: RequestContext, candidates: list[ModelSpec]) -> Plan:
        quality = await self.predict(ctx.text)
        known = sorted((spec for spec in candidates if spec.name in quality), key=cost_order)  # cheapest first
        if not known:
            raise RequestRejected(
                400,
                f"no model the router of {self.name!r} knows ({', '.join(quality)}) can serve this request",
                "model_not_suitable",
            )
        predicted = np.array([[quality[spec.name] for spec in known]])
        choice = known[int(cheapest_meeting(predicted, np.arange(len(known)), self.target)[0])]
        meeting = quality[choice.name] >= self.target
        rest = sorted((spec for spec in known if spec is not choice), key=lambda spec: -quality[spec.name])
        unknown = sorted((spec for spec in candidates if spec.name not in quality), key=ladder_key, reverse=True)
        if meeting:
            reason = f"cheapest with predicted quality {quality[choice.name]:.3f} >= target {self.target:g}"
        else:
            reason = f"no model predicted to reach {self.target:g}: best predicted {quality[choice.name]:.3f}"
        reason += "; predicted: " + ", ".join(f"{spec.name} {quality[spec.name]:.3f}" for spec in known)
        return Plan(
            [choice, *rest, *unknown],
            score=quality[choice.name],
            threshold=self.target,
            reason=reason,
            escalated=choice is known[-1] and len(known) > 1,
        )


def multi_policy(model_field: str, env: PolicyEnv) -> MultiRouterPolicy:
    """Factory for ``multi-<router>-<target>``."""
    name, target = parse_router_field(model_field, PREFIX)
    if not 0.0 <= target <= 1.0:
        raise UnknownNameError(f"model {model_field!r}: the target quality must be in [0, 1], got {target:g}")
    router, _ = load_router(name, env)
    if not hasattr(router, "predict_quality"):
        raise UnknownNameError(
            f"model {model_field!r}: router {name!r} ({getattr(router, 'name', type(router).__name__)}) predicts no "
            "quality per model; train an N-model router (mf, knn, sw-ranking, embed-logreg, embed-mlp)"
        )
    catalog = {spec.name for spec in env.models}
    if not catalog & set(router.models_):
        raise UnknownNameError(
            f"model {model_field!r}: router {name!r} knows none of the catalog's models "
            f"(it knows {', '.join(router.models_)}; the catalog has {', '.join(sorted(catalog))})"
        )
    return MultiRouterPolicy(model_field, router, target)


register_policy(PREFIX, multi_policy)
