"""Hard constraints, checked before any cost or quality decision, in this fixed order:

1. ``modality`` (:mod:`.modality`): what a model *can* read: image/audio parts only go to models
   that accept them; non-chat kinds (vision classifiers, embedders) never get chat requests.
   ``capability`` (:mod:`.capability`): what a model *can* do: tools, a JSON schema, reasoning
   effort, logprobs go only to models that have them.
2. ``context`` (:mod:`.context`): prompt + ``max_tokens`` must fit the context window.
3. ``privacy`` (:mod:`.privacy`): what a model *may* read: with ``gateway.privacy: local-only``,
   personal data goes only to ``local`` models.
4. ``latency`` (:mod:`.latency`): p95 latency under the request's or the key's target.
5. ``budget`` (:mod:`.budget`): spend limits; near a limit, downgrade to cheaper models; reserves
   the expected cost atomically, settled after the call.
6. ``domain`` (:mod:`sizewise.policy.domains`): a matched domain route narrows the candidates to
   its vertical models (soft: ignored when none of them survived 1-5).

Then the policy makes the size decision among what is left. Why this order: capability before
permission before preference; budget runs after the cheap hard filters so its reservation covers
only models that could really answer, and domain routing runs last so it never overrides a hard
constraint. Each filter's :class:`~sizewise.policy.types.FilterReport` lists what it removed and
why; the gateway returns them in the response's ``sizewise.filters``.

The engine builds these through the registry in :mod:`sizewise.policy.types`
(:func:`~sizewise.policy.types.build_filters`; this module registers them when
:func:`~sizewise.policy.types.load_extensions` imports it). :func:`validate_catalog` rejects a catalog that
contradicts itself and runs whenever the filters are built, i.e. at gateway start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sizewise.catalog.schema import CatalogSpec, GatewaySettings, ModelSpec, RouteSpec
from sizewise.core.decision import Decision
from sizewise.errors import ConfigError
from sizewise.policy.constraints.budget import BudgetFilter, BudgetLedger
from sizewise.policy.constraints.capability import CapabilityFilter
from sizewise.policy.constraints.context import ContextFilter
from sizewise.policy.constraints.latency import LatencyFilter, measured_p95
from sizewise.policy.constraints.modality import CHAT_KINDS, ModalityFilter
from sizewise.policy.constraints.privacy import PrivacyFilter
from sizewise.policy.types import Filter, PolicyEnv, RequestContext

ORDER = ("modality", "capability", "context", "privacy", "latency", "budget", "domain")

__all__ = [
    "ORDER",
    "BudgetFilter",
    "BudgetLedger",
    "CapabilityFilter",
    "ContextFilter",
    "LatencyFilter",
    "ModalityFilter",
    "PrivacyFilter",
    "catalog_parts",
    "settle",
    "validate_catalog",
]


def catalog_parts(catalog: Any) -> tuple[list[ModelSpec], list[RouteSpec], GatewaySettings]:
    """(models, routes, gateway settings) of a ``CatalogSpec`` or of a loaded catalog object."""
    spec = catalog if isinstance(catalog, CatalogSpec) else getattr(catalog, "spec", None)
    if isinstance(spec, CatalogSpec):
        return list(spec.models), list(spec.routes), spec.gateway
    models = getattr(catalog, "models", None)
    if models is None:
        raise ConfigError("expected a catalog with models")
    models = list(models.values()) if isinstance(models, dict) else list(models)
    routes = list(getattr(catalog, "routes", None) or [])
    return models, routes, getattr(catalog, "gateway", None) or GatewaySettings()


def validate_catalog(
    models: Sequence[ModelSpec], routes: Sequence[RouteSpec] = (), settings: GatewaySettings | None = None
) -> None:
    """Raise :class:`ConfigError` listing every contradiction in a catalog (all at once)."""
    settings = settings or GatewaySettings()
    problems: list[str] = []
    names = [spec.name for spec in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"duplicate model names: {', '.join(duplicates)}")
    known = set(names)
    chat = {spec.name for spec in models if spec.kind in CHAT_KINDS}
    route_names = [route.name for route in routes]
    for route in routes:
        if route_names.count(route.name) > 1 and f"duplicate route {route.name!r}" not in problems:
            problems.append(f"duplicate route {route.name!r}")
        unknown = [name for name in route.models if name not in known]
        if unknown:
            problems.append(f"route {route.name!r} names unknown model(s) {', '.join(map(repr, unknown))}")
        elif not any(name in chat for name in route.models):
            problems.append(f"route {route.name!r} has no chat model (kinds {sorted(CHAT_KINDS)})")
    for name in settings.ladder:
        if name not in known:
            problems.append(f"gateway.ladder names unknown model {name!r}")
    if settings.privacy == "local-only" and not any(s.location == "local" and s.name in chat for s in models):
        problems.append(
            "gateway.privacy is 'local-only' but the catalog has no local chat model to send private data to"
        )
    budgets = [settings.daily_budget_usd, settings.monthly_budget_usd]
    budgets += [b for key in settings.api_keys for b in (key.daily_budget_usd, key.monthly_budget_usd)]
    if any(b is not None for b in budgets) and settings.log_url == "none":
        problems.append("spend limits are set but gateway.log_url is 'none' (the budget ledger needs a database)")
    if problems:
        raise ConfigError("catalog contradicts itself: " + "; ".join(problems))


def gguf_resolver(catalog: Any) -> Callable[[ModelSpec], Any] | None:
    """``spec -> GGUF path`` from a loaded catalog (unverified: only the tokenizer is read), or None."""
    model_file = getattr(catalog, "model_file", None)
    if model_file is None:
        return None

    def resolve(spec: ModelSpec) -> Any:
        return model_file(spec, verify=False)

    return resolve


def _budget(
    settings: GatewaySettings, models: list[ModelSpec], url: str, gguf: Callable[[ModelSpec], Any] | None = None
) -> BudgetFilter | None:
    limits = [settings.daily_budget_usd, settings.monthly_budget_usd]
    limits += [b for key in settings.api_keys for b in (key.daily_budget_usd, key.monthly_budget_usd)]
    if all(limit is None for limit in limits):
        return None
    return BudgetFilter(settings, BudgetLedger(url), models, gguf_path=gguf)


def settle(
    filters: Sequence[Filter],
    ctx: RequestContext | None,
    decision: Decision | None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    """Tell every filter with a ``settle`` hook (the budget) that a request finished."""
    if ctx is None:
        return
    for flt in filters:
        hook = getattr(flt, "settle", None)
        if hook is not None:
            hook(ctx, decision, prompt_tokens, completion_tokens)


# -- registration with the engine (imported by sizewise.policy.types.load_extensions) -----------------
def _register() -> None:
    from sizewise.policy.types import register_filter

    def env_parts(env: PolicyEnv) -> tuple[list[ModelSpec], list[RouteSpec], GatewaySettings]:
        if env.catalog is None:
            return env.models, [], env.settings
        # The whole catalog: a route or ladder may name a model the engine skipped (its API key unset).
        models, routes, _ = catalog_parts(env.catalog)
        return models, routes, env.settings

    def modality(env: PolicyEnv) -> Filter:
        validate_catalog(*env_parts(env))  # first factory the engine builds: start-up check of the catalog
        return ModalityFilter()

    def privacy(env: PolicyEnv) -> Filter | None:
        return PrivacyFilter(opaque=env.settings.privacy_opaque) if env.settings.privacy == "local-only" else None

    def latency(env: PolicyEnv) -> Filter:
        url = env.settings.log_url
        return LatencyFilter(env.settings, (lambda: measured_p95(url)) if url != "none" else None)

    def budget(env: PolicyEnv) -> Filter | None:
        return _budget(env.settings, env.models, env.settings.log_url, gguf_resolver(env.catalog))

    def domain(env: PolicyEnv) -> Filter | None:
        models, routes, _ = env_parts(env)
        if not routes:
            return None
        from sizewise.policy.domains import DomainFilter, DomainRouter

        return DomainFilter(DomainRouter(routes), models)

    register_filter("modality", modality)
    register_filter("capability", lambda env: CapabilityFilter({a: s.name for s in env.models for a in s.aliases}))
    register_filter("context", lambda env: ContextFilter(gguf_resolver(env.catalog)))
    register_filter("privacy", privacy)
    register_filter("latency", latency)
    register_filter("budget", budget)
    register_filter("domain", domain)


_register()
