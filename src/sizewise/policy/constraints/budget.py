"""The budget filter: per-API-key and global spend limits per day and per month (UTC).

Spend lives in table ``budget_ledger`` of the request log's database (``gateway.log_url``). Each
request holds a *reservation* from before any model is called until it finishes, then *settles* it
to the real cost (:meth:`BudgetFilter.settle`, called by the gateway once per request):

1. :meth:`BudgetFilter.apply` (a filter, before the policy) keeps the models whose expected cost fits
   the remaining budget and reserves the expected cost of the *cheapest* of them, so any request it
   lets through can at least be answered by that model.
2. :meth:`BudgetFilter.admit` (called by the engine right before each model call: the chosen model,
   a retry, a fallback, a cascade rung) raises the reservation to cover that call: for the first call
   to its expected cost, for every further call by its expected cost. A call that no longer fits is
   refused like a failed call (the engine moves on to the next model of the plan, down to the one the
   reservation already covers). So a request reserves the cost of the model that really answers, not
   of the most expensive affordable one.

Every read of current spend, decision and write happens in one write transaction (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE``), so concurrent requests, in one process or in several
gateways sharing the database, can never together reserve more than a limit.

Expected cost = ``spec.cost_usd(prompt bound, max_tokens or DEFAULT_MAX_TOKENS)``. The prompt bound
(:func:`prompt_bound`) holds for any tokenizer and any script: the UTF-8 bytes of everything forwarded
(no tokenizer makes more tokens than bytes), plus the chat template's tokens per message and a
generous count per image or audio part. Settlement uses the upstream's reported usage clamped to what
is physically possible (the prompt bound and ``max_tokens``, both at most the context window), so an
upstream that reports ``prompt_tokens = 2**64`` settles at that bound, not at $1.8e13. The guarantee
is exact when clients set ``max_tokens``; without it a call that writes more than
``DEFAULT_MAX_TOKENS`` tokens can settle above its reservation (never above the context window).

Near the limit the filter *downgrades* instead of refusing: models whose expected cost no longer
fits the remaining budget are removed, and once ``downgrade_at`` (default 80%) of a limit is used
only the cheapest candidates stay. The report's note says so, and it is returned in the response's
``sizewise.filters``. Only when not even the cheapest model fits does the request get a 429.
Reservations never settled (a crashed worker) stop counting after ``stale_after_s``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import SQLAlchemyError

from sizewise.backends.base import BackendError, ChatRequest
from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.errors import ConfigError
from sizewise.policy.types import Decision, FilterReport, RequestContext, RequestRejected
from sizewise.storage import make_engine

DEFAULT_MAX_TOKENS = 1024
#: Chat-template tokens per message (role markers, separators): real templates use 3-8.
TOKENS_PER_MESSAGE = 16
#: Tokens per image or audio part, whatever its URL's length: above the largest image cost of the big APIs.
TOKENS_PER_MEDIA_PART = 4096
TOKENS_PER_REQUEST = 64
_MEDIA = {"image_url", "image", "input_image", "input_audio", "audio", "file"}

metadata = MetaData()
ledger_table = Table(
    "budget_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("api_key", String(200), index=True),
    Column("request_id", String(64)),
    Column("reserved", Float, nullable=False),
    Column("spent", Float),
    Column("settled", Boolean, nullable=False, default=False),
)


def prompt_bound(request: ChatRequest) -> int:
    """An upper bound on the prompt tokens of ``request`` under any tokenizer.

    Every forwarded string counts its UTF-8 bytes (a BPE or byte-fallback tokenizer never makes more
    tokens than bytes; CJK text is 3 bytes a character), JSON syntax included; each message adds
    :data:`TOKENS_PER_MESSAGE` for the chat template and each image/audio/file part
    :data:`TOKENS_PER_MEDIA_PART` (an image costs tokens by its pixels, not by its URL's length).
    """
    payload = {"messages": request.messages, "stop": request.stop, "extra": request.extra}
    size = len(json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
    media = 0
    for message in request.messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            media += sum(1 for part in content if isinstance(part, dict) and part.get("type") in _MEDIA)
    return size + TOKENS_PER_MESSAGE * len(request.messages) + TOKENS_PER_MEDIA_PART * media + TOKENS_PER_REQUEST


@dataclass(frozen=True)
class Limit:
    """One spend limit: ``api_key`` None means global; ``period`` is ``day`` or ``month`` (UTC)."""

    api_key: str | None
    period: str
    usd: float

    def label(self) -> str:
        """E.g. ``key 'team-a' daily`` or ``global monthly``."""
        who = "global" if self.api_key is None else f"key {self.api_key!r}"
        return f"{who} {'daily' if self.period == 'day' else 'monthly'}"


@dataclass
class Hold:
    """One request's reservation while it runs (kept in ``ctx.extras["budget"]``)."""

    reservation: int
    limits: list[Limit]
    #: USD reserved now.
    reserved: float
    #: Model calls admitted so far.
    calls: int = 0
    #: The most the admitted calls can physically cost (the settlement clamp).
    ceiling: float = 0.0
    #: The filter's report (in the decision): a call refused later is noted there too.
    report: FilterReport | None = None


def period_start(period: str, now: float) -> float:
    """Unix time of the start of the current UTC day or month."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.timestamp()


def _engine(url: str) -> SAEngine:
    # BEGIN IMMEDIATE: take the write lock before reading spend, so read-decide-insert is atomic.
    return make_engine(url, what="budget ledger", immediate=True)


class BudgetLedger:
    """Reservations and settled spend in the ``budget_ledger`` table."""

    def __init__(self, url: str, *, stale_after_s: float = 3600.0) -> None:
        self.url = url
        self.stale_after_s = stale_after_s
        self.engine = _engine(url)
        self._lock = threading.Lock()  # one writer per process; the DB lock covers other processes
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as error:
            raise ConfigError(f"budget ledger {url!r}: cannot create table ({type(error).__name__})") from None

    def _usage(self, connection: Any, limit: Limit, now: float) -> float:
        t = ledger_table.c
        amount = func.coalesce(func.sum(case((t.settled, func.coalesce(t.spent, 0.0)), else_=t.reserved)), 0.0)
        query = select(amount).where(t.time >= period_start(limit.period, now))
        query = query.where(t.settled | (t.time >= now - self.stale_after_s))
        if limit.api_key is not None:
            query = query.where(t.api_key == limit.api_key)
        return float(connection.execute(query).scalar_one())

    def _lock_table(self, connection: Any) -> None:
        if self.engine.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE already holds the write lock
            connection.exec_driver_sql("LOCK TABLE budget_ledger IN SHARE ROW EXCLUSIVE MODE")

    def reserve(
        self,
        limits: list[Limit],
        api_key: str | None,
        request_id: str,
        decide: Callable[[list[tuple[Limit, float]]], float | None],
    ) -> int | None:
        """Atomically read each limit's usage, let ``decide(usages)`` return the amount to reserve
        (None: reserve nothing), and record it. Returns the reservation id."""
        now = time.time()
        with self._lock, self.engine.begin() as connection:
            self._lock_table(connection)
            usages = [(limit, self._usage(connection, limit, now)) for limit in limits]
            amount = decide(usages)
            if amount is None:
                return None
            row = {"time": now, "api_key": api_key, "request_id": request_id, "reserved": amount, "settled": False}
            result = connection.execute(insert(ledger_table).values(**row))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def raise_to(self, reservation: int, limits: list[Limit], amount: float) -> bool:
        """Atomically raise an open reservation to ``amount`` if every limit still allows it."""
        now = time.time()
        with self._lock, self.engine.begin() as connection:
            self._lock_table(connection)
            row = ledger_table.c.id == reservation
            current = connection.execute(select(ledger_table.c.reserved).where(row)).scalar_one_or_none() or 0.0
            for limit in limits:
                if self._usage(connection, limit, now) - current + amount > limit.usd + 1e-12:
                    return False
            connection.execute(update(ledger_table).where(row).values(reserved=amount))
            return True

    def settle(self, reservation: int, spent: float) -> None:
        """Replace a reservation by what the request really cost."""
        with self._lock, self.engine.begin() as connection:
            query = update(ledger_table).where(ledger_table.c.id == reservation).values(spent=spent, settled=True)
            connection.execute(query)

    def usage(self, limit: Limit) -> float:
        """Current usage against ``limit`` (settled spend plus open reservations)."""
        with self.engine.connect() as connection:
            return self._usage(connection, limit, time.time())

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()


class BudgetFilter:
    """Spend limits per key and globally; downgrades near a limit, 429 only when nothing fits."""

    name = "budget"

    def __init__(
        self,
        settings: GatewaySettings,
        ledger: BudgetLedger,
        models: list[ModelSpec] | None = None,
        *,
        downgrade_at: float = 0.8,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.downgrade_at = downgrade_at
        self.default_max_tokens = default_max_tokens
        self._keys = {key.name: key for key in settings.api_keys}
        self._models = {spec.name: spec for spec in models or []}

    def limits_for(self, api_key: str | None) -> list[Limit]:
        """Every limit that applies to a request made with ``api_key``."""
        limits = []
        if self.settings.daily_budget_usd is not None:
            limits.append(Limit(None, "day", self.settings.daily_budget_usd))
        if self.settings.monthly_budget_usd is not None:
            limits.append(Limit(None, "month", self.settings.monthly_budget_usd))
        key = self._keys.get(api_key) if api_key else None
        if key is not None and key.daily_budget_usd is not None:
            limits.append(Limit(key.name, "day", key.daily_budget_usd))
        if key is not None and key.monthly_budget_usd is not None:
            limits.append(Limit(key.name, "month", key.monthly_budget_usd))
        return limits

    @staticmethod
    def prompt_bound(ctx: RequestContext) -> int:
        """:func:`prompt_bound` of the request, computed once per request."""
        bound = ctx.extras.get("budget_prompt_bound")
        if bound is None:
            bound = ctx.extras["budget_prompt_bound"] = prompt_bound(ctx.request)
        return int(bound)

    def expected_cost(self, spec: ModelSpec, ctx: RequestContext) -> float:
        """The amount reserved for one call of ``spec`` (see the module docstring)."""
        prompt = min(self.prompt_bound(ctx), spec.context_window)
        return spec.cost_usd(prompt, min(ctx.max_tokens or self.default_max_tokens, spec.context_window))

    def ceiling(self, spec: ModelSpec, ctx: RequestContext) -> float:
        """The most one call of ``spec`` can physically cost: prompt bound and ``max_tokens`` (or the
        whole context window when unset), each at most the context window."""
        prompt = min(self.prompt_bound(ctx), spec.context_window)
        return spec.cost_usd(prompt, min(ctx.max_tokens or spec.context_window, spec.context_window))

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        limits = self.limits_for(ctx.api_key)
        if not limits:
            return candidates, report
        expected = {spec.name: self.expected_cost(spec, ctx) for spec in candidates}
        kept: list[ModelSpec] = []

        def decide(usages: list[tuple[Limit, float]]) -> float | None:
            remaining = min(limit.usd - used for limit, used in usages)
            tight = [(limit, used) for limit, used in usages if limit.usd <= 0 or used >= self.downgrade_at * limit.usd]
            affordable = [spec for spec in candidates if expected[spec.name] <= remaining + 1e-12]
            for spec in candidates:
                if spec not in affordable:
                    report.removed[spec.name] = f"expected cost ${expected[spec.name]:.6f} > remaining ${remaining:.6f}"
            if not affordable:
                report.note = self._note(usages, tight, affordable)
                return None
            cheapest = min(expected[spec.name] for spec in affordable)
            if tight:
                for spec in affordable:
                    if expected[spec.name] > cheapest + 1e-12:
                        report.removed[spec.name] = "budget near its limit: downgraded to a cheaper model"
                affordable = [spec for spec in affordable if expected[spec.name] <= cheapest + 1e-12]
            if report.removed:
                report.note = self._note(usages, tight, affordable)
            kept.extend(affordable)
            return cheapest  # admit() raises it to the model that is really called

        reservation = self.ledger.reserve(limits, ctx.api_key, ctx.request_id, decide)
        if not kept or reservation is None:
            raise RequestRejected(
                429, f"spend limit reached: {report.note or 'no model fits the remaining budget'}", "budget_exceeded"
            )
        cheapest = min(expected[spec.name] for spec in kept)
        ctx.extras["budget"] = Hold(reservation, limits, reserved=cheapest, report=report)
        return kept, report

    @staticmethod
    def _note(usages: list[tuple[Limit, float]], tight: list[tuple[Limit, float]], affordable: list[ModelSpec]) -> str:
        worst = tight[0] if tight else min(usages, key=lambda lu: lu[0].usd - lu[1])
        outcome = "downgraded to cheaper models" if affordable else "exhausted"
        return f"{worst[0].label()} budget ${worst[1]:.4f} of ${worst[0].usd:.4f} used: {outcome}"

    def admit(self, ctx: RequestContext, spec: ModelSpec) -> None:
        """Cover one model call by the reservation, before it is made; raises a non-retryable
        :class:`BackendError` when the limits no longer allow it (the engine tries the next model)."""
        hold: Hold | None = ctx.extras.get("budget")
        if hold is None:
            return
        cost = self.expected_cost(spec, ctx)
        amount = max(hold.reserved, cost) if hold.calls == 0 else hold.reserved + cost
        if amount > hold.reserved and not self.ledger.raise_to(hold.reservation, hold.limits, amount):
            reason = f"expected cost ${cost:.6f} no longer fits the budget"
            if hold.report is not None:
                hold.report.removed[spec.name] = reason
                hold.report.note = (
                    hold.report.note or "budget taken by concurrent requests: downgraded to cheaper models"
                )
            raise BackendError(f"{spec.name}: {reason}", retryable=False)
        hold.reserved = amount
        hold.calls += 1
        hold.ceiling += self.ceiling(spec, ctx)

    def settle(
        self,
        ctx: RequestContext,
        decision: Decision | None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Turn this request's reservation into its real cost (0 when no model was called), clamped to
        what the admitted calls could physically cost."""
        hold: Hold | None = ctx.extras.pop("budget", None)
        if hold is None:
            return
        spent = 0.0
        if decision is not None and hold.calls:
            spent = decision.cost
            spec = self._models.get(decision.model or "")
            if spec is not None:
                spent = max(spent, spec.cost_usd(max(prompt_tokens, 0), max(completion_tokens, 0)))
            # An upstream's usage is a claim: never settle more than the calls could cost, nor less than 0.
            spent = min(max(spent, 0.0), hold.ceiling) if math.isfinite(spent) else hold.ceiling
        self.ledger.settle(hold.reservation, spent)
