"""``GET /metrics`` of every replica from any replica, when replicas share state (``gateway.state_url``).

Behind a load balancer or Ray Serve's proxy a scrape lands on a random replica, so one replica's registry
is a random share of the traffic. Here each replica publishes its registry's text to table
``metrics_snapshots`` (one row per replica: upserted every ``gateway.state_poll_s`` by a daemon thread, and
when it answers a scrape if its counters moved since), and ``/metrics`` answers the union of
the fresh rows, each series with a ``replica`` label, so ``sum(rate(...))`` counts each replica once.

The answer is built from the rows only, the answering replica's own included (published just before the
read), never from its live registry: a row only grows, so the union never goes down from one scrape to
the next, whichever replica answers. A live registry mixed with the other replicas' older rows would
make their counters step back when the next scrape lands elsewhere, which Prometheus reads as a reset.

A row not refreshed for :data:`STALE_POLLS` polls (a replica that died) leaves the answer and is deleted;
a replica that stops cleanly deletes its own. Parsing and writing the text format are prometheus_client's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Column, Float, MetaData, String, Table, Text, delete, select
from sqlalchemy.exc import SQLAlchemyError

from sizewise.catalog.schema import GatewaySettings
from sizewise.errors import ConfigError
from sizewise.gateway.errors import GatewayError
from sizewise.gateway.metrics import Metrics
from sizewise.serve.poller import Poller
from sizewise.serve.session_sql import state_url
from sizewise.storage import create_tables, make_engine

logger = logging.getLogger(__name__)

#: The label each series gets: which replica counted it (one value per gateway process, so bounded).
LABEL = "replica"
#: A row older than this many polls is a dead replica's.
STALE_POLLS = 3

metadata = MetaData()
snapshots_table = Table(
    "metrics_snapshots",
    metadata,
    Column("replica", String(120), primary_key=True),
    Column("published", Float, nullable=False),  # wall time: replicas on several machines compare it
    Column("text", Text, nullable=False),  # the Prometheus text format of the replica's registry
)


def replica_id() -> str:
    """This gateway's id: host, process and a random part (two apps in one process differ)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{os.urandom(3).hex()}"


class _Families:
    """A collector that yields given metric families, for ``generate_latest``."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


#: What the text format appends to a family's name in its TYPE line (prometheus_client's exposition).
_SUFFIX = {"counter": "_total", "info": "_info"}


def union(snapshots: Iterable[tuple[str, str]]) -> bytes:
    """The text format of every ``(replica, text)`` snapshot's series, each labelled ``replica``.

    A family is the first snapshot's (its type and help); a snapshot that is not valid text, or gives a
    family another type (a replica of another version), loses that part, never the whole answer."""
    families: dict[str, Metric] = {}
    for replica, text in snapshots:
        try:
            parsed = list(text_string_to_metric_families(text))
        except (ValueError, TypeError, IndexError) as error:
            logger.warning("metrics of replica %s: not Prometheus text (%s); left out", replica, error)
            continue
        for family in parsed:
            # Keyed by the name its TYPE line shows: counter ``x`` and gauge ``x_total`` must not both be written.
            shown = family.name + _SUFFIX.get(family.type, "")
            merged = families.setdefault(shown, Metric(family.name, family.documentation, family.type, family.unit))
            if merged.type != family.type:
                logger.warning(
                    "metric %s: %s on replica %s, %s before; left out", family.name, family.type, replica, merged.type
                )
                continue
            merged.samples += [sample._replace(labels={**sample.labels, LABEL: replica}) for sample in family.samples]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


def _upsert(dialect: str) -> Any:
    """The dialect's ``insert`` that has ``on_conflict_do_update``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


