"""Sessions in a database, so several gateway replicas pin a session to one model (``gateway.state_url``).

Table ``sessions`` (key, model, touched): one row per live session. A new session is *claimed* with one
atomic insert-or-get (``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired``, then a read of the row in
the same transaction): when two replicas race on the same new session, the first insert wins and both
read its model back. A session whose model moved (``switched``/``moved``) is overwritten. A row expires
``session_ttl_s`` after its last use; a lookup refreshes ``touched`` at most every :data:`TOUCH_EVERY_S`
(so a busy session costs one read per turn, not a write), and expired rows are deleted now and then.

SQLAlchemy Core only, SQLite (one replica, or several on one machine) and PostgreSQL (several
machines). Every call blocks on the database: the engine calls the store from a worker thread
(``blocking``). A database that fails is logged and the request goes on without affinity: sessions
are an optimisation, never a reason to refuse a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, delete, func, select, update
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import SQLAlchemyError

from sizewise.catalog.schema import GatewaySettings
from sizewise.errors import ConfigError
from sizewise.serve.session import MAX_ID_CHARS, MemorySessionStore, SessionStore
from sizewise.storage import create_tables, make_engine

logger = logging.getLogger(__name__)

#: A lookup rewrites ``touched`` only when it is older than this (seconds; at most a tenth of the TTL).
TOUCH_EVERY_S = 60.0

metadata = MetaData()
sessions_table = Table(
    "sessions",
    metadata,
    # "<source>:<id>": ids longer than MAX_ID_CHARS are hashed by ``session_of``, so this bounds it.
    Column("key", String(MAX_ID_CHARS + 16), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("touched", Float, nullable=False, index=True),
)


def _upsert(dialect: str) -> Any:
    """The dialect's ``insert`` that has ``on_conflict_do_update`` (SQLAlchemy's, not raw SQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


class SqlSessionStore:
    """Session key -> model in table ``sessions``; the same interface as :class:`MemorySessionStore`."""

    #: The engine calls a blocking store from a worker thread, never on the event loop.
    blocking = True

    def __init__(self, url: str, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.clock = clock  # wall time: replicas on several machines compare it
        self.engine: SAEngine = make_engine(url, what="session store")
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            raise ConfigError(f"gateway.state_url {self.engine.url!r}: sessions need SQLite or PostgreSQL")
        self._insert = _upsert(self.engine.dialect.name)
        self._touch_every = min(TOUCH_EVERY_S, ttl_s / 10)
        self._swept = -float("inf")
        self._sweep_lock = threading.Lock()
        try:
            create_tables(metadata, self.engine)
        except SQLAlchemyError as error:
            raise ConfigError(
                f"session store {self.engine.url!r}: cannot create table ({type(error).__name__})"
            ) from None

    def __len__(self) -> int:
        t = sessions_table.c
        with self.engine.connect() as connection:
            query = select(func.count()).select_from(sessions_table).where(t.touched >= self.clock() - self.ttl_s)
            return int(connection.execute(query).scalar_one())

    def get(self, key: str) -> str | None:
        """The model of a live session (refreshing it), or None; None too when the database fails."""
        now, t = self.clock(), sessions_table.c
        try:
            with self.engine.connect() as connection:
                row = connection.execute(select(t.model, t.touched).where(t.key == key)).first()
        except SQLAlchemyError as error:
            logger.warning("session store: lookup failed (%s); routing without affinity", type(error).__name__)
            return None
        if row is None or now - row.touched > self.ttl_s:
            return None
        if now - row.touched > self._touch_every:
            try:  # its own write-first transaction: a read upgraded to a write can fail at once on SQLite
                with self.engine.begin() as connection:
                    connection.execute(update(sessions_table).where(t.key == key).values(touched=now))
            except SQLAlchemyError as error:  # the session is still live; the next lookup refreshes it
                logger.warning("session store: refresh failed (%s)", type(error).__name__)
        return str(row.model)

    def claim(self, key: str, model: str) -> str:
        """Pin a *new* session to ``model`` unless a live one exists: returns the model the session has
        now (the first writer's, when replicas race). The database failing returns ``model``."""
        now, t = self.clock(), sessions_table.c
        statement = self._insert(sessions_table).values(key=key, model=model, touched=now)
        statement = statement.on_conflict_do_update(
            index_elements=[t.key],
            set_={"model": statement.excluded.model, "touched": statement.excluded.touched},
            where=t.touched < now - self.ttl_s,  # an expired session is new again
        )
        try:
            with self.engine.begin() as connection:
                connection.execute(statement)
                winner = connection.execute(select(t.model).where(t.key == key)).scalar_one()
        except SQLAlchemyError as error:
            logger.warning("session store: claim failed (%s); session not pinned", type(error).__name__)
            return model
        self._sweep(now)
        return str(winner)

    def put(self, key: str, model: str) -> None:
        """Pin a session to ``model``, replacing its model (a session that switched or moved)."""
        now, t = self.clock(), sessions_table.c
        statement = self._insert(sessions_table).values(key=key, model=model, touched=now)
        statement = statement.on_conflict_do_update(index_elements=[t.key], set_={"model": model, "touched": now})
        try:
            with self.engine.begin() as connection:
                connection.execute(statement)
        except SQLAlchemyError as error:
            logger.warning("session store: write failed (%s); session not moved", type(error).__name__)

    def _sweep(self, now: float) -> None:
        """Delete expired rows, at most once per tenth of the TTL per process (the table stays small)."""
        with self._sweep_lock:
            if now - self._swept < self.ttl_s / 10:
                return
            self._swept = now
        try:
            with self.engine.begin() as connection:
                connection.execute(delete(sessions_table).where(sessions_table.c.touched < now - self.ttl_s))
        except SQLAlchemyError as error:
            logger.warning("session store: sweep failed (%s)", type(error).__name__)

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()


def state_url(settings: GatewaySettings) -> str | None:
    """The database replicas share state in: ``gateway.state_url`` (``log``: the request log's), or None."""
    url = settings.state_url
    if url in (None, "", "none"):
        return None
    if url == "log":
        if settings.log_url == "none":
            raise ConfigError("gateway.state_url is 'log' but gateway.log_url is 'none'")
        return settings.log_url
    return url


def session_store(settings: GatewaySettings) -> SessionStore:
    """The sessions of this gateway: in the shared database when one is configured, else in memory."""
    url = state_url(settings)
    if url is None:
        return MemorySessionStore(settings.max_sessions, settings.session_ttl_s)
    return SqlSessionStore(url, settings.session_ttl_s)
