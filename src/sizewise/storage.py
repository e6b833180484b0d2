"""SQL engines for sizewise's own tables (request log, budget ledger): SQLite in WAL mode by default,
any SQLAlchemy URL (PostgreSQL) when configured."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import MetaData, create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause

from sizewise.errors import ConfigError

#: Tries of a SQLite CREATE TABLE that lost a race with another process creating the same tables.
_SQLITE_TRIES = 5
#: The PostgreSQL advisory lock that serialises sizewise's CREATE TABLEs (any constant; "sizewise" in ASCII).
_SCHEMA_LOCK = 0x73697A6577697365


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


def create_tables(metadata: MetaData, engine: Engine, *statements: TextClause) -> None:
    """``metadata.create_all(engine)``, then ``statements`` (``CREATE INDEX IF NOT EXISTS ...``), safe when
    several gateway replicas start at once on one PostgreSQL: there two racing CREATEs both find nothing
    and the second fails on the system catalog's unique index, so they take turns under a
    transaction-scoped advisory lock. On SQLite the existence check is a read outside the write lock, so
    the loser of the race fails (``table ... already exists``, or a stale snapshot); it tries again, and
    then finds the winner's tables."""
    for attempt in range(_SQLITE_TRIES):
        try:
            with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    connection.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                metadata.create_all(connection)
                for statement in statements:
                    connection.execute(statement)
            return
        except OperationalError:
            if engine.dialect.name != "sqlite" or attempt == _SQLITE_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