class SharedMetrics:
    """Publishes one replica's ``metrics`` to the shared database and reads every replica's back."""

    def __init__(
        self,
        url: str,
        metrics: Metrics,
        poll_s: float,
        *,
        replica: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.poll_s = poll_s
        self.replica = replica or replica_id()
        self.clock = clock
        self.stale_s = STALE_POLLS * poll_s
        self.engine = make_engine(url, what="shared metrics")
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            raise ConfigError(f"gateway.state_url {self.engine.url!r}: shared metrics need SQLite or PostgreSQL")
        self._insert = _upsert(self.engine.dialect.name)
        try:
            create_tables(metadata, self.engine)
        except SQLAlchemyError as error:
            raise ConfigError(
                f"shared metrics {self.engine.url!r}: cannot create table ({type(error).__name__})"
            ) from None
        # One publisher at a time: a render taken later is never overwritten by one taken earlier.
        self._lock = threading.Lock()
        self._published = -float("inf")
        self._text = ""  # what this replica published last
        self._poller = Poller("sizewise-metrics-publish", self._poll_once, poll_s)

    def publish(self, *, changed_only: bool = False) -> None:
        """Upsert this replica's row and delete stale rows. ``changed_only`` (a scrape): skip the write
        when nothing moved since the last one, less than a poll ago (scrapes alone cost no writes)."""
        t = snapshots_table.c
        with self._lock:
            now, text = self.clock(), self.metrics.render().decode()
            if self._poller.stopping:  # stopped: its row is deleted, a late scrape must not bring it back
                return
            if changed_only and text == self._text and now - self._published < self.poll_s:
                return
            statement = self._insert(snapshots_table).values(replica=self.replica, published=now, text=text)
            statement = statement.on_conflict_do_update(
                index_elements=[t.replica], set_={"published": now, "text": text}
            )
            with self.engine.begin() as connection:
                connection.execute(statement)
                connection.execute(delete(snapshots_table).where(t.published < now - self.stale_s))
            self._published, self._text = now, text

    def snapshots(self) -> Sequence[tuple[str, str]]:
        """``(replica, text)`` of every fresh row, this replica's first, republished just before (blocking)."""
        t = snapshots_table.c
        self.publish(changed_only=True)
        with self.engine.connect() as connection:
            query = select(t.replica, t.text).where(t.published >= self.clock() - self.stale_s).order_by(t.replica)
            rows = [(row.replica, row.text) for row in connection.execute(query)]
        if all(replica != self.replica for replica, _ in rows):  # stopped (row deleted): its live registry,
            rows.append((self.replica, self.metrics.render().decode()))  # at or above all it ever published
        # Its own first: where replicas of two versions disagree on a family's type, this one's wins.
        return sorted(rows, key=lambda row: row[0] != self.replica)

    def render_blocking(self) -> bytes:
        """Every replica's series; this replica's alone (live) when the database fails."""
        try:
            rows = self.snapshots()
        except SQLAlchemyError as error:
            # Its own live counters are at or above any row it published, so nothing steps back.
            logger.warning("shared metrics: database failed (%s); answering this replica's only", type(error).__name__)
            rows = [(self.replica, self.metrics.render().decode())]
        return union(rows)

    async def render(self) -> bytes:
        """:meth:`render_blocking` off the event loop."""
        return await asyncio.to_thread(self.render_blocking)

    def start(self) -> None:
        """Publish now, then every ``poll_s`` in a daemon thread."""
        self._poll_once()
        self._poller.start()

    def _poll_once(self) -> None:
        try:
            self.publish()
        except SQLAlchemyError as error:  # the next poll tries again; the row goes stale meanwhile
            logger.warning("shared metrics: publish failed (%s)", type(error).__name__)

    def stop(self) -> None:
        """End the thread, delete this replica's row (it has stopped counting), release the database."""
        self._poller.stop()
        try:
            with self._lock, self.engine.begin() as connection:
                connection.execute(delete(snapshots_table).where(snapshots_table.c.replica == self.replica))
        except SQLAlchemyError as error:  # it goes stale instead
            logger.warning("shared metrics: could not delete this replica's row (%s)", type(error).__name__)
        self.engine.dispose()


#: ``GET /metrics?scope=``: ``all`` (the default) every replica's series; ``local`` this process's alone, with
#: no ``replica`` label, for a Prometheus that scrapes each replica itself (else it would count each N times).
SCOPES = ("all", "local")


async def exposition(metrics: Metrics, shared: SharedMetrics | None, scope: str | None) -> bytes:
    """``/metrics``' body for ``scope`` (a bad one is a 400 :class:`GatewayError`)."""
    if scope is not None and scope not in SCOPES:
        raise GatewayError(
            400, f"scope must be one of {', '.join(SCOPES)}, not {scope[:40]!r}", "invalid_scope", "scope"
        )
    if shared is None or scope == "local":
        return metrics.render()
    return await shared.render()


def share_metrics(settings: GatewaySettings, metrics: Metrics) -> SharedMetrics | None:
    """Shared metrics when the gateway shares state (``state_url``), else None (``/metrics`` is this
    process's). Not started: the app's lifespan starts and stops it."""
    url = state_url(settings)
    return None if url is None else SharedMetrics(url, metrics, settings.state_poll_s)
