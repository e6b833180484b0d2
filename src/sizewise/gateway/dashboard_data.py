"""What ``GET /dashboard/data`` returns: the request log and the learning loop, summed for the charts.

Everything is computed from the request log's rows in a time window (the ``requests`` table, SQLite or
PostgreSQL), the savings estimate of the learning loop (:func:`sizewise.learn.savings.savings_of` over the
same window) and the router directory's versions (:class:`sizewise.learn.versions.RouterVersions`). The
functions here are synchronous and read the database: the HTTP handler runs them off the event loop.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine as SAEngine

from sizewise.core.requestlog import requests_table
from sizewise.errors import SizewiseError

#: The newest rows read per refresh; an older part of a longer window is left out and the answer says so.
MAX_ROWS = 200_000
#: The most buckets a time axis may have (a finer ``bucket`` is refused, not silently coarsened).
MAX_BUCKETS = 2_000
#: Buckets per window when the client names none.
DEFAULT_BUCKETS = 60
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


def read_rows(engine: SAEngine, start: float, limit: int = MAX_ROWS) -> tuple[list[dict[str, Any]], bool]:
    """The window's rows (the newest ``limit``), oldest first, and whether older ones were left out."""
    t = requests_table.c
    columns = (t.time, t.model, t.status, t.escalated, t.fallback_from, t.filters, t.latency_ms, t.cost, t.big_cost)
    query = select(*columns).where(t.time >= start).order_by(t.id.desc()).limit(limit + 1)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    truncated = len(rows) > limit
    return rows[:limit][::-1], truncated


def _percentile(values: list[float], q: float) -> float | None:
    """numpy's default (linear) percentile, without numpy on this path."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _fired(filters: str | None) -> list[str]:
    """The filters named in a row's ``filters`` column (JSON object: filter -> removed models or note)."""
    if not filters:
        return []
    try:
        value = json.loads(filters)
    except ValueError:  # a row cut to its column's length: its filters are unknown, not a failure of the page
        return []
    return [str(name) for name in value] if isinstance(value, dict) else []


def _answered(row: dict[str, Any]) -> bool:
    return row["status"] is not None and row["status"] < 400 and bool(row["model"])


def summarize(rows: Sequence[dict[str, Any]], window: Window) -> dict[str, Any]:
    """Totals, per-bucket series, per-model latency and filter counts of ``rows`` (see the module doc)."""
    n = window.buckets
    models = sorted({str(r["model"]) for r in rows if _answered(r)})
    per_model: dict[str, list[int]] = {m: [0] * n for m in models}
    series = {name: [0] * n for name in ("escalations", "fallbacks", "errors")}
    cost, big_cost = [0.0] * n, [0.0] * n
    latency: dict[str, list[float]] = {m: [] for m in models}
    filters: dict[str, int] = {}
    for row in rows:
        i = window.index(float(row["time"]))
        for name in _fired(row["filters"]):
            filters[name] = filters.get(name, 0) + 1
        if row["fallback_from"]:
            series["fallbacks"][i] += 1
        if not _answered(row):
            series["errors"][i] += 1
            continue
        model = str(row["model"])
        per_model[model][i] += 1
        series["escalations"][i] += bool(row["escalated"])
        cost[i] += float(row["cost"] or 0.0)
        big_cost[i] += float(row["big_cost"] or 0.0)
        if row["latency_ms"] is not None:
            latency[model].append(float(row["latency_ms"]))
    totals_per_bucket = [sum(per_model[m][i] for m in models) for i in range(n)]
    share = {m: [c / t if t else None for c, t in zip(per_model[m], totals_per_bucket, strict=True)] for m in models}
    answered = sum(totals_per_bucket)
    return {
        "t": [window.start + i * window.bucket for i in range(n)],
        "totals": {
            "rows": len(rows),
            "answered": answered,
            **{name: sum(values) for name, values in series.items()},
            "cost": sum(cost),
            "big_cost": sum(big_cost),
        },
        "models": {
            m: {
                "requests": sum(per_model[m]),
                "p50_ms": _percentile(latency[m], 50),
                "p95_ms": _percentile(latency[m], 95),
            }
            for m in models
        },
        "requests": per_model,
        "share": share,
        **series,
        "cost": cost,
        "big_cost": big_cost,
        "filters": dict(sorted(filters.items(), key=lambda item: (-item[1], item[0]))),
    }


def savings_in(outcomes: Any, since: float) -> dict[str, Any] | None:
    """The learning loop's estimate over the window: cost vs always-big and quality retained with its 95%
    interval (None without an outcome store, i.e. with the request log off)."""
    if outcomes is None:
        return None
    from sizewise.learn.savings import savings_of  # numpy and the estimator: only when the page asks

    savings = savings_of(outcomes.store, big=outcomes.big, since=since)
    return {**savings.compact(), "big": savings.big, "requests": savings.requests, "line": savings.line()}


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


def dashboard_data(state: Any, since: str | None, bucket: str | None) -> dict[str, Any]:
    """The whole answer of ``GET /dashboard/data`` for a gateway ``state`` (reads the database)."""
    window = parse_window(since, bucket)
    settings = state.settings
    env = state.engine.env
    out: dict[str, Any] = {
        "since": window.start,
        "until": window.end,
        "bucket_s": window.bucket,
        "log": state.log is not None,
        "router": router_info(env.router_dir, settings.default_policy, settings.router),
    }
    if state.log is None:  # nothing to chart but the router: say why
        out["error"] = "the request log is off (gateway.log_url is 'none'): nothing to chart"
        return out
    rows, out["truncated"] = read_rows(state.log.engine, window.start)
    out.update(summarize(rows, window))
    out["savings"] = savings_in(state.outcomes, window.start)
    return out
