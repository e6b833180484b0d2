"""The dashboard's numbers straight from the request log's database (SQLite and PostgreSQL): the counting
and percentiles done in SQL equal what Python computes from the same rows; windows and buckets."""

from __future__ import annotations

import math
import random
import time
from collections import Counter

import numpy as np
import pytest

from sizewise.core.decision import Decision, FilterReport
from sizewise.gateway.dashboard_data import QueryError, parse_window, summarize
from sizewise.gateway.log import LogEntry, RequestLog


def _entries(now: float, rng: random.Random) -> list[LogEntry]:
    """Rows of every kind, at random times in the last 10 minutes, plus some on bucket edges and one before."""
    entries = []
    for i in range(400):
        model = rng.choice(["small", "big", "mid"])
        status = rng.choice([200] * 8 + [502, 429])
        fired = [FilterReport("context", {"small": "too long"})] if i % 7 == 0 else []
        fired += [FilterReport("latency", note="no measurement yet")] if i % 11 == 0 else []
        decision = Decision(
            policy="sizewise",
            model=None if status == 429 else model,
            escalated=rng.random() < 0.2,
            fallback_from="mid" if rng.random() < 0.1 else None,
            filters=fired,
            cost=rng.uniform(0, 1e-3),
        )
        at = now - rng.uniform(0, 599) if i > 5 else math.floor(now / 60) * 60 - 60 * i  # edges: start of a bucket
        latency = rng.uniform(0.01, 2.0)
        entries.append(LogEntry(f"r{i}", "hi", status, latency, decision, big_cost=2e-3, time=at))
    entries.append(LogEntry("old", "hi", 200, 0.5, Decision(policy="x", model="big"), time=now - 3600))
    return entries


