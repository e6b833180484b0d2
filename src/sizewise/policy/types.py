"""The policy engine's vocabulary: what a request looks like to a policy, and what a policy decides.

Extension points (for routers, cascades and constraint filters written elsewhere):

* **Filters** (hard constraints: context window, modality, privacy, budget, latency...) implement
  :class:`Filter`: ``apply(ctx, candidates) -> (kept, FilterReport)``. They run before the policy, in
  order, each on what the previous one kept. A filter that makes the request impossible raises
  :class:`RequestRejected` (status, message, code), which the gateway turns into an OpenAI-style error.
  Register a factory with :func:`register_filter`; it receives the :class:`PolicyEnv` and returns a
  filter, or ``None`` when it is not configured. Modules holding factories are listed in
  ``FILTER_MODULES`` (imported when an engine is built).
* **Policies** choose the model. A :class:`RoutingPolicy` decides *before* generating: ``plan`` returns
  an ordered list of models to try (the first is the choice, the rest are fallbacks) with the score and
  threshold behind it. A :class:`CascadePolicy` decides *after* generating: ``run`` gets a ``call``
  function (retry + fault handling included) and climbs a ladder, returning the accepted answer and
  its steps. Register a factory for a ``model``-field prefix with :func:`register_policy` (e.g.
  ``"router-"`` or ``"cascade-"``) or an exact name (``"sizewise"``); the factory receives the whole
  model field and the :class:`PolicyEnv`. Modules holding factories are listed in ``POLICY_MODULES``.
* A filter may also define ``admit(ctx, spec)``: the engine calls it right before each model call (first
  choice, retry, fallback, cascade rung); raising a non-retryable ``BackendError`` skips that model
  (the budget grows its reservation to the model really called).
* A filter may also define ``settle(ctx, decision, prompt_tokens, completion_tokens)``: the gateway calls
  it once when the request has finished (``decision`` is None or has no answer when it failed), e.g. to
  turn a budget reservation into the real cost.
* A filter may also define ``async prepare(ctx)``: the engine awaits it before any filter runs, for
  work too slow for the event loop (the privacy scan runs in a worker thread and leaves its result
  in ``ctx.extras``).
* A rejection that holds only *for now* carries ``async wait() -> bool`` (the budget's
  :class:`~sizewise.policy.constraints.budget_wait.BudgetBusy`): the engine awaits it and, on True,
  runs the filters again; on False the rejection stands.
* Later registrations under the same name replace earlier ones in place, so a plug-in can swap a
  built-in filter without changing the documented order.
"""

from __future__ import annotations

import importlib
import math
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from sizewise.backends.base import ChatRequest, ChatResult
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.errors import UnknownModelError

if TYPE_CHECKING:
    from sizewise.backends.base import Backend

# Modules that register policies/filters; imported once when an engine is built.
POLICY_MODULES = [
    "sizewise.policy.routing",
    "sizewise.policy.multi_routing",
    "sizewise.cascade.gateway_policy",
]
FILTER_MODULES = [
    "sizewise.policy.constraints",
]


