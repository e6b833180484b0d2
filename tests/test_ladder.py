"""One size order for every "smaller/larger" decision: the ladder, the routing pair, the cascade, the fallbacks."""

from __future__ import annotations

import asyncio
from typing import Any

from constraint_helpers import ctx, model
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.policy.cascading import LiveCascade
from sizewise.policy.routing import BypassPolicy, model_pair
from sizewise.policy.types import PolicyEnv


def _env(models: list[ModelSpec], ladder: list[str] | None = None) -> PolicyEnv:
    return PolicyEnv(models, GatewaySettings(ladder=ladder or []), backend=lambda spec: None)  # type: ignore[arg-type]


def _names(specs: Any) -> list[str]:
    return [spec.name for spec in specs]


def test_a_model_of_unknown_size_is_the_largest_for_the_pair_and_for_fallbacks() -> None:
    # A cloud model without params_b: the routing pair took it as the big model, while fallbacks ordered by
    # -(params_b or 0) put it last, as if it were the smallest.
    small, medium, cloud = model("small", params_b=0.5), model("medium", params_b=7.0), model("cloud")
    env = _env([cloud, small, medium])
    assert _names(env.llms()) == ["small", "medium", "cloud"]
    assert _names(model_pair(env)) == ["medium", "cloud"]
    plan = asyncio.run(BypassPolicy(small).plan(ctx("hi"), [small, medium, cloud]))
    assert _names(plan.models) == ["small", "cloud", "medium"]  # fallbacks largest first, by the same order


def test_the_live_cascade_climbs_gateway_ladder() -> None:
    a, b, c = model("a", params_b=1.0), model("b", params_b=2.0), model("c", params_b=3.0)
    cascade = LiveCascade("cascade-logprob", scorer=None, threshold=0.5, env=_env([a, b, c], ladder=["c", "a"]))  # type: ignore[arg-type]
    assert _names(cascade.ladder([a, b, c])) == ["c", "a"]  # the configured order; b is not on the ladder
    plain = LiveCascade("cascade-logprob", scorer=None, threshold=0.5, env=_env([c, a, b]))  # type: ignore[arg-type]
    assert _names(plain.ladder([c, b, a])) == ["a", "b", "c"]
