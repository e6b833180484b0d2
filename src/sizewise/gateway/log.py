"""The request log: one row per request, via SQLAlchemy Core.

SQLite (WAL mode, ``synchronous=NORMAL``) by default; PostgreSQL when ``gateway.log_url`` is a
``postgresql+psycopg://`` URL (install the ``postgres`` extra). The prompt is stored as a sha256
hash; the text only when ``gateway.log_text`` is on. Rows are written by a background thread in
batches so the request path never waits for the disk; :meth:`RequestLog.flush` waits for them.

What a row holds never stops it from being written: strings lose NUL characters and unencodable
surrogates and are cut to their column's length (marked with a trailing ``…``), integers are clamped to
the 32-bit range, non-finite numbers become NULL. A batch the database refuses is retried row by
row, so one bad row cannot take the others with it; a row that still fails is written in a minimal
form (id, time, status, hash and the error); rows that cannot be written at all (database down,
disk full) stay queued and are retried with the next batch (up to :data:`MAX_BACKLOG` rows). Every
failure is logged (logger ``sizewise.log``) and counted (``sizewise_log_rows_failed_total``,
``sizewise_log_rows_dropped_total``, gauge ``sizewise_log_backlog_rows`` in ``/metrics``).

Crash window: a row is queued when its request finishes and committed within ``batch_delay_s``
(0.1 s) plus one write, so a ``kill -9`` loses at most the requests answered in about the last 0.15 s
(a SQLite commit in WAL mode survives the process being killed; only a power loss can take the last
commits with ``synchronous=NORMAL``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, String, insert, select
from sqlalchemy.exc import SQLAlchemyError

from sizewise.core.decision import Decision

# The table lives below the gateway (the latency filter reads it too); re-exported here.
from sizewise.core.requestlog import make_engine as make_engine
from sizewise.core.requestlog import metadata as metadata
from sizewise.core.requestlog import requests_table as requests_table
from sizewise.errors import ConfigError
from sizewise.policy.constraints.privacy import redact_error
from sizewise.storage import create_tables


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


#: Integer columns are 32-bit on PostgreSQL: larger values are clamped to these.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
#: Rows kept for a retry while the database cannot take them; beyond this the oldest are dropped.
MAX_BACKLOG = 100_000
logger = logging.getLogger("sizewise.log")


def _text(value: Any, length: int | None) -> str:
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        text = text.replace("\x00", "")
    if length is not None and len(text) > length:
        text = text[: length - 1] + "…"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _clean_value(column: Column[Any], value: Any) -> Any:
    """``value`` made storable in ``column`` whatever the client sent."""
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, String):  # Text is a String without a length
        return _text(value, kind.length)
    if isinstance(kind, Boolean):
        return bool(value)
    try:
        if isinstance(kind, Integer):
            return min(max(int(value), INT_MIN), INT_MAX)
        if isinstance(kind, Float):
            number = float(value)
            return number if math.isfinite(number) else None
    except (OverflowError, ValueError, TypeError):  # inf, nan, 10**400 as a float: unknown, not a lost row
        return None
    return value


def clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row every supported database accepts (see the module docstring)."""
    columns = requests_table.c
    return {name: _clean_value(columns[name], value) for name, value in row.items()}


def _row(entry: LogEntry, log_text: bool) -> dict[str, Any]:
    d = entry.decision
    fired = {f.filter: f.removed or f.note for f in d.filters if f.fired} if d else None
    return {
        "time": entry.time,
        "request_id": entry.request_id,
        "prompt_hash": hashlib.sha256(entry.text.encode("utf-8", "surrogatepass")).hexdigest(),
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
        "filters": json.dumps(fired, default=str) if fired else None,
        "steps": len(d.steps) if d else 0,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "cost": d.cost if d else 0.0,
        "big_cost": entry.big_cost,
        "latency_ms": entry.latency_s * 1000,
        "status": entry.status,
        "stream": entry.stream,
    }


