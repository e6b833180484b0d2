"""The request log: one row per request, via SQLAlchemy Core.

SQLite (WAL mode, ``synchronous=NORMAL``) by default; PostgreSQL when ``gateway.log_url`` is a
``postgresql+psycopg://`` URL (install the ``postgres`` extra). The prompt is stored as a sha256
hash; the text only when ``gateway.log_text`` is on. Rows are written by a background thread in
batches so the request path never waits for the disk; :meth:`RequestLog.flush` waits for them.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import SQLAlchemyError

from sizewise import storage
from sizewise.errors import ConfigError
from sizewise.policy.constraints.privacy import redact_error
from sizewise.policy.types import Decision

metadata = MetaData()
requests_table = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("request_id", String(64), nullable=False),
    Column("prompt_hash", String(64), nullable=False),
    Column("prompt_text", Text),
    Column("api_key", String(200)),
    Column("user", String(200)),
    Column("policy", String(200)),
    Column("model", String(200)),
    Column("score", Float),
    Column("threshold", Float),
    Column("escalated", Boolean),
    Column("fallback_from", String(200)),
    Column("errors", Text),
    Column("filters", Text),
    Column("steps", Integer),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("cost", Float),
    Column("big_cost", Float),
    Column("latency_ms", Float),
    Column("status", Integer, nullable=False),
    Column("stream", Boolean),
)


@dataclass
class LogEntry:
    """What the gateway knows about one finished request."""

    request_id: str
    text: str
    status: int
    latency_s: float
    decision: Decision | None = None
    api_key: str | None = None
    user: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    big_cost: float | None = None
    stream: bool = False
    time: float = field(default_factory=time.time)


def make_engine(url: str) -> SAEngine:
    """The request log's SQLAlchemy engine (SQLite in WAL mode by default)."""
    return storage.make_engine(url, what="request log")


def _row(entry: LogEntry, log_text: bool) -> dict[str, Any]:
    d = entry.decision
    fired = {f.filter: f.removed or f.note for f in d.filters if f.fired} if d else None
    return {
        "time": entry.time,
        "request_id": entry.request_id,
        "prompt_hash": hashlib.sha256(entry.text.encode()).hexdigest(),
        "prompt_text": entry.text if log_text else None,
        "api_key": entry.api_key,
        "user": entry.user,
        "policy": d.policy if d else None,
        "model": d.model if d else None,
        "score": d.score if d else None,
        "threshold": d.threshold if d else None,
        "escalated": d.escalated if d else None,
        "fallback_from": d.fallback_from if d else None,
        # An upstream's error may quote the prompt: without log_text only the gateway's own words stay.
        "errors": json.dumps(d.errors if log_text else [redact_error(e) for e in d.errors]) if d and d.errors else None,
        "filters": json.dumps(fired) if fired else None,
        "steps": len(d.steps) if d else 0,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "cost": d.cost if d else 0.0,
        "big_cost": entry.big_cost,
        "latency_ms": entry.latency_s * 1000,
        "status": entry.status,
        "stream": entry.stream,
    }


class RequestLog:
    """Appends rows from a background writer thread; create with a SQLAlchemy URL."""

    def __init__(self, url: str, *, log_text: bool = False, batch_delay_s: float = 0.2) -> None:
        self.url = url
        self.batch_delay_s = batch_delay_s
        self.log_text = log_text
        self.engine = make_engine(url)
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as error:
            raise ConfigError(f"request log {url!r}: cannot create table ({error.__class__.__name__})") from None
        self._queue: queue.SimpleQueue[LogEntry | None] = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="sizewise-log", daemon=True)
        self._thread.start()

    def write(self, entry: LogEntry) -> None:
        """Queue a row (returns at once)."""
        with self._done:
            self._pending += 1
        self._queue.put(entry)

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            # Wait a little and write in one batch: the writer then holds the GIL in rare short bursts
            # instead of waking (and stealing the request path's GIL) on every request.
            if entry is not None:
                time.sleep(self.batch_delay_s)
            batch = [entry]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [_row(e, self.log_text) for e in batch if e is not None]
            if rows:
                try:
                    with self.engine.begin() as connection:
                        connection.execute(insert(requests_table), rows)
                except SQLAlchemyError:
                    self.dropped += len(rows)  # a full disk must not take the gateway down
            with self._done:
                self._pending -= len(batch) - batch.count(None)
                self._done.notify_all()
            if None in batch:
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer and release the database."""
        self._queue.put(None)
        self._thread.join(timeout=10)
        self.engine.dispose()


def read_rows(url: str, since: float | None = None) -> list[dict[str, Any]]:
    """Every logged row (optionally since a unix time), oldest first."""
    engine = make_engine(url)
    try:
        query = select(requests_table).order_by(requests_table.c.id)
        if since is not None:
            query = query.where(requests_table.c.time >= since)
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    except SQLAlchemyError as error:
        raise ConfigError(f"cannot read request log {url!r}: {error.__class__.__name__}") from None
    finally:
        engine.dispose()