def test_the_database_counts_as_python_would_on_sqlite_and_postgresql(db_url: str) -> None:
    now = time.time()
    entries = _entries(now, random.Random(5))
    log = RequestLog(db_url)
    for entry in entries:
        log.write(entry)
    assert log.flush(30)
    window = parse_window("10m", "60", now=now)
    try:
        got = summarize(log.engine, window)
    finally:
        log.close()
    inside = [e for e in entries if e.time >= window.start and e.decision is not None]
    answered = [e for e in inside if e.status < 400 and e.decision and e.decision.model]
    models = sorted({e.decision.model for e in answered if e.decision and e.decision.model})
    assert sorted(got["requests"]) == models
    for m in models:
        mine = [e for e in answered if e.decision and e.decision.model == m]
        per_bucket = Counter(int((e.time - window.start) // 60) for e in mine)
        assert got["requests"][m] == [per_bucket[i] for i in range(window.buckets)], m
        latencies = [e.latency_s * 1000 for e in mine]
        assert got["models"][m]["p50_ms"] == pytest.approx(float(np.percentile(latencies, 50)))
        assert got["models"][m]["p95_ms"] == pytest.approx(float(np.percentile(latencies, 95)))
    assert got["totals"]["errors"] == len(inside) - len(answered)
    assert got["totals"]["escalations"] == sum(bool(e.decision and e.decision.escalated) for e in answered)
    assert got["totals"]["fallbacks"] == sum(bool(e.decision and e.decision.fallback_from) for e in inside)
    assert got["totals"]["cost"] == pytest.approx(sum(e.decision.cost for e in answered if e.decision))
    fired = Counter(f.filter for e in inside if e.decision for f in e.decision.filters if f.fired)
    assert got["filters"] == dict(fired) and fired["context"] > 0 and fired["latency"] > 0


def test_a_client_counts_only_its_own_rows_on_sqlite_and_postgresql(db_url: str) -> None:
    """``summarize(..., client)`` and the savings inputs count the rows logged under that key name only."""
    from sizewise.learn.outcomes import Outcome, OutcomeStore

    now = time.time()
    context = [FilterReport("context", {"small": "too long"})]
    plan = {  # key name -> (model, status, latency_s, filters) per row; None: a row from before keys were on
        "alice": [("small", 200, 0.1 * i, context) for i in range(1, 4)] + [("big", 200, 0.7, []), (None, 502, 1, [])],
        "bob": [("big", 200, 2.0 + i, []) for i in range(5)] + [("mid", 200, 9.0, [])] * 2,
        None: [("small", 200, 5.0, context)],
    }
    log = RequestLog(db_url)
    for key, rows in plan.items():
        for i, (model, status, latency, fired) in enumerate(rows):
            decision = Decision(policy="sizewise", model=model, filters=fired, cost=1e-4)
            log.write(LogEntry(f"{key}-{i}", "hi", status, latency, decision, api_key=key, big_cost=1e-3, time=now - 5))
    assert log.flush(30)
    window = parse_window("10m", "60", now=now)
    store = OutcomeStore(db_url)
    try:
        alice, everyone, nobody = (summarize(log.engine, window, client) for client in ("alice", None, "carol"))
        store.add(Outcome("bob-0", "big", 1.0, "llm-judge"))
        judged = {client: store.judged_requests(window.start, client) for client in ("alice", "bob", None)}
        served = {row["model"]: row["requests"] for row in store.served_totals(window.start, "alice")}
    finally:
        store.close()
        log.close()
    assert {m: v["requests"] for m, v in alice["models"].items()} == {"small": 3, "big": 1}
    assert alice["totals"]["errors"] == 1 and alice["filters"] == {"context": 3}
    assert alice["models"]["small"]["p50_ms"] == pytest.approx(200.0)  # alice's 100, 200, 300 ms; not 5 s
    assert alice["totals"]["cost"] == pytest.approx(4e-4)
    assert {m: v["requests"] for m, v in everyone["models"].items()} == {"small": 4, "big": 6, "mid": 2}
    assert everyone["filters"] == {"context": 4} and everyone["totals"]["errors"] == 1
    assert nobody["totals"]["answered"] == 0 and not nobody["models"] and not nobody["filters"]
    assert served == {"small": 3, "big": 1}
    assert [r["request_id"] for r in judged["bob"]] == ["bob-0"] and judged["alice"] == []
    assert [r["request_id"] for r in judged[None]] == ["bob-0"]


def test_windows_are_aligned_and_bounded() -> None:
    window = parse_window("1h", "60", now=1_800_000_030.0)
    assert window.start == 1_799_996_400.0 and window.buckets == 61
    assert parse_window("1800000000", None, now=1_800_003_600.0).bucket == 60  # a unix time, about 60 buckets
    with pytest.raises(QueryError, match="in the past"):
        parse_window("1800000100", None, now=1_800_000_000.0)


def test_the_endpoint_on_postgresql(postgres_url: str) -> None:
    """The whole path on PostgreSQL: a gateway logging there, the outcome store beside it, ``/dashboard/data``."""
    import httpx

    from fakes import FakeUpstream, GatewayServer, fake_model

    with FakeUpstream() as up:
        models = [fake_model("small", "ok-small", 1.0, up.base_url), fake_model("big", "ok-big", 8.0, up.base_url)]
        with GatewayServer({"models": models, "gateway": {"log_url": postgres_url}}) as gw:
            with httpx.Client(base_url=gw.url, timeout=30) as client:
                for model in ["small"] * 5 + ["big"] * 3:
                    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
                    assert client.post("/chat/completions", json=body).status_code == 200
            assert gw.app.state.gateway.log.flush(10)
            data = httpx.get(gw.url.removesuffix("/v1") + "/dashboard/data?since=5m&bucket=10").json()
    assert {m: v["requests"] for m, v in data["models"].items()} == {"small": 5, "big": 3}
    assert data["totals"]["answered"] == 8 and data["savings"]["big"] == "big"
    assert data["savings"]["cost_ratio"] == pytest.approx(data["totals"]["cost"] / data["totals"]["big_cost"], abs=1e-4)