def _minimal(row: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """What is left of a row the database refused: enough to count and find the request."""
    keep = {name: row.get(name) for name in ("time", "request_id", "prompt_hash", "status", "latency_ms")}
    keep["errors"] = json.dumps([f"log: row refused by the database: {type(error).__name__}: {error}"[:500]])
    return clean_row({**keep, "time": keep["time"] or time.time(), "prompt_hash": keep["prompt_hash"] or "-"})


def build_row(entry: LogEntry, log_text: bool) -> dict[str, Any]:
    """The cleaned row for ``entry``; an entry that cannot even be read gives a minimal row."""
    try:
        return clean_row(_row(entry, log_text))
    except Exception as error:  # a bug in a field must cost that field, never the row
        base = {"time": time.time(), "request_id": str(entry.request_id), "prompt_hash": "-", "status": 0}
        return _minimal({**base, "status": getattr(entry, "status", 0)}, error)


class RequestLog:
    """Appends rows from a background writer thread; create with a SQLAlchemy URL."""

    def __init__(self, url: str, *, log_text: bool = False, batch_delay_s: float = 0.1, retry_s: float = 1.0) -> None:
        self.url = url
        self.batch_delay_s = batch_delay_s
        self.retry_s = retry_s
        self.log_text = log_text
        self.engine = make_engine(url)
        try:
            create_tables(metadata, self.engine)  # replicas starting at once take turns (PostgreSQL)
        except SQLAlchemyError as error:
            raise ConfigError(f"request log {url!r}: cannot create table ({error.__class__.__name__})") from None
        self._queue: queue.SimpleQueue[LogEntry | None] = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._backlog: list[dict[str, Any]] = []
        #: Rows the database refused (stored in minimal form), and rows given up (backlog full, or at close).
        self.failed = 0
        self.dropped = 0
        #: With ``log_text`` off, called in the writer thread with ``(request_id, prompt text)`` of each
        #: answered request, so learning can keep a vector instead of the text (set by the gateway).
        self.keep_features: Callable[[list[tuple[str, str]]], None] | None = None
        self.features_failed = 0
        #: Entries queued and not yet written, by request id: feedback on an answer given a moment ago finds it.
        self._queued: dict[str, LogEntry] = {}
        self._thread = threading.Thread(target=self._run, name="sizewise-log", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Rows waiting for the database to take them again."""
        return len(self._backlog)

    def write(self, entry: LogEntry) -> None:
        """Queue a row (returns at once)."""
        with self._done:
            self._pending += 1
        self._queued[entry.request_id] = entry
        self._queue.put(entry)

    def queued(self, request_id: str) -> LogEntry | None:
        """The entry of ``request_id`` if it is queued and not yet written."""
        return self._queued.get(request_id)

    def _next(self) -> list[LogEntry | None]:
        """The next batch: wait for one entry (or for the retry time when rows are waiting), then a
        little longer, so the writer holds the GIL in rare short bursts instead of on every request."""
        try:
            first = self._queue.get(timeout=self.retry_s) if self._backlog else self._queue.get()
        except queue.Empty:
            return []
        if first is not None:
            time.sleep(self.batch_delay_s)
        batch = [first]
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return batch

    def _run(self) -> None:
        while True:
            batch = self._next()
            stop = None in batch
            rows = self._backlog + [build_row(e, self.log_text) for e in batch if e is not None]
            try:
                left = self._write(rows)
            except Exception:  # the writer thread must never die: keep every row for the next try
                logger.exception("request log: unexpected error while writing %d rows", len(rows))
                left = rows
            self._keep_features([e for e in batch if e is not None])
            for entry in batch:
                if entry is not None:
                    self._queued.pop(entry.request_id, None)
            if stop and left:
                logger.error("request log: %d rows could not be written before shutdown: lost", len(left))
                self.dropped += len(left)
                left = []
            if len(left) > MAX_BACKLOG:
                logger.error(
                    "request log: backlog over %d rows: dropping the %d oldest", MAX_BACKLOG, len(left) - MAX_BACKLOG
                )
                self.dropped += len(left) - MAX_BACKLOG
                left = left[-MAX_BACKLOG:]
            done = len(rows) - len(left)
            self._backlog = left
            with self._done:
                self._pending -= done
                self._done.notify_all()
            if stop:
                return

    def _keep_features(self, entries: list[LogEntry]) -> None:
        """Hand the answered prompts to ``keep_features`` (text off); a failure costs the vectors, never rows."""
        keep = self.keep_features
        items = [(e.request_id, e.text) for e in entries if e.status == 200 and e.text]
        if keep is None or self.log_text or not items:
            return
        try:
            keep(items)
        except Exception as error:
            self.features_failed += len(items)
            if self.features_failed == len(items):  # the first failure in full, then only counted
                logger.exception("request log: cannot keep prompt vectors (%s)", type(error).__name__)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(requests_table), rows)

    def _write(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``rows``; returns those the database could not take (to retry later)."""
        if not rows:
            return []
        try:
            self._insert(rows)
            return []
        except Exception as error:
            logger.error(
                "request log: a batch of %d rows failed (%s: %s); retrying row by row",
                len(rows),
                type(error).__name__,
                error,
            )
        for i, row in enumerate(rows):
            try:
                self._insert([row])
                continue
            except Exception as error:
                refused = error
            try:
                self._insert([_minimal(row, refused)])
            except Exception as error:  # even the minimal row fails: the database itself is unavailable
                logger.error(
                    "request log: database unavailable (%s): %d rows kept for a retry",
                    type(error).__name__,
                    len(rows) - i,
                )
                return rows[i:]
            self.failed += 1
            logger.error("request log: row %s stored in minimal form: %s", row.get("request_id"), refused)
        return []

    def register(self, registry: Any) -> None:
        """Export the writer's failure counters and backlog in a prometheus ``registry``."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        log = self

        class _Collector:
            def collect(self) -> Any:
                yield CounterMetricFamily("sizewise_log_rows_failed", "Log rows stored in minimal form", log.failed)
                yield CounterMetricFamily("sizewise_log_rows_dropped", "Log rows given up", log.dropped)
                yield GaugeMetricFamily("sizewise_log_backlog_rows", "Log rows waiting for a retry", log.backlog)

        registry.register(_Collector())

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
