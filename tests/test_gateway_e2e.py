"""End to end: a real gateway on a free loopback port, driven by the official openai client."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.evaluation.table import conversation_text
from sizewise.policy.routing import HeuristicScorer, shipped_router
from sizewise.policy.types import CascadePolicy, Step, register_policy

EASY = [{"role": "user", "content": "hi"}]
HARD = [
    {
        "role": "user",
        "content": "Prove step by step that the integral of x^2 from 0 to 3 equals 9, then derive and solve "
        "the equation 3x + 7 = 22, and implement the algorithm in Python: ```def f(x): return x```" * 3,
    }
]


def _metric(gateway: GatewayServer, name: str, **labels: str) -> float:
    text = httpx.get(gateway.url.removesuffix("/v1") + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    models = [
        fake_model("tiny", "ok-tiny", 0.1, upstream.base_url),
        fake_model("small", "ok-small", 0.5, upstream.base_url),
        fake_model("big", "ok-big", 1.5, upstream.base_url),
    ]
    log = Path(tmp_path_factory.mktemp("log")) / "log.sqlite"
    # The built-in heuristic scorer makes routing deterministic here; the default router has its own test.
    settings = {"log_url": f"sqlite:///{log}", "router": "heuristic"}
    with GatewayServer({"models": models, "gateway": settings}) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)


def test_routed_answer_has_headers_body_log_row_and_metrics(client: openai.OpenAI, gateway: GatewayServer) -> None:
    before = _metric(gateway, "sizewise_requests_total", policy="sizewise", status="200")
    raw = client.chat.completions.with_raw_response.create(model="sizewise", messages=HARD, max_tokens=8)
    answer = raw.parse()
    model = raw.headers["x-sizewise-model"]
    score = float(raw.headers["x-sizewise-score"])
    assert model == "big" and score >= float(raw.headers["x-sizewise-threshold"]) == 0.5
    assert answer.model == "big" and answer.choices[0].message.content.startswith("echo: Prove")
    decision = answer.model_extra["sizewise"]
    assert decision["model"] == "big" and decision["escalated"] is True and decision["score"] == pytest.approx(score)
    assert decision["cost"] == pytest.approx(
        (answer.usage.prompt_tokens * 1.5 + answer.usage.completion_tokens * 3) / 1e6
    )
    rows = [r for r in gateway.rows() if r["request_id"] == raw.headers["x-request-id"]]
    assert len(rows) == 1
    row = rows[0]
    assert row["model"] == "big" and row["policy"] == "sizewise" and row["status"] == 200 and row["escalated"]
    assert row["prompt_hash"] == hashlib.sha256(conversation_text(HARD).encode()).hexdigest()
    assert row["prompt_text"] is None and row["completion_tokens"] == answer.usage.completion_tokens
    assert _metric(gateway, "sizewise_requests_total", policy="sizewise", status="200") == before + 1
    assert _metric(gateway, "sizewise_request_latency_seconds_count", model="big") >= 1


def test_easy_prompt_goes_to_the_small_model(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="sizewise", messages=EASY)
    assert raw.headers["x-sizewise-model"] == "small"
    assert raw.parse().model_extra["sizewise"]["escalated"] is False


@pytest.mark.parametrize(("threshold", "expected"), [("0", "big"), ("1.01", "small")])
def test_router_threshold_in_the_model_name(client: openai.OpenAI, threshold: str, expected: str) -> None:
    raw = client.chat.completions.with_raw_response.create(model=f"router-heuristic-{threshold}", messages=EASY)
    assert raw.headers["x-sizewise-model"] == expected
    assert float(raw.headers["x-sizewise-threshold"]) == float(threshold)


def test_bypass_names_a_catalog_model(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=HARD)
    assert raw.headers["x-sizewise-model"] == "tiny" and raw.headers["x-sizewise-score"] == ""


def test_streaming_routed(client: openai.OpenAI, gateway: GatewayServer) -> None:
    raw = client.chat.completions.with_raw_response.create(model="sizewise", messages=EASY, stream=True)
    assert raw.headers["x-sizewise-model"] == "small"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["sizewise"]["model"] == "small"
    row = next(r for r in gateway.rows() if r["request_id"] == raw.headers["x-request-id"])
    assert row["stream"] and row["status"] == 200 and row["completion_tokens"] == 2


def test_multi_turn_is_routed_on_the_whole_conversation(client: openai.OpenAI) -> None:
    conversation = [*HARD, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "and now?"}]
    raw = client.chat.completions.with_raw_response.create(model="sizewise", messages=conversation)
    expected = HeuristicScorer().score([conversation_text(conversation)])[0]
    assert float(raw.headers["x-sizewise-score"]) == pytest.approx(expected, abs=1e-4)
    assert raw.headers["x-sizewise-model"] == "big"  # the last turn alone would go small
    assert HeuristicScorer().score([conversation_text(conversation[-1:])])[0] < 0.5


def test_sticky_sessions_keep_a_conversation_on_its_model(upstream: FakeUpstream, tmp_path: Path) -> None:
    models = [fake_model("small", "ok-s", 0.5, upstream.base_url), fake_model("big", "ok-b", 1.5, upstream.base_url)]
    # The older setting: the OpenAI user field names the session; no margin: the session never leaves its model.
    settings = {
        "log_url": f"sqlite:///{tmp_path / 'l.sqlite'}",
        "sticky_sessions": True,
        "session_margin": None,
        "router": "heuristic",
    }
    with GatewayServer({"models": models, "gateway": settings}) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)
        first = client.chat.completions.with_raw_response.create(model="sizewise", messages=EASY, user="alice")
        later = client.chat.completions.with_raw_response.create(model="sizewise", messages=HARD, user="alice")
        other = client.chat.completions.with_raw_response.create(model="sizewise", messages=HARD, user="bob")
    assert first.headers["x-sizewise-model"] == later.headers["x-sizewise-model"] == "small"
    assert later.parse().model_extra["sizewise"]["reason"].startswith("sticky session: kept small over big")
    assert later.parse().model_extra["sizewise"]["session"] == "kept"
    assert other.headers["x-sizewise-model"] == "big"


def test_models_health_and_log_text(upstream: FakeUpstream, tmp_path: Path) -> None:
    models = [fake_model("small", "ok-s", 0.5, upstream.base_url), fake_model("big", "ok-b", 1.5, upstream.base_url)]
    settings = {"log_url": f"sqlite:///{tmp_path / 'l.sqlite'}", "log_text": True}
    with GatewayServer({"models": models, "gateway": settings}) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)
        ids = {m.id for m in client.models.list()}
        client.chat.completions.create(model="small", messages=EASY)
        health = httpx.get(gw.url.removesuffix("/v1") + "/healthz").json()
        rows = gw.rows()
    assert {"sizewise", "small", "big"} <= ids and not any("<" in i for i in ids)  # names, not patterns
    assert health == {"status": "ok", "models": 2, "workers": {}}  # no local model in this catalog
    assert rows[-1]["prompt_text"] == "user: hi"


@pytest.mark.slow
def test_default_policy_uses_the_pretrained_router(upstream: FakeUpstream, tmp_path: Path) -> None:
    path, threshold = shipped_router()
    assert path.is_file() and threshold is not None
    models = [fake_model("small", "ok-s", 0.5, upstream.base_url), fake_model("big", "ok-b", 1.5, upstream.base_url)]
    with GatewayServer({"models": models, "gateway": {"log_url": f"sqlite:///{tmp_path / 'l.sqlite'}"}}) as gw:
        policy = gw.app.state.gateway.engine.policy("sizewise")
        assert not isinstance(policy.scorer, HeuristicScorer)
        client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0, timeout=60)
        for messages in (EASY, HARD):
            raw = client.chat.completions.with_raw_response.create(model="sizewise", messages=messages)
            score = float(raw.headers["x-sizewise-score"])
            assert float(raw.headers["x-sizewise-threshold"]) == pytest.approx(threshold, abs=1e-5)
            assert score == pytest.approx(float(policy.scorer.score([conversation_text(messages)])[0]), abs=1e-4)
            assert raw.headers["x-sizewise-model"] == ("big" if score >= threshold else "small")


# -- the real tiny model (llama.cpp) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    from sizewise.catalog import load_catalog

    tiny = load_catalog(None).get("smollm2-135m")
    # Two catalog entries on the tiny GGUF so routing runs for real without the bigger models.
    twin = tiny.model_copy(update={"name": "smollm2-twin", "params_b": (tiny.params_b or 0.135) * 2})
    log = Path(tmp_path_factory.mktemp("log")) / "log.sqlite"
    spec = {"models": [tiny.model_dump(), twin.model_dump()], "gateway": {"log_url": f"sqlite:///{log}"}}
    with GatewayServer(spec) as gw:
        yield gw


@pytest.mark.model
@pytest.mark.slow
def test_tiny_model_answers_non_streaming(tiny_gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=tiny_gateway.url, api_key="x", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="sizewise", messages=[{"role": "user", "content": "What is 2+2?"}], max_tokens=6, temperature=0
    )
    answer = raw.parse()
    assert raw.headers["x-sizewise-model"] in ("smollm2-135m", "smollm2-twin")
    assert raw.headers["x-sizewise-score"] and raw.headers["x-sizewise-threshold"]
    assert answer.choices[0].message.content.strip()
    assert 0 < answer.usage.completion_tokens <= 6
    row = next(r for r in tiny_gateway.rows() if r["request_id"] == raw.headers["x-request-id"])
    assert row["status"] == 200 and row["model"] == raw.headers["x-sizewise-model"]
    assert _metric(tiny_gateway, "sizewise_requests_total", policy="sizewise", status="200") >= 1


@pytest.mark.model
@pytest.mark.slow
def test_tiny_model_answers_streaming(tiny_gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=tiny_gateway.url, api_key="x", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, stream=True
    )
    assert raw.headers["x-sizewise-model"] == "smollm2-135m"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].model_extra["sizewise"]["model"] == "smollm2-135m"
    row = next(r for r in tiny_gateway.rows() if r["request_id"] == raw.headers["x-request-id"])
    assert row["stream"] and row["status"] == 200 and row["completion_tokens"] > 0


# -- the extension point used by cascades ------------------------------------------------------------


class _TwoStep(CascadePolicy):
    """A minimal cascade: ask the smallest candidate, accept unless the prompt says 'escalate'."""

    async def run(self, ctx, candidates, call, decision):  # type: ignore[no-untyped-def]
        ladder = sorted(candidates, key=lambda m: m.params_b or 0)
        for spec in ladder:
            result = await call(spec, ctx)
            accepted = "escalate" not in ctx.text or spec is ladder[-1]
            decision.steps.append(Step(spec.name, score=0.0 if not accepted else 1.0, accepted=accepted))
            if accepted:
                decision.model, decision.escalated = spec.name, spec is not ladder[0]
                return result
        raise AssertionError("unreachable")


@pytest.fixture
def twostep_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registered for this test only: the registry is process-wide, and a leftover would serve later tests.
    from sizewise.policy import types

    monkeypatch.setattr(types, "_POLICIES", dict(types._POLICIES))
    register_policy("cascade-twostep", lambda name, env: _TwoStep(name))


@pytest.mark.usefixtures("twostep_registered")
def test_cascade_policy_plugs_into_the_engine(client: openai.OpenAI) -> None:
    easy = client.chat.completions.with_raw_response.create(model="cascade-twostep", messages=EASY)
    assert easy.headers["x-sizewise-model"] == "tiny"
    assert [s["model"] for s in easy.parse().model_extra["sizewise"]["steps"]] == ["tiny"]
    hard = client.chat.completions.with_raw_response.create(
        model="cascade-twostep", messages=[{"role": "user", "content": "escalate please"}], stream=True
    )
    chunks = list(hard.parse())
    decision = chunks[-1].model_extra["sizewise"]
    assert hard.headers["x-sizewise-model"] == "big" and decision["escalated"] is True
    assert [s["model"] for s in decision["steps"]] == ["tiny", "small", "big"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: escalate please"


# -- the CLI: `sizewise serve` then `sizewise log` ---------------------------------------------------


@pytest.mark.slow
def test_serve_and_log_commands(upstream: FakeUpstream, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    import yaml

    from fakes import free_port

    log = tmp_path / "log.sqlite"
    models = [fake_model("small", "ok-s", 0.5, upstream.base_url), fake_model("big", "ok-b", 1.5, upstream.base_url)]
    config = tmp_path / "sizewise.yaml"
    config.write_text(
        yaml.safe_dump({"models": models, "gateway": {"log_url": f"sqlite:///{log}", "router": "heuristic"}})
    )
    port = free_port()
    cli = [sys.executable, "-m", "sizewise.cli.main"]
    server = subprocess.Popen(
        [*cli, "serve", "--config", str(config), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "sizewise serve did not start"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        for messages in (EASY, EASY, HARD):
            client.chat.completions.create(model="sizewise", messages=messages)
    finally:
        server.terminate()
        server.wait(timeout=20)
    result = subprocess.run([*cli, "log", "--db", str(log)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "requests: 3" in result.stdout
    assert "small" in result.stdout and "66.7%" in result.stdout and "33.3%" in result.stdout
    assert "of always-big" in result.stdout and "p50" in result.stdout


def test_router_dir_setting_serves_a_trained_router_file(upstream: FakeUpstream, tmp_path: Path) -> None:
    from learned_helpers import planted_pair
    from sizewise.routers.base import make_router

    router_dir = tmp_path / "routers"
    router_dir.mkdir()
    table = planted_pair(300)
    router = make_router("tfidf-logreg").fit(table)
    router.save(router_dir / "mine.zip")
    models = [fake_model("small", "ok-s", 0.5, upstream.base_url), fake_model("big", "ok-b", 1.5, upstream.base_url)]
    gateway = {"log_url": "none", "router_dir": str(router_dir)}
    with GatewayServer({"models": models, "gateway": gateway}) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0, timeout=60)
        hard = [{"role": "user", "content": table.prompts.text[0]}]
        raw = client.chat.completions.with_raw_response.create(model="router-mine-0.5", messages=hard)
        expected = float(router.score([conversation_text(hard)])[0])
        assert float(raw.headers["x-sizewise-score"]) == pytest.approx(expected, abs=1e-4)
        assert raw.headers["x-sizewise-model"] == ("big" if expected >= 0.5 else "small")
        missing = client.chat.completions.with_raw_response
        with pytest.raises(openai.NotFoundError):
            missing.create(model="router-notthere-0.5", messages=hard)