class RequestRejected(Exception):
    """The request cannot be served as asked (a client error): becomes an OpenAI-style JSON error."""

    def __init__(self, status: int, message: str, code: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


@dataclass
class RequestContext:
    """One parsed chat request, as filters and policies see it."""

    request: ChatRequest
    #: The whole conversation; routers see :attr:`text` (every turn, via ``conversation_text``).
    messages: list[dict[str, Any]]
    text: str
    #: Input modalities present in the messages ("text", "image", "audio").
    modalities: frozenset[str]
    #: Rough prompt size: ceil(characters / 4), cheap enough for the hot path.
    prompt_tokens: int
    max_tokens: int | None = None
    stream: bool = False
    #: The value of the request's ``model`` field (policy or model name).
    model_field: str = "sizewise"
    request_id: str = ""
    #: Name of the API key used (None when keys are off).
    api_key: str | None = None
    #: The OpenAI ``user`` field, used as a session id for sticky sessions.
    user: str | None = None
    #: From header ``x-sizewise-max-latency-ms``.
    max_latency_ms: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Free slot for filters/policies to pass facts along (e.g. a domain match).
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class FilterReport:
    """What one filter did: which models it removed and why."""

    filter: str
    removed: dict[str, str] = field(default_factory=dict)
    note: str | None = None

    @property
    def fired(self) -> bool:
        """True when the filter removed something or left a note."""
        return bool(self.removed) or self.note is not None


@runtime_checkable
class Filter(Protocol):
    """A hard constraint on the candidate models of one request."""

    name: str

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        """Keep the candidates that satisfy the constraint; may raise :class:`RequestRejected`."""
        ...


@dataclass
class Step:
    """One model call made for a request (a cascade rung, a retry or a fallback)."""

    model: str
    score: float | None = None
    threshold: float | None = None
    accepted: bool = False
    reason: str = ""
    cost: float = 0.0
    latency_s: float = 0.0
    error: str | None = None


@dataclass
class Decision:
    """What was decided for one request; returned in the ``sizewise`` body object and logged."""

    policy: str
    model: str | None = None
    score: float | None = None
    threshold: float | None = None
    escalated: bool = False
    steps: list[Step] = field(default_factory=list)
    filters: list[FilterReport] = field(default_factory=list)
    #: The model first chosen when a fault made the engine answer with another one.
    fallback_from: str | None = None
    errors: list[str] = field(default_factory=list)
    cost: float = 0.0
    reason: str = ""

    @property
    def fell_back(self) -> bool:
        """True when the answer came from another model than the one chosen, because of a fault."""
        return self.fallback_from is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN scores become None)."""
        # Written out (not dataclasses.asdict, which deep-copies recursively): this runs on every answer.
        return {
            "policy": self.policy,
            "model": self.model,
            "score": _finite(self.score),
            "threshold": _finite(self.threshold),
            "escalated": self.escalated,
            "fallback": self.fallback_from is not None,
            "fallback_from": self.fallback_from,
            "cost": self.cost,
            "reason": self.reason,
            "steps": [
                {
                    "model": s.model,
                    "score": _finite(s.score),
                    "threshold": _finite(s.threshold),
                    "accepted": s.accepted,
                    "reason": s.reason,
                    "cost": s.cost,
                    "latency_s": s.latency_s,
                    "error": s.error,
                }
                for s in self.steps
            ],
            "filters": [{"filter": f.filter, "removed": f.removed, "note": f.note} for f in self.filters if f.fired],
            "filters_ran": [f.filter for f in self.filters],
            "errors": self.errors,
        }


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


@dataclass
class Plan:
    """A routing decision: models to try in order (the first is the choice), with the score behind it."""

    models: list[ModelSpec]
    score: float | None = None
    threshold: float | None = None
    reason: str = ""
    #: True when the choice is the stronger model of the pair (a router "escalated").
    escalated: bool = False


@dataclass
class PolicyEnv:
    """What a policy factory may use: the catalog's models, gateway settings and backends."""

    models: list[ModelSpec]
    settings: GatewaySettings
    backend: Callable[[ModelSpec], Backend]
    router_dir: Path | None = None
    catalog: Any = None
    #: Shared by factories for heavy objects (loaded routers, scorers), keyed as they like.
    cache: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> ModelSpec:
        """A catalog model by name."""
        for spec in self.models:
            if spec.name == name:
                return spec
        raise UnknownModelError(f"unknown model {name!r}")

    def llms(self) -> list[ModelSpec]:
        """Text LLMs of the catalog, smallest first (by params, then price)."""
        llms = [m for m in self.models if m.kind in ("llm", "multimodal")]
        return sorted(llms, key=lambda m: (m.params_b or math.inf, m.price_in + m.price_out))


#: ``call(model, ctx) -> ChatResult``: one model call with the engine's retry; raises BackendError when it fails.
Caller = Callable[[ModelSpec, RequestContext], Awaitable[ChatResult]]


class Policy:
    """Base of every policy; ``name`` is what the client put in the ``model`` field."""

    #: False: decides before generating (:class:`RoutingPolicy`); True: after (:class:`CascadePolicy`).
    decides_after: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name


class RoutingPolicy(Policy):
    """Decide before generating: pick one model (plus fallbacks) from the prompt alone."""

    @abstractmethod
    async def plan(self, ctx: RequestContext, candidates: list[ModelSpec]) -> Plan:
        """Order ``candidates`` (already filtered) for this request. Must return at least one model."""


class CascadePolicy(Policy):
    """Decide after generating: call models up a ladder until an answer is accepted.

    Streamed requests are answered by buffering: the accepted answer is streamed once chosen.
    """

    decides_after = True

    @abstractmethod
    async def run(self, ctx: RequestContext, candidates: list[ModelSpec], call: Caller) -> tuple[ChatResult, Decision]:
        """Climb the ladder; return the accepted answer and a :class:`Decision` listing each :class:`Step`."""


PolicyFactory = Callable[[str, PolicyEnv], Policy]
FilterFactory = Callable[[PolicyEnv], "Filter | None"]

_POLICIES: dict[str, PolicyFactory] = {}
_FILTERS: dict[str, FilterFactory] = {}


def register_policy(key: str, factory: PolicyFactory) -> None:
    """Serve ``model`` fields equal to ``key`` or, when ``key`` ends with ``-``, starting with it."""
    _POLICIES[key] = factory


def register_filter(name: str, factory: FilterFactory) -> None:
    """Add a filter factory; the engine builds every registered filter (in registration order)."""
    _FILTERS[name] = factory


def load_extensions() -> None:
    """Import the modules that register policies and filters (missing optional ones are skipped)."""
    for module in (*POLICY_MODULES, *FILTER_MODULES):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def policy_factory(model_field: str) -> PolicyFactory | None:
    """The factory serving a ``model`` field: an exact name first, then the longest matching prefix."""
    if model_field in _POLICIES:
        return _POLICIES[model_field]
    prefixes = [k for k in _POLICIES if k.endswith("-") and model_field.startswith(k)]
    return _POLICIES[max(prefixes, key=len)] if prefixes else None


def policy_keys() -> list[str]:
    """Registered policy names and prefixes."""
    return sorted(_POLICIES)


def filter_factories() -> dict[str, FilterFactory]:
    """Registered filter factories by name."""
    return dict(_FILTERS)
