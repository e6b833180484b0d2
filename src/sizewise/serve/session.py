"""Session affinity: an agent's turns stay on the model its first turn got.

Switching models mid-conversation costs the provider's prompt cache (the whole history is read again
at the full input price) and can change the tool-call format under an agent. So a request that belongs
to a known session goes to the session's model unless the router is confident otherwise: its score is
further than ``gateway.session_margin`` from the threshold. A session also moves when its model cannot
serve the request (a filter removed it: the context grew too long, tools are now needed).

The session id, first found in ``gateway.session_keys`` order: the ``x-sizewise-session-id`` header,
``metadata.session_id``, the OpenAI ``user`` field (opt-in: one user has many conversations), or the
conversation's *opening* (system/developer messages and the first user message, hashed). The opening,
not "everything but the last turn": that prefix changes every turn, while the opening stays the same
for the whole conversation. An opening is looked up only once the conversation has an assistant turn,
so identical one-shot prompts are routed afresh.

Sessions live in a :class:`SessionStore`; :class:`MemorySessionStore` is an in-process LRU with a TTL,
:class:`sizewise.serve.session_sql.SqlSessionStore` a table that several gateway replicas share. A new
session is *claimed* (first writer wins), so replicas racing on it agree on its model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sizewise.catalog.catalog import ladder_key
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.core.chat import ChatRequest
from sizewise.policy.types import Plan, RequestContext

HEADER = "x-sizewise-session-id"
#: Longest client-chosen session id kept (longer ones are hashed, so the store's memory stays bounded).
MAX_ID_CHARS = 256


class SessionStore(Protocol):
    """Where sessions are kept: session key -> model name."""

    def get(self, key: str) -> str | None:
        """The model of a live session (refreshing it), or None."""
        ...

    def put(self, key: str, model: str) -> None:
        """Pin a session to a model."""
        ...

    def claim(self, key: str, model: str) -> str:
        """Pin a new session to ``model`` unless it has a live model already; returns the session's model."""
        ...


class MemorySessionStore:
    """An in-process LRU of sessions, each forgotten ``ttl_s`` after its last use. Thread-safe."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> str | None:
        now = self.clock()
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if now - item[1] > self.ttl_s:
                del self._items[key]
                return None
            self._items[key] = (item[0], now)
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, model: str) -> None:
        with self._lock:
            self._items[key] = (model, self.clock())
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def claim(self, key: str, model: str) -> str:
        with self._lock:
            item = self._items.get(key)
            if item is not None and self.clock() - item[1] <= self.ttl_s:
                return item[0]
        self.put(key, model)  # one process: the race this guards against is between replicas
        return model


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def opening(messages: Sequence[dict[str, Any]]) -> tuple[list[Any], bool]:
    """(the conversation's opening: system/developer turns and the first user turn, whether it goes on)."""
    head: list[Any] = []
    for index, message in enumerate(messages):
        head.append([message.get("role"), message.get("content")])  # role and content: what identifies it
        if message.get("role") == "user":
            return head, any(m.get("role") == "assistant" for m in messages[index + 1 :])
    return head, False


def session_of(
    request: ChatRequest,
    sources: Sequence[str],
    *,
    header: str | None = None,
    user: str | None = None,
    client: str | None = None,
) -> tuple[str, bool] | None:
    """(session key, whether to look it up) from the first of ``sources`` the request has, or None.

    ``client`` (the API key's name; None: keys off, one client) is part of the key: another client's session
    with the same id or opening is another session, or its status (``same``, ``kept``) would tell a client
    that someone else had opened a conversation the same way."""
    metadata = request.extra.get("metadata")
    explicit = {
        "header": header,
        "metadata": metadata.get("session_id") if isinstance(metadata, dict) else None,
        "user": user,
    }
    for source in sources:
        if source == "prefix":
            head, goes_on = opening(request.messages)
            if head:
                return f"prefix:{_digest(head if client is None else [client, head])}", goes_on
            continue
        value = explicit.get(source)
        if isinstance(value, str) and value:
            value = value if client is None else _digest([client, value])
            value = value if len(value) <= MAX_ID_CHARS else _digest(value)
            return f"{source}:{value}", True
    return None


def sources(settings: GatewaySettings) -> list[str]:
    """Where session ids come from; ``sticky_sessions: true`` (the older setting) adds ``user``."""
    keys: list[str] = list(settings.session_keys)
    if settings.sticky_sessions and "user" not in keys:
        keys.insert(keys.index("prefix") if "prefix" in keys else len(keys), "user")
    return keys


class Affinity:
    """Steers a routing plan to the session's model; says what it did (``Decision.session``)."""

    def __init__(self, store: SessionStore, margin: float | None) -> None:
        self.store = store
        self.margin = margin
        #: A database store is called from a worker thread, never on the event loop.
        self.blocking = bool(getattr(store, "blocking", False))

    async def steer_async(self, ctx: RequestContext, plan: Plan, candidates: list[ModelSpec]) -> tuple[Plan, str]:
        """:meth:`steer`, in a worker thread when the store blocks."""
        if self.blocking and ctx.session and ctx.session_lookup:
            return await asyncio.to_thread(self.steer, ctx, plan, candidates)
        return self.steer(ctx, plan, candidates)

    async def remember_async(self, ctx: RequestContext, status: str | None, model: str) -> None:
        """:meth:`remember`, in a worker thread when the store blocks."""
        if self.blocking and ctx.session and status in ("new", "switched", "moved"):
            await asyncio.to_thread(self.remember, ctx, status, model)
        else:
            self.remember(ctx, status, model)

    def steer(self, ctx: RequestContext, plan: Plan, candidates: list[ModelSpec]) -> tuple[Plan, str]:
        """(the plan to follow, what the session did: new, same, kept, switched or moved)."""
        pinned = self.store.get(ctx.session) if ctx.session and ctx.session_lookup else None
        if pinned is None or not plan.models:
            return plan, "new"
        chosen = plan.models[0]
        if chosen.name == pinned:
            return plan, "same"
        spec = next((s for s in candidates if s.name == pinned), None)
        if spec is None:
            plan.reason += f"; session model {pinned} cannot serve this request"
            return plan, "moved"
        if self._confident(plan):
            plan.reason += f"; session left {pinned} (beyond margin {self.margin:g})"
            return plan, "switched"
        if plan.score is None or plan.threshold is None:
            within = "no score to judge"
        else:
            within = "no margin set" if self.margin is None else f"within margin {self.margin:g}"
        order = [spec, *(s for s in plan.models if s.name != spec.name)]
        reason = f"sticky session: kept {pinned} over {chosen.name} ({plan.reason}; {within})"
        escalated = ladder_key(spec) > ladder_key(chosen)  # the session keeps a larger model than the router's
        return Plan(order, score=plan.score, threshold=plan.threshold, reason=reason, escalated=escalated), "kept"

    def _confident(self, plan: Plan) -> bool:
        if self.margin is None or plan.score is None or plan.threshold is None:
            return False
        return abs(plan.score - plan.threshold) > self.margin

    def remember(self, ctx: RequestContext, status: str | None, model: str) -> None:
        """After an answer: a new session is claimed for the model that answered (a replica that claimed
        it first keeps its model); a switched or moved session, or a one-shot opening that was not looked
        up, is pinned to it."""
        if ctx.session and status == "new" and ctx.session_lookup:
            self.store.claim(ctx.session, model)
        elif ctx.session and status in ("new", "switched", "moved"):
            self.store.put(ctx.session, model)
