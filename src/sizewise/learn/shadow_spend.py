"""What shadow judging spent today: table ``shadow_spend`` in the request log's database, so a restart
does not reset the daily cap (``gateway.shadow.daily_cap_usd``). One row per shadow or judge call that
cost something; days are UTC days. Synchronous: the shadow runner calls it in a worker thread."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Engine as SAEngine

from sizewise.storage import create_tables, make_engine

metadata = MetaData()
spend_table = Table(
    "shadow_spend",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("request_id", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # shadow | judge
    Column("usd", Float, nullable=False),
)


def day_start(now: float) -> float:
    """Unix time of the UTC midnight that starts ``now``'s day."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class SpendLedger:
    """Today's shadow spend, summed from the database at each look (shadowed requests are few, and every
    gateway process on one database then shares one cap); ``url`` None keeps it in memory only."""

    def __init__(self, url: str | None) -> None:
        self.engine: SAEngine | None = make_engine(url, what="shadow spend ledger") if url else None
        if self.engine is not None:
            create_tables(metadata, self.engine)
        self._lock = threading.Lock()
        self._memory: list[tuple[float, float]] = []  # (time, usd) without a database

    def today(self, now: float | None = None) -> float:
        """USD spent on shadow and judge calls since UTC midnight."""
        since = day_start(time.time() if now is None else now)
        if self.engine is None:
            with self._lock:
                return sum(usd for at, usd in self._memory if at >= since)
        query = select(func.coalesce(func.sum(spend_table.c.usd), 0.0)).where(spend_table.c.time >= since)
        with self.engine.connect() as connection:
            return float(connection.execute(query).scalar_one())

    def add(self, request_id: str, model: str, kind: str, usd: float, now: float | None = None) -> None:
        """Record one call's cost (nothing for a free one)."""
        if usd <= 0:
            return
        now = time.time() if now is None else now
        if self.engine is None:
            with self._lock:
                self._memory = [(at, v) for at, v in self._memory if at >= day_start(now)] + [(now, usd)]
            return
        row = {"time": now, "request_id": request_id, "model": model, "kind": kind, "usd": usd}
        with self.engine.begin() as connection:
            connection.execute(insert(spend_table), [row])

    def close(self) -> None:
        """Release the database."""
        if self.engine is not None:
            self.engine.dispose()
