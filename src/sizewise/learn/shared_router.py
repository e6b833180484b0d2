"""The promoted router in the database that gateway replicas share (``gateway.state_url``).

``sizewise router promote|rollback|retrain`` with a catalog whose gateway has a ``state_url`` writes the
version that became current, with its file's bytes and digest, to table ``router_current``; every replica
polls that row's version and digest (one small read every ``gateway.state_poll_s``) and loads the file
when it changed (:mod:`sizewise.serve.router_watch`). Replicas need no shared disk: the file travels in
the row. SQLAlchemy Core only; SQLite or PostgreSQL.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, select
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import SQLAlchemyError

from sizewise.errors import ConfigError
from sizewise.storage import create_tables, make_engine

#: The row of the default router (the one ``default.zip`` holds).
DEFAULT = "default"

metadata = MetaData()
router_table = Table(
    "router_current",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("version", String(40), nullable=False),
    Column("digest", String(64), nullable=False),  # sha256 of the file: what a replica compares
    Column("changed", Float, nullable=False),
    Column("file", LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class Current:
    """The promoted version as the database has it (``file`` only when asked for)."""

    version: str
    digest: str
    changed: float
    file: bytes | None = None


def _engine(url: str) -> SAEngine:
    engine = make_engine(url, what="shared router state")
    try:
        create_tables(metadata, engine)
    except SQLAlchemyError as error:
        engine.dispose()
        raise ConfigError(f"shared router state {engine.url!r}: cannot create table ({type(error).__name__})") from None
    return engine


def digest(data: bytes) -> str:
    """sha256 hex of a router file's bytes."""
    return hashlib.sha256(data).hexdigest()


def publish(url: str, version: str, file: str | Path, name: str = DEFAULT) -> Current:
    """Record ``version`` (its file ``file``) as the promoted router every replica loads."""
    data = Path(file).read_bytes()
    row = Current(version, digest(data), time.time(), data)
    engine = _engine(url)
    try:
        with engine.begin() as connection:  # delete + insert in one transaction: portable, and atomic
            connection.execute(router_table.delete().where(router_table.c.name == name))
            connection.execute(router_table.insert().values(name=name, **row.__dict__))
    except SQLAlchemyError as error:
        raise ConfigError(
            f"shared router state {engine.url!r}: cannot record {version} ({type(error).__name__})"
        ) from None
    finally:
        engine.dispose()
    return row


class SharedRouter:
    """A replica's reader of the promoted router's row (one engine, reused by every poll)."""

    def __init__(self, url: str, name: str = DEFAULT) -> None:
        self.url = url
        self.name = name
        self.engine = _engine(url)

    def current(self, with_file: bool = False) -> Current | None:
        """The promoted version (None before the first promotion); the file's bytes when ``with_file``."""
        t = router_table.c
        columns = [t.version, t.digest, t.changed] + ([t.file] if with_file else [])
        with self.engine.connect() as connection:
            row = connection.execute(select(*columns).where(t.name == self.name)).first()
        if row is None:
            return None
        return Current(str(row.version), str(row.digest), float(row.changed), bytes(row.file) if with_file else None)

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()
