"""SQL engines for sizewise's own tables (request log, budget ledger): SQLite in WAL mode by default,
any SQLAlchemy URL (PostgreSQL) when configured."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from sizewise.errors import ConfigError


def make_engine(url: str, *, what: str = "database", immediate: bool = False) -> Engine:
    """A SQLAlchemy engine for ``url``; a bad URL is a :class:`ConfigError` naming ``what`` it is for.

    SQLite connections get WAL (readers never block the writer) and a busy timeout. ``immediate``
    makes every SQLite transaction take the write lock at BEGIN, so a read-decide-write sequence
    (the budget check) is atomic across threads and processes.
    """
    # PostgreSQL: check a pooled connection before use, so a restarted server costs no write.
    options = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        engine = create_engine(url, **options)
    except (SQLAlchemyError, ImportError, ValueError) as error:
        raise ConfigError(f"{what} URL {url!r}: {error}") from None
    if engine.dialect.name != "sqlite":
        return engine

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        if immediate:
            dbapi_connection.isolation_level = None  # the "begin" hook below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    if immediate:

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
