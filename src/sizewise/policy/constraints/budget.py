"""The budget filter: per-API-key and global spend limits per day and per month (UTC).

Spend lives in table ``budget_ledger`` of the request log's database (``gateway.log_url``). Each
request *reserves* its expected cost before any model is called and *settles* to the real cost
when it finishes (:meth:`BudgetFilter.settle`, called by the gateway once per request). The read of
current spend, the choice of affordable models and the insert of the reservation happen in one
write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE``), so concurrent requests,
in one process or several, can never together reserve more than the limit.

Expected cost = ``spec.cost_usd(prompt_estimate * PROMPT_MARGIN, max_tokens or DEFAULT_MAX_TOKENS)``.
The guarantee is exact when clients set ``max_tokens``; without it a call that writes more than
``DEFAULT_MAX_TOKENS`` tokens can settle above its reservation.

Near the limit the filter *downgrades* instead of refusing: models whose expected cost no longer
fits the remaining budget are removed, and once ``downgrade_at`` (default 80%) of a limit is used
only the cheapest candidates stay. The report's note says so, and it is returned in the response's
``sizewise.filters``. Only when not even the cheapest model fits does the request get a 429.
Reservations never settled (a crashed worker) stop counting after ``stale_after_s``.
"""

from __future__ import annotations

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

from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.errors import ConfigError
from sizewise.policy.types import Decision, FilterReport, RequestContext, RequestRejected
from sizewise.storage import make_engine

PROMPT_MARGIN = 1.25
DEFAULT_MAX_TOKENS = 1024

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
            if self.engine.dialect.name == "postgresql":
                connection.exec_driver_sql("LOCK TABLE budget_ledger IN SHARE ROW EXCLUSIVE MODE")
            usages = [(limit, self._usage(connection, limit, now)) for limit in limits]
            amount = decide(usages)
            if amount is None:
                return None
            row = {"time": now, "api_key": api_key, "request_id": request_id, "reserved": amount, "settled": False}
            result = connection.execute(insert(ledger_table).values(**row))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

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

    def expected_cost(self, spec: ModelSpec, ctx: RequestContext) -> float:
        """The amount reserved if ``spec`` answers (see the module docstring)."""
        return spec.cost_usd(ctx.prompt_tokens * PROMPT_MARGIN, ctx.max_tokens or self.default_max_tokens)

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
            if tight and affordable:
                cheapest = min(expected[spec.name] for spec in affordable)
                for spec in affordable:
                    if expected[spec.name] > cheapest + 1e-12:
                        report.removed[spec.name] = "budget near its limit: downgraded to a cheaper model"
                affordable = [spec for spec in affordable if expected[spec.name] <= cheapest + 1e-12]
            if report.removed:
                worst = tight[0] if tight else min(usages, key=lambda lu: lu[0].usd - lu[1])
                report.note = f"{worst[0].label()} budget ${worst[1]:.4f} of ${worst[0].usd:.4f} used: " + (
                    "downgraded to cheaper models" if affordable else "exhausted"
                )
            kept.extend(affordable)
            return max((expected[spec.name] for spec in affordable), default=None) if affordable else None

        reservation = self.ledger.reserve(limits, ctx.api_key, ctx.request_id, decide)
        if not kept:
            raise RequestRejected(
                429, f"spend limit reached: {report.note or 'no model fits the remaining budget'}", "budget_exceeded"
            )
        if reservation is not None:
            ctx.extras["budget_reservation"] = reservation
        return kept, report

    def settle(
        self,
        ctx: RequestContext,
        decision: Decision | None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Turn this request's reservation into its real cost (0 when no model answered)."""
        reservation = ctx.extras.pop("budget_reservation", None)
        if reservation is None:
            return
        spent = decision.cost if decision is not None else 0.0
        spec = self._models.get(decision.model or "") if decision is not None else None
        if spec is not None:
            spent = max(spent, spec.cost_usd(prompt_tokens, completion_tokens))
        self.ledger.settle(reservation, spent)
