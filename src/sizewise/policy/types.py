"""The policy engine's vocabulary: what a request looks like to a policy, and what a policy decides.

Extension points (for routers, cascades and constraint filters written elsewhere):

* **Filters** (hard constraints: context window, modality, privacy, budget, latency...) implement
  :class:`Filter`: ``apply(ctx, candidates) -> (kept, FilterReport)``. They run before the policy, in
  order, each on what the previous one kept. A filter that makes the request impossible raises
  :class:`RequestRejected` (status, message, code), which the gateway turns into an OpenAI-style error.
  Register a factory with :func:`register_filter`; it receives the :class:`PolicyEnv` and returns a
  filter, or ``None`` when it is not configured. :func:`load_extensions` imports the modules holding
  factories (the built-in ones by name, plug-ins through the ``sizewise.plugins`` entry-point group).
* **Policies** choose the model. A :class:`RoutingPolicy` decides *before* generating: ``plan`` returns
  an ordered list of models to try (the first is the choice, the rest are fallbacks) with the score and
  threshold behind it. A :class:`CascadePolicy` decides *after* generating: ``run`` gets a ``call``
  function (retry + fault handling included) and the request's decision, climbs a ladder, writes its
  steps into the decision and returns the accepted answer. Register a factory for a ``model``-field
  prefix with :func:`register_policy` (e.g. ``"router-"`` or ``"cascade-"``) or an exact name
  (``"sizewise"``); the factory receives the whole model field and the :class:`PolicyEnv`. Modules
  holding factories are imported by :func:`load_extensions`.
* A filter may also define ``admit(ctx, spec)``: the engine calls it right before each model call (first
  choice, retry, fallback, cascade rung); raising a non-retryable ``BackendError`` skips that model
  (the budget grows its reservation to the model really called).
* A filter that does blocking I/O or heavy work in ``apply`` (SQL, a log scan, an embedding model) sets
  ``blocking = True``: the engine runs the chain from the first such filter on in a worker thread (order
  kept), and such a filter's ``admit`` too, so other requests keep moving on the event loop.
* A filter may also define ``settle(ctx, decision, prompt_tokens, completion_tokens)``: the engine calls
  it once (``Engine.settle``) when the request has finished (``decision`` is None or has no answer when
  it failed), e.g. to turn a budget reservation into the real cost.
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

import functools
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sizewise.catalog.catalog import order_ladder
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.core.chat import ChatRequest, ChatResult

# The decision vocabulary lives on the ground floor (sizewise.core.decision); re-exported here.
from sizewise.core.decision import Decision as Decision
from sizewise.core.decision import FilterReport as FilterReport
from sizewise.core.decision import RequestRejected as RequestRejected
from sizewise.core.decision import Step as Step
from sizewise.errors import UnknownModelError

if TYPE_CHECKING:
    from sizewise.backends.base import Backend

#: Entry-point group of plug-in modules: each registers its policies or filters when imported.
PLUGIN_GROUP = "sizewise.plugins"


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
    #: From header ``x-sizewise-session-id``.
    session_id: str | None = None
    #: Session key, set by the engine (``sizewise.serve.session``): a session id or the conversation's opening.
    session: str | None = None
    #: Whether to look the session up (False on a conversation's first turn: it is only recorded).
    session_lookup: bool = False
    #: Free slot for filters/policies to pass facts along (e.g. a domain match).
    extras: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Filter(Protocol):
    """A hard constraint on the candidate models of one request."""

    name: str

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        """Keep the candidates that satisfy the constraint; may raise :class:`RequestRejected`."""
        ...


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
        """Text LLMs of the catalog, smallest first (:func:`~sizewise.catalog.catalog.ladder_key`)."""
        return order_ladder(self.models)

    def ladder(self) -> list[ModelSpec]:
        """What a cascade climbs and what "the big model" is: ``gateway.ladder`` when set, else :meth:`llms`."""
        return order_ladder(self.models, self.settings.ladder)


#: ``call(model, ctx) -> ChatResult``: one model call with the engine's retry; raises BackendError when it fails.
Caller = Callable[[ModelSpec, RequestContext], Awaitable[ChatResult]]


class Policy:
    """Base of every policy; ``name`` is what the client put in the ``model`` field."""

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

    @abstractmethod
    async def run(
        self, ctx: RequestContext, candidates: list[ModelSpec], call: Caller, decision: Decision
    ) -> ChatResult:
        """Climb the ladder; return the accepted answer, writing each rung's :class:`Step` (and the model,
        score, escalation) into ``decision``, which already holds the filters' reports."""


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
    """Register the built-in policies and filters, then those of installed plug-ins.

    The built-in modules are imported by name here (not listed as strings) so the import graph shows
    every arrow; a plug-in package adds its own module to the ``sizewise.plugins`` entry-point group.
    """
    from sizewise.policy import cascading, constraints, multi_routing, routing  # noqa: F401 - they register

    _load_plugins()


@functools.cache
def _load_plugins() -> None:
    """Import each plug-in module once per process (reading the installed packages' metadata is slow)."""
    from importlib.metadata import entry_points

    for plugin in entry_points(group=PLUGIN_GROUP):
        plugin.load()


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


def build_filters(env: PolicyEnv) -> list[Filter]:
    """Every registered filter that is configured for ``env``, in registration order (what the engine runs)."""
    load_extensions()
    return [flt for flt in (factory(env) for factory in _FILTERS.values()) if flt is not None]
