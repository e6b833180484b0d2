"""The budget ledger: reservations and settled spend per request in table ``budget_ledger`` of the
request log's database, read and written atomically across threads, processes and gateways (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE``). The policy around it is :mod:`.budget`."""

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

from sizewise.errors import ConfigError
from sizewise.policy.constraints.budget_wait import SettleSignal
from sizewise.storage import create_tables, make_engine

#: How long a peek at the ledger serves the other waiters of this process (seconds).
PEEK_TTL_S = 0.01

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


#: (limit, usage: settled spend + open reservations, of which open reservations).
Usage = tuple[Limit, float, float]


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
        self._reader: SAEngine | None = None  # peeks without the write lock (created on first use)
        self._lock = threading.Lock()  # one writer per process; the DB lock covers other processes
        #: Wakes this process's waiting requests when a reservation settles (other processes: polling).
        self.signal = SettleSignal()
        self._peeked: dict[tuple[Limit, ...], tuple[float, list[Usage]]] = {}
        self._peek_lock = threading.Lock()
        try:
            create_tables(metadata, self.engine)  # replicas starting at once take turns (PostgreSQL)
        except SQLAlchemyError as error:
            raise ConfigError(f"budget ledger {url!r}: cannot create table ({type(error).__name__})") from None

    def _amounts(self, connection: Any, limit: Limit, now: float) -> tuple[float, float]:
        """(settled spend + open reservations, open reservations) against ``limit``."""
        t = ledger_table.c
        amount = func.coalesce(func.sum(case((t.settled, func.coalesce(t.spent, 0.0)), else_=t.reserved)), 0.0)
        held = func.coalesce(func.sum(case((t.settled, 0.0), else_=t.reserved)), 0.0)
        query = select(amount, held).where(t.time >= period_start(limit.period, now))
        query = query.where(t.settled | (t.time >= now - self.stale_after_s))
        if limit.api_key is not None:
            query = query.where(t.api_key == limit.api_key)
        used, in_flight = connection.execute(query).one()
        return float(used), float(in_flight)

    def _usage(self, connection: Any, limit: Limit, now: float) -> float:
        return self._amounts(connection, limit, now)[0]

    def _lock_table(self, connection: Any) -> None:
        if self.engine.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE already holds the write lock
            connection.exec_driver_sql("LOCK TABLE budget_ledger IN SHARE ROW EXCLUSIVE MODE")

    def reserve(
        self,
        limits: list[Limit],
        api_key: str | None,
        request_id: str,
        decide: Callable[[list[Usage]], float | None],
    ) -> int | None:
        """Atomically read each limit's usage, let ``decide(usages)`` return the amount to reserve
        (None: reserve nothing), and record it. Returns the reservation id."""
        now = time.time()
        with self._lock, self.engine.begin() as connection:
            self._lock_table(connection)
            usages = [(limit, *self._amounts(connection, limit, now)) for limit in limits]
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
        self.signal.notify()

    def may_fit(self, limits: list[Limit], needed: float) -> bool:
        """A waiting request's hint, not a decision: whether ``needed`` USD may fit every limit now, or
        nothing is in flight any more (the next attempt then decides for good).

        Read without the write lock; one read serves every waiter of this process for
        :data:`PEEK_TTL_S`, and a True claims its room in that read, so one settled reservation wakes
        only as many of this process's waiters as it can serve (not a herd of write transactions)."""
        key = tuple(limits)
        with self._peek_lock:
            cached = self._peeked.get(key)
            if cached is None or time.monotonic() - cached[0] >= PEEK_TTL_S:
                cached = self._peeked[key] = (time.monotonic(), self._read(limits))
            taken, usages = cached
            if not any(held > 0 for _, _, held in usages):
                return True
            if any(used + needed > limit.usd + 1e-12 for limit, used, _ in usages):
                return False
            self._peeked[key] = (taken, [(limit, used + needed, held + needed) for limit, used, held in usages])
            return True

    def _read(self, limits: list[Limit]) -> list[Usage]:
        if self._reader is None:
            self._reader = make_engine(self.url, what="budget ledger")
        now = time.time()
        with self._reader.connect() as connection:
            return [(limit, *self._amounts(connection, limit, now)) for limit in limits]

    def usage(self, limit: Limit) -> float:
        """Current usage against ``limit`` (settled spend plus open reservations)."""
        with self.engine.connect() as connection:
            return self._usage(connection, limit, time.time())

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()
        if self._reader is not None:
            self._reader.dispose()
