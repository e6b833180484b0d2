"""``sizewise choose``: which model (or policy) should I use, measured on a labelled task.

Input: an :class:`~sizewise.core.table.OutcomeTable` (a named dataset, a collected table or a
user's file), optional catalog entries for the table's models (location, size, p95 latency), the
constraints (max p95 latency, budget per 1,000 requests, memory for local models, must-stay-local)
and a quality target (absolute, e.g. ``0.7``, or relative to the best eligible model, ``95%``).

Output (:class:`ChooseReport`): one row per model with measured quality, cost per 1,000 requests,
latency and memory and why it is ineligible if it is; the cost-quality frontier; and a
recommendation: the cheapest (then smallest) single model that meets the target, or a routing
policy that meets it more cheaply, with the YAML to use it, or a clear "nothing meets the target".

Policies are measured on a held-out half of the prompts (fitted on the other half), never on the
prompts they were fitted on. Two are tried: *domain routes* (when the table has a ``category``
column: each category goes to the cheapest model meeting the target on that category, the catalog's
``routes:``) and a *two-model router* (``router=<registry name>``, swept over thresholds).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sizewise.catalog.schema import ModelSpec
from sizewise.core.table import OutcomeTable
from sizewise.errors import ConfigError, DataError
from sizewise.evaluation.choose.frontier import pareto, plot_frontier, render_markdown
from sizewise.evaluation.choose.policies import PolicyResult, domain_policy, multi_router_policy, router_policy


@dataclass
class ChooseLimits:
    """What the deployment allows; None means no limit."""

    max_latency_ms: float | None = None
    budget_per_1k: float | None = None
    memory_gb: float | None = None
    local_only: bool = False

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "budget_per_1k", "memory_gb"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < math.inf:
                raise ConfigError(f"{name.replace('_', '-')} must be a number >= 0, got {value}")


@dataclass
class ModelRow:
    """Measured numbers of one model on the task."""

    model: str
    quality: float
    cost_per_1k: float
    latency_p95_ms: float | None
    memory_gb: float | None
    location: str
    params_b: float | None
    eligible: bool = True
    why_not: str = ""
    meets_target: bool = False


@dataclass
class ChooseReport:
    """Everything ``sizewise choose`` found; :meth:`markdown` renders it."""

    task: str
    prompts: int
    target: float
    target_text: str
    constraints: ChooseLimits
    rows: list[ModelRow]
    frontier: list[str]
    single: ModelRow | None
    policy: PolicyResult | None
    policies: list[PolicyResult]
    recommendation: str
    snippet: str


def parse_params(name: str) -> float | None:
    """Billions of parameters from a model name (``8x7B`` -> 56, ``Llama-3.1-70B`` -> 70), else None."""
    moe = re.search(r"(\d+)x(\d+(?:\.\d+)?)[bB]\b", name)
    if moe:
        return float(moe.group(1)) * float(moe.group(2))
    plain = re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", name.replace("_", "-"))
    return float(plain[-1]) if plain else None


def memory_gb(spec: ModelSpec | None, name: str) -> float | None:
    """Memory a local model needs: ``settings.memory_gb`` when given, else ~4.5 bits/weight (Q4_K_M) + 0.5 GB."""
    if spec is not None and isinstance(spec.settings.get("memory_gb"), int | float):
        return float(spec.settings["memory_gb"])
    params = spec.params_b if spec is not None and spec.params_b else parse_params(name)
    return None if params is None else round(params * 4.5 / 8 + 0.5, 2)


def parse_target(text: str | float) -> tuple[float, bool]:
    """``0.7`` -> (0.7, absolute); ``95%`` -> (0.95, relative to the best eligible model)."""
    raw = str(text).strip()
    relative = raw.endswith("%")
    try:
        value = float(raw.rstrip("%")) / (100 if relative else 1)
    except ValueError:
        raise ConfigError(f"quality target {raw!r}: expected a number like 0.7 or a share like 95%") from None
    if not 0 < value <= 1:
        raise ConfigError(f"quality target {raw!r} must be in (0, 1] (or (0%, 100%])")
    return value, relative


def measure_models(table: OutcomeTable, specs: dict[str, ModelSpec], constraints: ChooseLimits) -> list[ModelRow]:
    """One :class:`ModelRow` per table model, with eligibility under ``constraints``."""
    rows = []
    for j, name in enumerate(table.models):
        spec = specs.get(name)
        quality = float(np.nanmean(table.quality[:, j]))
        cost = float(np.nanmean(table.cost[:, j])) * 1000 if table.cost is not None else math.nan
        latency = None
        if table.latency is not None and np.isfinite(table.latency[:, j]).any():
            latency = float(np.nanpercentile(table.latency[:, j], 95)) * 1000
        elif spec is not None and spec.p95_latency_ms is not None:
            latency = spec.p95_latency_ms
        location = spec.location if spec is not None else ("local" if not cost else "remote")
        row = ModelRow(
            name,
            quality,
            0.0 if math.isnan(cost) else cost,
            latency,
            memory_gb(spec, name) if location == "local" else None,
            location,
            spec.params_b if spec is not None and spec.params_b else parse_params(name),
        )
        reasons = []
        if constraints.local_only and location != "local":
            reasons.append("not local")
        if constraints.max_latency_ms is not None and latency is not None and latency > constraints.max_latency_ms:
            reasons.append(f"p95 {latency:.0f} ms > {constraints.max_latency_ms:.0f} ms")
        if constraints.budget_per_1k is not None and row.cost_per_1k > constraints.budget_per_1k:
            reasons.append(f"${row.cost_per_1k:.4f}/1k > ${constraints.budget_per_1k:g}/1k")
        mem = row.memory_gb
        if (
            constraints.memory_gb is not None
            and location == "local"
            and mem is not None
            and mem > constraints.memory_gb
        ):
            reasons.append(f"needs ~{mem:.1f} GB > {constraints.memory_gb:g} GB")
        row.eligible, row.why_not = not reasons, "; ".join(reasons)
        rows.append(row)
    return rows


def priced(table: OutcomeTable, specs: dict[str, ModelSpec]) -> OutcomeTable:
    """``table`` with USD costs from the catalog's prices where its cost is not in USD.

    ``sizewise collect`` records seconds of latency as the cost of local models
    (``meta["cost_unit"]`` mentions seconds); with token counts and a catalog entry, the entry's
    ``price_in``/``price_out`` give a cost comparable across models (latency stays in its own column).
    """
    unit = str(table.meta.get("cost_unit", "usd"))
    if "second" not in unit or table.tokens_in is None or table.tokens_out is None:
        return table
    cost = np.full(table.quality.shape, np.nan)
    for j, name in enumerate(table.models):
        spec = specs.get(name)
        if spec is None:
            raise DataError(
                f"table {table.name!r} records cost in seconds and model {name!r} is not in the catalog: "
                "pass --config with its entry (prices) to compare costs"
            )
        cost[:, j] = [spec.cost_usd(a, b) for a, b in zip(table.tokens_in[:, j], table.tokens_out[:, j], strict=True)]
    return dataclasses.replace(table, cost=cost, meta={**table.meta, "cost_unit": "usd"})


def choose(
    table: OutcomeTable,
    target: str | float,
    constraints: ChooseLimits | None = None,
    specs: Sequence[ModelSpec] = (),
    *,
    router: str | None = None,
    seed: int = 0,
    route_sample: int = 0,
    router_params: dict[str, Any] | None = None,
) -> ChooseReport:
    """Measure every model of ``table``, find the frontier and recommend a model or policy (``router_params``:
    the parameters ``router`` is built with)."""
    constraints = constraints or ChooseLimits()
    if len(table.prompts) < 2 or not table.models:
        raise DataError(f"table {table.name!r} needs at least two prompts and one model to choose from")
    value, relative = parse_target(target)
    if router is not None and router != "heuristic":
        from sizewise.routers.base import router_class

        router_class(router)  # a misspelt name fails here instead of vanishing from the report
        if router_params:
            from sizewise.routers.base import make_router

            make_router(router, **router_params)  # so does a parameter it does not take
    elif router_params:
        raise ConfigError("--param sets parameters of a registry router: give --router NAME (not heuristic)")
    if route_sample < 0:
        raise ConfigError(f"route-sample must be >= 0, got {route_sample}")
    by_name = {spec.name: spec for spec in specs}
    table = priced(table, by_name)
    rows = measure_models(table, by_name, constraints)
    eligible = [row for row in rows if row.eligible]
    best_quality = max((row.quality for row in eligible), default=math.nan)
    goal = value * best_quality if relative else value
    target_text = (
        f"{value:.0%} of the best eligible model ({best_quality:.3f}) = {goal:.3f}" if relative else f"{goal:.3f}"
    )
    for row in rows:
        row.meets_target = row.eligible and row.quality >= goal - 1e-12
    meeting = [row for row in rows if row.meets_target]
    single = min(meeting, key=lambda r: (r.cost_per_1k, r.params_b or math.inf, -r.quality)) if meeting else None
    policies = [p for p in (domain_policy(table, rows, goal, seed, route_sample=route_sample),) if p is not None]
    builders = (("router", router_policy), ("N-model router", multi_router_policy))
    for kind, build in builders if router else ():
        try:
            result = build(table, rows, goal, str(router), seed, router_params)
        except Exception as error:  # a router that cannot be built here is reported, not fatal
            policies.append(PolicyResult(kind, f"{kind} {router!r} failed: {error}", math.nan, math.nan, {}))
        else:
            if result is not None:
                policies.append(result)
    good = [p for p in policies if p.quality >= goal - 1e-12 and math.isfinite(p.cost_per_1k)]
    cheaper = [p for p in good if single is None or p.cost_per_1k < single.cost_per_1k * 0.98]
    policy = min(cheaper, key=lambda p: p.cost_per_1k) if cheaper else None
    recommendation, snippet = _recommend(single, policy, rows, goal, constraints)
    return ChooseReport(
        table.name,
        len(table.prompts),
        goal,
        target_text,
        constraints,
        rows,
        pareto(rows),
        single,
        policy,
        policies,
        recommendation,
        snippet,
    )


def _recommend(
    single: ModelRow | None, policy: PolicyResult | None, rows: list[ModelRow], goal: float, c: ChooseLimits
) -> tuple[str, str]:
    import yaml

    if single is None and policy is None:
        eligible = [r for r in rows if r.eligible]
        if not eligible:
            return "No model satisfies the constraints (see 'why not' in the table); relax them.", ""
        best = max(eligible, key=lambda r: r.quality)
        return (
            f"Nothing meets the target {goal:.3f}: the best eligible model, {best.model}, reaches {best.quality:.3f}. "
            "Lower the target, relax the constraints, or add a stronger model.",
            "",
        )
    if policy is not None:
        versus = f" vs ${single.cost_per_1k:.4f} for {single.model}" if single else ""
        article = "an" if policy.kind[0] in "aeiouN" else "a"  # "an N-model router"
        text = (
            f"Use {article} {policy.kind} policy: quality {policy.quality:.3f} >= {goal:.3f} at "
            f"${policy.cost_per_1k:.4f} per 1,000 requests{versus} (measured on held-out prompts). "
            f"{policy.description}."
        )
        config = dict(policy.config)
        if config.get("routes"):
            # The full example lists are in the policy file written next to the report; show three here.
            config = {
                "routes": [{**r, "examples": [str(e)[:160] for e in r["examples"][:3]]} for r in config["routes"]]
            }
        return text, yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120)
    assert single is not None
    text = (
        f"Use {single.model}: the cheapest eligible model meeting the target "
        f"(quality {single.quality:.3f} >= {goal:.3f}, ${single.cost_per_1k:.4f} per 1,000 requests)."
    )
    snippet = (
        f"# A single model needs no routing: send requests with model: {single.model}\n"
        "# (or make it the only chat model of the catalog)\n"
        + yaml.safe_dump({"models": [{"name": single.model}]}, sort_keys=False)
        + "# ... plus its backend settings\n"
    )
    return text, snippet


__all__ = ["ChooseLimits", "ChooseReport", "choose", "pareto", "plot_frontier", "render_markdown"]
