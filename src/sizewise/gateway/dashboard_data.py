"""What ``GET /dashboard/data`` returns: the request log and the learning loop, summed for the charts.

Everything is computed from the request log's rows in a time window (the ``requests`` table, SQLite or
PostgreSQL; the database counts and sorts, so a refresh reads a few small results), the savings estimate of
the learning loop (:func:`sizewise.learn.savings.savings_of` over the same window) and the router directory's
versions (:class:`sizewise.learn.versions.RouterVersions`). The functions here are synchronous and read the
database: the HTTP handler runs them off the event loop. A ``client`` (a key name) limits every number,
the savings estimate's included, to the rows logged under that name; None counts every client's rows.

Counting rules (the dashboard test checks them against traffic it sent): a row is *answered* when its
status is below 400 and it names a model; *requests per model* and *share* count answered rows by the
model that served them; an *escalation* is an answered row whose cascade climbed past its first model;
a *fallback* is a row whose first choice failed and another model was tried (answered or not); a filter
*fired* on a row when it removed a model or left a note, and each row counts once per filter.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, or_, select
from sqlalchemy.engine import Engine as SAEngine

from sizewise.core.requestlog import requests_table
from sizewise.errors import SizewiseError

#: The most buckets a time axis may have (a finer ``bucket`` is refused, not silently coarsened).
MAX_BUCKETS = 2_000
#: Buckets per window when the client names none.
DEFAULT_BUCKETS = 60
#: Seconds a window's savings estimate is reused (the ``/metrics`` gauges are refreshed every 30 s too).
SAVINGS_S = 30.0
#: Router history events sent (the newest).
MAX_EVENTS = 200
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Unix times below this are taken as durations back from now (a billion seconds is 2001-09-09).
_EPOCH_FLOOR = 1e9


class QueryError(SizewiseError):
    """A ``since`` or ``bucket`` the dashboard cannot use (the handler answers 400 with this message)."""


@dataclass(frozen=True)
class Window:
    """The time axis of one answer: ``[start, end)`` cut into buckets of ``bucket`` seconds."""

    start: float
    end: float
    bucket: float

    @property
    def buckets(self) -> int:
        """The number of buckets (at least one)."""
        return max(1, math.ceil((self.end - self.start) / self.bucket))

    def index(self, t: float) -> int:
        """The bucket of unix time ``t`` (clamped into the axis)."""
        return min(self.buckets - 1, max(0, int((t - self.start) // self.bucket)))


def _seconds(text: str, name: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise QueryError(f"{name} must be a number of seconds or a duration like 90s, 15m, 6h, 2d; got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def parse_window(since: str | None, bucket: str | None, now: float | None = None) -> Window:
    """The window of ``since`` (a unix time, or a duration back from now; default ``1h``) and ``bucket``
    (seconds or a duration; default: the window in about 60 buckets, at least 1 s)."""
    now = time.time() if now is None else now
    back = _seconds(since or "1h", "since")
    start = back if back >= _EPOCH_FLOOR else now - back
    if start >= now:
        raise QueryError(f"since must be in the past; got {since!r}")
    span = now - start
    step = _seconds(bucket, "bucket") if bucket else max(1.0, float(math.ceil(span / DEFAULT_BUCKETS)))
    if step <= 0:
        raise QueryError(f"bucket must be positive; got {bucket!r}")
    if span / step > MAX_BUCKETS:
        raise QueryError(f"bucket {bucket!r} cuts the window into more than {MAX_BUCKETS} buckets; use a larger one")
    start = math.floor(start / step) * step  # aligned, so the same bucket covers the same seconds on every refresh
    return Window(start=start, end=now, bucket=step)


def _rows(window: Window, client: str | None) -> Any:
    """The rows an answer counts: those in the window, and of key name ``client`` unless it is None (every
    client's). A client's dashboard counts its own rows only, whatever it asks (docs/gateway.md#dashboard)."""
    inside = requests_table.c.time >= window.start
    return inside if client is None else and_(inside, requests_table.c.api_key == client)


def _answered() -> Any:
    """A row is answered: status below 400 and a serving model (as a 1/0 column every database groups by)."""
    t = requests_table.c
    return case((and_(t.status < 400, t.model.is_not(None), t.model != ""), 1), else_=0)


def _bucket(engine: SAEngine, window: Window) -> Any:
    """The bucket number of a row in SQL: ``floor((time - start) / bucket)`` (SQLite may lack ``floor``;
    its integer cast truncates, which is the floor here since ``time >= start``)."""
    offset = (requests_table.c.time - window.start) / window.bucket
    return cast(offset, Integer) if engine.dialect.name == "sqlite" else func.floor(offset)


def _groups(connection: Any, engine: SAEngine, window: Window, client: str | None) -> list[Any]:
    """Per (bucket, model, answered): rows, escalations, fallbacks, cost, always-big cost, latencies known."""
    t = requests_table.c
    bucket, answered = _bucket(engine, window).label("bucket"), _answered().label("answered")
    query = (
        select(
            bucket,
            t.model,
            answered,
            func.count(),
            func.sum(case((t.escalated.is_(True), 1), else_=0)),
            func.count(t.fallback_from),
            func.sum(t.cost),
            func.sum(t.big_cost),
            func.count(t.latency_ms),
        )
        .where(_rows(window, client))
        .group_by(bucket, t.model, answered)
    )
    return list(connection.execute(query))


def _percentiles(
    connection: Any, window: Window, counts: dict[str, int], client: str | None
) -> dict[str, dict[str, float | None]]:
    """p50 and p95 (numpy's default, linear) of each model's answered latencies; ``counts`` are how many each
    model has. One query: the database ranks the rows (a window function) and returns the few ranks needed."""
    ranks = {m: {q: (n - 1) * q / 100 for q in (50, 95)} for m, n in counts.items() if n}
    out: dict[str, dict[str, float | None]] = {m: {"p50_ms": None, "p95_ms": None} for m in counts}
    if not ranks:
        return out
    t = requests_table.c
    order = func.row_number().over(partition_by=t.model, order_by=t.latency_ms) - 1
    ranked = (
        select(t.model, t.latency_ms, order.label("rank"))
        .where(_rows(window, client), _answered() == 1, t.latency_ms.is_not(None), t.model.in_(list(ranks)))
        .subquery()
    )
    wanted = [
        and_(ranked.c.model == m, ranked.c.rank.in_(sorted({math.floor(r) + k for r in qs.values() for k in (0, 1)})))
        for m, qs in ranks.items()
    ]
    values: dict[tuple[str, int], float] = {
        (m, int(rank)): float(v) for m, v, rank in connection.execute(select(ranked).where(or_(*wanted)))
    }
    for m, qs in ranks.items():
        for q, rank in qs.items():
            low = math.floor(rank)
            if (m, low) in values:  # absent only if rows vanished between the two reads
                high = values.get((m, low + 1), values[(m, low)])
                out[m][f"p{q}_ms"] = values[(m, low)] + (high - values[(m, low)]) * (rank - low)
    return out


def _fired(connection: Any, window: Window, client: str | None) -> dict[str, int]:
    """Requests per filter that fired (the ``filters`` column: JSON object of filter -> removed models or note)."""
    t = requests_table.c
    query = select(t.filters, func.count()).where(_rows(window, client), t.filters.is_not(None)).group_by(t.filters)
    counts: dict[str, int] = {}
    for text, n in connection.execute(query):
        try:
            fired = json.loads(text)
        except ValueError:  # a row cut to its column's length: its filters are unknown, not a failure of the page
            continue
        for name in fired if isinstance(fired, dict) else ():
            counts[str(name)] = counts.get(str(name), 0) + int(n)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def summarize(engine: SAEngine, window: Window, client: str | None = None) -> dict[str, Any]:
    """Totals, per-bucket series, per-model latency and filter counts of the window (see the module doc), of
    key name ``client``'s rows only unless it is None; the database does the counting and sorting, so a
    refresh costs a few small reads, not a row scan here."""
    n = window.buckets
    series = {name: [0] * n for name in ("escalations", "fallbacks", "errors")}
    per_model: dict[str, list[int]] = {}
    cost, big_cost = [0.0] * n, [0.0] * n
    timed: dict[str, int] = {}
    with engine.connect() as connection:
        for bucket, model, answered, rows, escalated, fallbacks, spent, big, latencies in _groups(
            connection, engine, window, client
        ):
            i = min(n - 1, max(0, int(bucket)))  # a row stamped after "now" (clock skew) joins the last bucket
            series["fallbacks"][i] += int(fallbacks)
            if not answered:
                series["errors"][i] += int(rows)
                continue
            per_model.setdefault(str(model), [0] * n)[i] += int(rows)
            series["escalations"][i] += int(escalated or 0)
            cost[i] += float(spent or 0.0)
            big_cost[i] += float(big or 0.0)
            timed[str(model)] = timed.get(str(model), 0) + int(latencies)
        models = sorted(per_model)
        latency = _percentiles(connection, window, {m: timed[m] for m in models}, client)
        filters = _fired(connection, window, client)
    per_model = {m: per_model[m] for m in models}
    totals = [sum(per_model[m][i] for m in models) for i in range(n)]
    share = {m: [c / t if t else None for c, t in zip(per_model[m], totals, strict=True)] for m in models}
    return {
        "t": [window.start + i * window.bucket for i in range(n)],
        "totals": {
            "answered": sum(totals),
            **{name: sum(values) for name, values in series.items()},
            "cost": sum(cost),
            "big_cost": sum(big_cost),
        },
        "models": {m: {"requests": sum(per_model[m]), **latency[m]} for m in models},
        "requests": per_model,
        "share": share,
        **series,
        "cost": cost,
        "big_cost": big_cost,
        "filters": filters,
    }


def savings_in(outcomes: Any, since: float, client: str | None = None) -> dict[str, Any] | None:
    """The learning loop's estimate over the window (of key name ``client``'s requests only unless it is
    None): cost vs always-big and quality retained with its 95% interval (None without an outcome store,
    i.e. with the request log off)."""
    if outcomes is None:
        return None
    from sizewise.learn.savings import savings_of  # numpy and the estimator: only when the page asks

    savings = savings_of(outcomes.store, big=outcomes.big, since=since, api_key=client)
    compact = savings.compact()
    return {**compact, "big": savings.big, "requests": savings.requests, "line": savings.line(), "as_of": time.time()}


class SavingsCache:
    """The last savings estimate per client and window (``since`` as the client wrote it), each reused for
    :data:`SAVINGS_S` seconds: its bootstrap is the costliest part of a refresh, and it moves slowly."""

    def __init__(self) -> None:
        self.kept: dict[tuple[str | None, str | None], tuple[float, dict[str, Any] | None]] = {}

    def get(self, outcomes: Any, since: str | None, start: float, client: str | None = None) -> dict[str, Any] | None:
        """The estimate over ``[start, now)`` for the window named ``since`` and key name ``client`` (None:
        every client), computed at most every ``SAVINGS_S``."""
        now = time.monotonic()
        hit = self.kept.get((client, since))
        if hit is not None and now - hit[0] < SAVINGS_S:
            return hit[1]
        value = savings_in(outcomes, start, client)
        self.kept = {key: kept for key, kept in self.kept.items() if now - kept[0] < SAVINGS_S}
        self.kept[(client, since)] = (now, value)
        return value


def router_info(router_dir: Any, policy: str, router: str | None) -> dict[str, Any]:
    """The default policy, the configured router, and the router directory's current version and history."""
    info: dict[str, Any] = {"policy": policy, "router": router, "dir": None, "current": None, "history": []}
    if router_dir is None:
        return info
    from sizewise.learn.versions import RouterVersions

    versions = RouterVersions(router_dir)
    info["dir"] = str(router_dir)
    try:
        history = versions.history()
    except SizewiseError as error:  # a damaged history: the page says so, the other charts still draw
        info["error"] = str(error)
        return info
    info["history"] = history[-MAX_EVENTS:]
    info["current"] = versions.current()
    return info


def dashboard_data(
    state: Any, since: str | None, bucket: str | None, savings: SavingsCache | None = None, *, client: str | None
) -> dict[str, Any]:
    """The whole answer of ``GET /dashboard/data`` for a gateway ``state`` (reads the database): the rows of
    key name ``client`` only, or every client's when it is None (keys off, or an operator's key; no default,
    so a caller must say which); ``savings`` reuses recent estimates (none: computed now)."""
    started = time.perf_counter()
    window = parse_window(since, bucket)
    settings = state.settings
    env = state.engine.env
    out: dict[str, Any] = {
        "since": window.start,
        "until": window.end,
        "bucket_s": window.bucket,
        "log": state.log is not None,
        "client": client,  # whose requests are counted (None: every client's)
        "router": router_info(env.router_dir, settings.default_policy, settings.router),
    }
    if state.log is None:  # nothing to chart but the router: say why
        out["error"] = "the request log is off (gateway.log_url is 'none'): nothing to chart"
        return out
    out.update(summarize(state.log.engine, window, client))
    cache = savings if savings is not None else SavingsCache()
    out["savings"] = cache.get(state.outcomes, since, window.start, client)
    out["took_ms"] = (time.perf_counter() - started) * 1000  # what this answer cost (the duty cycle spaces them)
    return out
