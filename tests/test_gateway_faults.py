"""Faults with a real local HTTP upstream: retry once, then fall back, and say so in the answer and the log.

These requests name the failing model, so the catalogs allow ``fallback_for_named_models``; without it a
named model answers or fails (tests/test_visible_faults.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model, free_port

MESSAGES = [{"role": "user", "content": "hello there gateway"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(timeout_sleep=5) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    base = upstream.base_url
    dead = f"http://127.0.0.1:{free_port()}/v1"
    models = [
        fake_model("good", "ok-good", 8.0, base),
        fake_model("err500", "fail500", 3.0, base),
        fake_model("slow", "timeout", 2.0, base, timeout_s=0.3),
        fake_model("refused", "ok", 1.0, dead),
        fake_model("cutter", "cut", 0.5, base),
        fake_model("late", "cutlate", 0.4, base),
        fake_model("flaky", "flaky", 0.3, base),
    ]
    log = Path(tmp_path_factory.mktemp("log")) / "log.sqlite"
    gateway = {"log_url": f"sqlite:///{log}", "fallback_for_named_models": True}  # these tests name the failing model
    with GatewayServer({"models": models, "gateway": gateway}) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=20)


def _row(gateway: GatewayServer, request_id: str) -> dict:
    rows = [r for r in gateway.rows() if r["request_id"] == request_id]
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("model", ["err500", "slow", "refused", "cutter"])
def test_fault_falls_back_to_a_working_model(client: openai.OpenAI, gateway: GatewayServer, model: str) -> None:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=8)
    answer = raw.parse()
    assert answer.choices[0].message.content.startswith("echo: hello")
    assert raw.headers["x-sizewise-model"] == "good"
    assert raw.headers["x-sizewise-fallback"] == model
    decision = answer.model_extra["sizewise"]
    assert decision["fallback"] is True and decision["fallback_from"] == model and decision["model"] == "good"
    failed = [s for s in decision["steps"] if s["error"]]
    assert [s["model"] for s in failed] == [model, model]  # retried once before falling back
    row = _row(gateway, raw.headers["x-request-id"])
    assert row["status"] == 200 and row["model"] == "good" and row["fallback_from"] == model
    assert len(json.loads(row["errors"])) == 2
    # Each error names the model once ("slow: timed out ...", not "slow: slow: timed out ...").
    assert decision["errors"] and all(e.startswith(f"{model}: ") for e in decision["errors"])
    assert not any(e.startswith(f"{model}: {model}:") for e in decision["errors"])


def test_retry_once_recovers_without_fallback(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    before = upstream.calls["flaky"]
    raw = client.chat.completions.with_raw_response.create(model="flaky", messages=MESSAGES, max_tokens=8)
    decision = raw.parse().model_extra["sizewise"]
    if before % 2 == 0:  # the flaky upstream fails on odd calls: this request's first try fails
        assert [s["error"] is not None for s in decision["steps"]] == [True, False]
    assert decision["model"] == "flaky" and decision["fallback"] is False
    assert upstream.calls["flaky"] == before + (2 if before % 2 == 0 else 1)


@pytest.mark.parametrize("model", ["cutter", "refused", "err500"])
def test_stream_fault_before_first_chunk_falls_back(client: openai.OpenAI, gateway: GatewayServer, model: str) -> None:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=8, stream=True)
    assert raw.headers["x-sizewise-model"] == "good"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: hello")
    decision = chunks[-1].model_extra["sizewise"]
    assert decision["fallback_from"] == model and decision["model"] == "good"
    assert decision["errors"] and all(e.startswith(f"{model}: ") for e in decision["errors"])
    assert not any(e.startswith(f"{model}: {model}:") for e in decision["errors"])
    row = _row(gateway, raw.headers["x-request-id"])
    assert row["status"] == 200 and row["stream"] and row["fallback_from"] == model


def test_stream_cut_after_bytes_were_sent_is_reported(client: openai.OpenAI, gateway: GatewayServer) -> None:
    raw = client.chat.completions.with_raw_response.create(model="late", messages=MESSAGES, max_tokens=8, stream=True)
    with pytest.raises(openai.APIError, match="upstream stream failed"):
        list(raw.parse())
    row = _row(gateway, raw.headers["x-request-id"])
    assert row["status"] == 502 and "stream cut" in row["errors"]


def test_every_model_failing_is_a_502_json_error(upstream: FakeUpstream, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    models = [fake_model("a", "fail500", 1.0, upstream.base_url), fake_model("b", "ok", 2.0, dead)]
    gateway = {"log_url": f"sqlite:///{tmp_path / 'l.sqlite'}", "fallback_for_named_models": True}
    with GatewayServer({"models": models, "gateway": gateway}) as gw:
        response = httpx.post(f"{gw.url}/chat/completions", json={"model": "a", "messages": MESSAGES}, timeout=20)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "upstream_error" and "500" in error["message"]
        rows = gw.rows()
    assert rows[-1]["status"] == 502 and rows[-1]["steps"] == 4
    assert "Traceback" not in response.text
