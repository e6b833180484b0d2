"""The request log's table, and the read the request path makes of it (measured p95 latency per model).

Below both the gateway, which writes one row per request (:mod:`sizewise.gateway.log`), and the latency
filter, which reads the recent rows (:func:`measured_p95`), so neither imports the other. SQLAlchemy Core
only; SQLite in WAL mode by default, any SQLAlchemy URL (PostgreSQL) when configured.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text, select
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import SQLAlchemyError

from sizewise import storage

#: Rows per model that :func:`measured_p95` looks at, and the fewest it needs to trust a p95.
WINDOW = 500
MIN_SAMPLES = 20

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


def make_engine(url: str) -> SAEngine:
    """The request log's SQLAlchemy engine (SQLite in WAL mode by default)."""
    return storage.make_engine(url, what="request log")


def measured_p95(url: str, window: int = WINDOW, min_samples: int = MIN_SAMPLES) -> dict[str, float]:
    """p95 latency (ms) per model from the request log's last ``window`` successful rows per model."""
    import numpy as np  # only when the latency filter refreshes its measurements

    try:
        engine = make_engine(url)
    except Exception:  # no log, no measurements
        return {}
    out: dict[str, float] = {}
    try:
        storage.create_tables(metadata, engine)
        t = requests_table.c
        query = select(t.model, t.latency_ms).where(t.status == 200).order_by(t.id.desc()).limit(window * 50)
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError:
        return {}
    finally:
        engine.dispose()
    by_model: dict[str, list[float]] = {}
    for model, latency in rows:
        if model and latency is not None and len(by_model.setdefault(model, [])) < window:
            by_model[model].append(float(latency))
    for model, values in by_model.items():
        if len(values) >= min_samples:
            out[model] = float(np.percentile(values, 95))
    return out
