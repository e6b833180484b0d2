"""The audit log loses nothing (issue #16, item 4).

No field's content costs a row, on SQLite or on the PostgreSQL that ``.ci/run`` starts; the writer
survives absurd values and an unavailable database, says so (a log line, a metric) and keeps the rows;
through a real gateway on 127.0.0.1, unexpected 500s and client disconnects are logged as such and
unauthenticated 401s are counted, not stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from billing_upstream import BillingUpstream, byte_tokens
from fakes import GatewayServer
from sizewise.gateway.log import LogEntry, RequestLog, read_rows
from sizewise.policy.types import Decision, RoutingPolicy, register_policy


def _entry(request_id: str, **kwargs: Any) -> LogEntry:
    decision = kwargs.pop("decision", None) or Decision(policy="sizewise", model="m", cost=0.001)
    return LogEntry(request_id, kwargs.pop("text", "hello"), kwargs.pop("status", 200), 0.01, decision, **kwargs)


HOSTILE = {
    "user-300": {"user": "u" * 300},
    "user-nul": {"user": "a\x00b"},
    "policy-250": {"decision": Decision(policy="p" * 250, model="m\x00", errors=["x\x00y"])},
    "surrogates": {"text": "lone \ud800 surrogate", "user": "\udcff"},
    "usage-2**64": {"prompt_tokens": 2**64, "completion_tokens": -(2**70), "big_cost": float("inf")},
    "usage-inf": {"prompt_tokens": float("inf"), "completion_tokens": float("nan"), "big_cost": 10**400},
}


def test_no_field_content_costs_a_row(db_url: str) -> None:
    """Old: on PostgreSQL any one of these failed its whole batch silently (0 of 26 rows); on SQLite
    a usage of 2**63 or more killed the writer thread (nothing logged until a restart)."""
    log = RequestLog(db_url, batch_delay_s=0.05)
    for i in range(10):
        log.write(_entry(f"before-{i}", user="alice"))
    for name, fields in HOSTILE.items():
        log.write(_entry(name, **fields))
    for i in range(10):
        log.write(_entry(f"after-{i}", user="bob"))
    assert log.flush(10), "the writer stopped"
    log.close()
    rows = {row["request_id"]: row for row in read_rows(db_url)}
    assert len(rows) == 20 + len(HOSTILE) and set(HOSTILE) <= set(rows)
    assert rows["user-300"]["user"] == "u" * 199 + "…"
    assert rows["user-nul"]["user"] == "ab"
    assert rows["policy-250"]["policy"] == "p" * 199 + "…" and rows["policy-250"]["model"] == "m"
    assert (
        rows["surrogates"]["prompt_hash"]
        == hashlib.sha256("lone \ud800 surrogate".encode(errors="surrogatepass")).hexdigest()
    )
    usage = [
        (rows[k]["prompt_tokens"], rows[k]["completion_tokens"], rows[k]["big_cost"]) for k in HOSTILE if "usage" in k
    ]
    assert usage == [(2**31 - 1, -(2**31), None), (None, None, None)]  # clamped to PostgreSQL's integer range


def test_a_writer_that_cannot_write_says_so_and_keeps_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Old: a failed batch was counted in an attribute nobody read and its rows were gone."""
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    log = RequestLog(url, batch_delay_s=0.01, retry_s=0.05)
    real_insert = log._insert
    outage = {"on": True}

    def insert(rows: list[dict[str, Any]]) -> None:
        if outage["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        if any(row["request_id"] == "poison" and row.get("user") for row in rows):
            raise sqlite3.IntegrityError("refused: this row only")  # its minimal form has no user
        real_insert(rows)

    monkeypatch.setattr(log, "_insert", insert)
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    log.register(registry)
    with caplog.at_level(logging.ERROR, logger="sizewise.log"):
        for i in range(5):
            log.write(_entry(f"r{i}"))
        log.write(_entry("poison", user="x"))
        assert not log.flush(0.5)  # the database is down: nothing written, nothing lost
        assert log.backlog == 6 and "database unavailable" in caplog.text
        assert "sizewise_log_backlog_rows 6.0" in generate_latest(registry).decode()
        outage["on"] = False
        assert log.flush(5)
    log.close()
    rows = {row["request_id"]: row for row in read_rows(url)}
    assert set(rows) == {"r0", "r1", "r2", "r3", "r4", "poison"}
    assert rows["poison"]["user"] is None and "refused by the database" in rows["poison"]["errors"]
    assert log.failed == 1 and "stored in minimal form" in caplog.text
    assert "sizewise_log_rows_failed_total 1.0" in generate_latest(registry).decode()


# -- through a real gateway -------------------------------------------------------------------------


class _Boom(RoutingPolicy):
    """A policy with a bug: any request to it raises something no handler expects."""

    async def plan(self, ctx: Any, candidates: Any) -> Any:
        raise ZeroDivisionError("a bug in a policy")


register_policy("boom-trust", lambda field, env: _Boom(field))


def _spec(base_url: str, log_url: str, **gateway: Any) -> dict[str, Any]:
    model = {
        "name": "cloud",
        "backend": "openai",
        "context_window": 8192,
        "location": "remote",
        "settings": {"base_url": base_url, "model": "up-cloud", "timeout_s": 10.0},
    }
    return {"models": [model], "gateway": {"log_url": log_url, **gateway}}


def test_hostile_user_values_through_the_gateway_keep_every_row(db_url: str) -> None:
    """Old (PostgreSQL): one request with a 300-character or NUL ``user`` erased the rows of every
    request written in the same batch."""
    with BillingUpstream(byte_tokens) as upstream, GatewayServer(_spec(upstream.base_url, db_url)) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        users = ["alice", "u" * 300, "bob", "a\x00b", "carol"]
        for user in users:
            # Refusing a hostile value at the edge is fine; the row must still exist.
            with contextlib.suppress(openai.BadRequestError):
                client.chat.completions.create(
                    model="cloud", messages=[{"role": "user", "content": "hi"}], max_tokens=5, user=user
                )
        rows = gw.rows()
    assert len(rows) == len(users)
    assert [r["user"] for r in rows if r["status"] == 200][:1] == ["alice"]


def test_unexpected_500s_and_disconnects_are_logged_and_401s_only_counted(tmp_path: Path) -> None:
    """Old: a 500 from an unexpected error left no row, a client that gave up before the answer was
    logged as 200, and every unauthenticated request wrote a row."""
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    key = "sk-trust-test"
    keys = [{"name": "team", "sha256": hashlib.sha256(key.encode()).hexdigest(), "dashboard": "all"}]  # reads /metrics
    upstream = BillingUpstream(byte_tokens, delay_s=0.6)
    with upstream, GatewayServer(_spec(upstream.base_url, url, api_keys=keys)) as gw:
        auth = {"authorization": f"Bearer {key}"}
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            for _ in range(3):
                assert client.post("/chat/completions", json={**body, "model": "cloud"}).status_code == 401
            boom = client.post("/chat/completions", json={**body, "model": "boom-trust"}, headers=auth)
            assert boom.status_code == 500 and "ZeroDivisionError" in boom.text
            for stream in (False, True):
                with pytest.raises(httpx.ReadTimeout):  # the client gives up before the first byte
                    client.post(
                        "/chat/completions",
                        json={**body, "model": "cloud", "stream": stream},
                        headers=auth,
                        timeout=0.2,
                    )
            time.sleep(1.0)  # the upstream answers after 0.6 s; the gateway then finds the client gone
            metrics = client.get(gw.url.removesuffix("/v1") + "/metrics", headers=auth).text
        rows = gw.rows()
    assert sorted((r["status"], bool(r["stream"])) for r in rows) == [(499, False), (499, True), (500, False)]
    assert 'status="401"} 3.0' in metrics
