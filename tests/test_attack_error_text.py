"""An unforeseen error is a 500 that names its class, never its text: a database error's message carries its
SQL and parameters, which can hold another client's rows (a prompt, a key name)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model

LEAK = "(sqlite3.OperationalError) database is locked [SQL: INSERT ...] [parameters: ('bob', 'my HIV test')]"


@pytest.fixture
def gateway() -> Any:
    with FakeUpstream() as up:
        models = [fake_model("small", "ok-small", 1, up.base_url), fake_model("big", "ok-big", 8, up.base_url)]
        with GatewayServer({"models": models, "gateway": {"log_url": "none"}}) as gw:
            yield gw


def _broken(*_: Any, **__: Any) -> Any:
    raise RuntimeError(LEAK)


def test_a_chat_request_that_hits_a_bug_gets_the_class_not_the_text(gateway: GatewayServer, monkeypatch: Any) -> None:
    monkeypatch.setattr(gateway.app.state.gateway.engine, "complete", _broken)
    body = {"model": "sizewise", "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{gateway.url}/chat/completions", json=body, timeout=10)
    error = reply.json()["error"]
    assert reply.status_code == 500 and error["code"] == "internal_error" and "RuntimeError" in error["message"]
    assert "HIV" not in reply.text and "bob" not in reply.text and "parameters" not in reply.text
    assert reply.headers["x-request-id"] in error["message"]  # what to look up in the gateway's log


def test_any_other_route_that_hits_a_bug_gets_the_class_not_the_text(gateway: GatewayServer, monkeypatch: Any) -> None:
    monkeypatch.setattr(gateway.app.state.gateway.engine, "backend_states", _broken)
    reply = httpx.get(f"{gateway.url.removesuffix('/v1')}/healthz", timeout=10)
    assert reply.status_code == 500 and reply.json()["error"]["code"] == "internal_error"
    assert "RuntimeError" in reply.text and "HIV" not in reply.text and "parameters" not in reply.text
