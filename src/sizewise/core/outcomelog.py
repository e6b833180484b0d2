"""The outcome tables beside the request log: judged outcomes and the feature vectors kept without text.

``outcomes`` holds one row per judgement of one model's answer to one logged request (a client's
feedback, a reference answer, a grader, an LLM judge); ``request_features`` holds a request's prompt
vector when the prompt text itself is not logged (``gateway.log_text`` off). Both live in the request
log's database (SQLite or PostgreSQL) and are keyed by the request id. SQLAlchemy Core only; the
store API over them is :class:`sizewise.learn.outcomes.OutcomeStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Float, Integer, LargeBinary, MetaData, String, Table, Text, func, insert, select, text
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import SQLAlchemyError

from sizewise.core.requestlog import requests_table
from sizewise.errors import ConfigError
from sizewise.storage import create_tables as _create

metadata = MetaData()
outcomes_table = Table(
    "outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("model", String(200), nullable=False),
    Column("score", Float, nullable=False),
    Column("source", String(32), nullable=False),
    Column("other_model", String(200)),
    Column("detail", Text),  # JSON
)
features_table = Table(
    "request_features",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("time", Float, nullable=False),
    Column("embedding", String(200), nullable=False),  # which embedder made the vector (its installed id)
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
)

#: Feedback and judges find a request by its id: the request log has no index on it of its own.
_REQUEST_ID_INDEX = "CREATE INDEX IF NOT EXISTS ix_requests_request_id ON requests (request_id)"


def create_tables(engine: SAEngine) -> None:
    """Create the outcome tables (and the request log's table with its request-id index) if missing;
    a :class:`ConfigError` naming the database when it refuses."""
    from sizewise.core.requestlog import metadata as log_metadata

    try:
        _create(log_metadata, engine)  # replicas starting at once take turns (PostgreSQL)
        _create(metadata, engine, text(_REQUEST_ID_INDEX))
    except SQLAlchemyError as error:
        raise ConfigError(f"outcome store {engine.url!r}: cannot create tables ({type(error).__name__})") from None


def insert_outcomes(engine: SAEngine, rows: Sequence[dict[str, Any]]) -> None:
    """Insert outcome rows (columns of :data:`outcomes_table` but ``id``) in one transaction."""
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(outcomes_table), list(rows))


def select_outcomes(engine: SAEngine, since: float | None = None) -> list[dict[str, Any]]:
    """Every outcome row (optionally from a unix time on), oldest first."""
    query = select(outcomes_table).order_by(outcomes_table.c.id)
    if since is not None:
        query = query.where(outcomes_table.c.time >= since)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def find_request(engine: SAEngine, request_id: str) -> dict[str, Any] | None:
    """The request log's row of ``request_id`` (the latest, should an id repeat), or None."""
    t = requests_table.c
    query = select(t.request_id, t.model, t.api_key, t.status, t.time).where(t.request_id == request_id)
    with engine.connect() as connection:
        row = connection.execute(query.order_by(t.id.desc()).limit(1)).first()
    return dict(row._mapping) if row is not None else None


def judged_requests(engine: SAEngine, since: float | None = None, api_key: str | None = None) -> list[dict[str, Any]]:
    """The request log's rows of every request that has at least one outcome, oldest first (only those made
    with key name ``api_key`` when given; None: every client's)."""
    judged = select(outcomes_table.c.request_id).distinct()
    query = select(requests_table).where(requests_table.c.request_id.in_(judged)).order_by(requests_table.c.id)
    if since is not None:
        query = query.where(requests_table.c.time >= since)
    if api_key is not None:
        query = query.where(requests_table.c.api_key == api_key)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def served_totals(engine: SAEngine, since: float | None = None, api_key: str | None = None) -> list[dict[str, Any]]:
    """Answered requests per serving model: ``model, requests, cost, big_cost`` (SQL sums, no row scan here);
    only those made with key name ``api_key`` when given (None: every client's)."""
    t = requests_table.c
    query = (
        select(
            t.model, func.count().label("requests"), func.sum(t.cost).label("cost"), func.sum(t.big_cost).label("big")
        )
        .where(t.status < 400, t.model.is_not(None))
        .group_by(t.model)
    )
    if since is not None:
        query = query.where(t.time >= since)
    if api_key is not None:
        query = query.where(t.api_key == api_key)
    with engine.connect() as connection:
        return [
            {"model": m, "requests": int(n), "cost": float(c or 0.0), "big_cost": float(b or 0.0)}
            for m, n, c, b in connection.execute(query)
        ]


def upsert_features(engine: SAEngine, rows: Sequence[dict[str, Any]]) -> None:
    """Store feature rows (``request_id, time, embedding, vector``); a request already stored keeps its row."""
    if not rows:
        return
    ids = [row["request_id"] for row in rows]
    with engine.begin() as connection:
        have = set(
            connection.execute(
                select(features_table.c.request_id).where(features_table.c.request_id.in_(ids))
            ).scalars()
        )
        fresh = {row["request_id"]: row for row in rows if row["request_id"] not in have}
        if fresh:
            connection.execute(insert(features_table), list(fresh.values()))


def select_features(engine: SAEngine, request_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """``request_id -> (embedding id, vector bytes)`` for those of ``request_ids`` that have one."""
    out: dict[str, tuple[str, bytes]] = {}
    ids = list(dict.fromkeys(request_ids))
    c = features_table.c
    with engine.connect() as connection:
        for start in range(0, len(ids), 500):  # bounded IN lists
            query = select(c.request_id, c.embedding, c.vector).where(c.request_id.in_(ids[start : start + 500]))
            for request_id, embedding, vector in connection.execute(query):
                out[request_id] = (embedding, bytes(vector))
    return out
