"""The outcome store: judgements of logged requests, kept in the request log's own database.

An :class:`Outcome` says how good one model's answer to one logged request was (``score`` in [0, 1]),
who said so (``source``: a client's ``feedback``, a ``reference`` answer, a ``grader``, an
``llm-judge``) and, for a pairwise verdict, against which model (``other_model``: ``score`` is then
the probability that ``model``'s answer is the better one, 0.5 a tie). :class:`OutcomeStore` writes
and reads them, keyed by request id, in the database of ``gateway.log_url`` (SQLite or PostgreSQL),
and keeps a request's prompt vector when its text is not logged (:meth:`OutcomeStore.keep_features`).
"""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from sizewise.core import outcomelog
from sizewise.core.requestlog import make_engine
from sizewise.errors import ConfigError, DataError

SOURCES = ("feedback", "reference", "grader", "llm-judge")


@dataclass
class Outcome:
    """One judgement of ``model``'s answer to request ``request_id``."""

    request_id: str
    model: str
    score: float
    source: str
    time: float = field(default_factory=time.time)
    other_model: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def check(self) -> Outcome:
        """``self`` if every field is valid; a :class:`DataError` naming the first bad one otherwise."""
        for name, longest in (("request_id", 64), ("model", 200), ("source", 32)):  # the columns' lengths
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > longest or "\x00" in value:
                raise DataError(f"outcome: {name} must be a string of 1 to {longest} characters, got {value!r:.80}")
        if self.source not in SOURCES:
            raise DataError(f"outcome: source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if isinstance(self.score, bool) or not isinstance(self.score, int | float) or not 0 <= self.score <= 1:
            raise DataError(f"outcome: score must be a number in [0, 1], got {self.score!r}")
        if not isinstance(self.time, int | float) or not math.isfinite(self.time):
            raise DataError(f"outcome: time must be a finite unix time, got {self.time!r}")
        other = self.other_model
        if other is not None and (not isinstance(other, str) or not 0 < len(other) <= 200 or other == self.model):
            raise DataError(f"outcome: other_model must be another model's name, got {other!r:.80}")
        try:
            json.dumps(self.detail, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise DataError(f"outcome: detail must be JSON-serialisable: {error}") from None
        return self


def _row(outcome: Outcome) -> dict[str, Any]:
    return {
        "time": float(outcome.time),
        "request_id": outcome.request_id,
        "model": outcome.model,
        "score": float(outcome.score),
        "source": outcome.source,
        "other_model": outcome.other_model,
        "detail": json.dumps(outcome.detail) if outcome.detail else None,
    }


def _outcome(row: dict[str, Any]) -> Outcome:
    return Outcome(
        request_id=row["request_id"],
        model=row["model"],
        score=float(row["score"]),
        source=row["source"],
        time=float(row["time"]),
        other_model=row["other_model"],
        detail=json.loads(row["detail"]) if row["detail"] else {},
    )


def pack_vector(vector: list[float]) -> bytes:
    """float32 little-endian bytes of ``vector`` (a DataError for a non-finite or empty one)."""
    values = [float(v) for v in vector]
    if not values or not all(math.isfinite(v) for v in values):
        raise DataError("a feature vector must be a non-empty list of finite numbers")
    return struct.pack(f"<{len(values)}f", *values)


def unpack_vector(raw: bytes) -> list[float]:
    """The inverse of :func:`pack_vector`."""
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class OutcomeStore:
    """Outcomes and kept feature vectors in the database at SQLAlchemy ``url`` (the request log's).

    Every method is synchronous and thread-safe (one pooled engine; SQLite in WAL mode with a busy
    timeout); the gateway calls them off its event loop.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        try:
            outcomelog.create_tables(self.engine)
        except ConfigError:
            self.engine.dispose()
            raise

    def add(self, outcome: Outcome) -> None:
        """Store one outcome (checked first: a :class:`DataError` for a bad field)."""
        self.add_many([outcome])

    def add_many(self, outcomes: list[Outcome]) -> None:
        """Store several outcomes in one transaction."""
        outcomelog.insert_outcomes(self.engine, [_row(o.check()) for o in outcomes])

    def outcomes(self, since: float | None = None) -> list[Outcome]:
        """Every stored outcome (from unix time ``since`` on), oldest first."""
        return [_outcome(row) for row in outcomelog.select_outcomes(self.engine, since)]

    def request(self, request_id: str) -> dict[str, Any] | None:
        """The request log's row for ``request_id`` (``model, api_key, status, time``), or None."""
        return outcomelog.find_request(self.engine, request_id)

    def keep_features(self, request_id: str, vector: list[float], embedding: str = "static") -> None:
        """Keep ``request_id``'s prompt vector (what learning keeps without the text)."""
        self.keep_features_many([(request_id, vector)], embedding)

    def keep_features_many(self, items: list[tuple[str, list[float]]], embedding: str) -> None:
        """Keep several requests' vectors from embedder ``embedding`` (its installed id); first one wins."""
        now = time.time()
        rows = [{"request_id": rid, "time": now, "embedding": embedding, "vector": pack_vector(v)} for rid, v in items]
        outcomelog.upsert_features(self.engine, rows)

    def features(self, request_ids: list[str]) -> dict[str, tuple[str, list[float]]]:
        """``request_id -> (embedding id, vector)`` for the requests that have a kept vector."""
        found = outcomelog.select_features(self.engine, request_ids)
        return {rid: (emb, unpack_vector(raw)) for rid, (emb, raw) in found.items()}

    def judged_requests(self, since: float | None = None, api_key: str | None = None) -> list[dict[str, Any]]:
        """The request log's rows of the requests that have an outcome (of key name ``api_key`` when given)."""
        return outcomelog.judged_requests(self.engine, since, api_key)

    def served_totals(self, since: float | None = None, api_key: str | None = None) -> list[dict[str, Any]]:
        """Answered requests, cost and always-big cost per serving model (of key name ``api_key`` when given)."""
        return outcomelog.served_totals(self.engine, since, api_key)

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()
