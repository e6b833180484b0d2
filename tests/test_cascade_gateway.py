"""The live ``cascade-<scorer>`` policy through the real gateway, with a real local fake HTTP upstream."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model

MESSAGES = [{"role": "user", "content": "what is two plus two"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(timeout_sleep=5) as up:
        yield up


def _gateway(upstream: FakeUpstream, middle: str) -> GatewayServer:
    base = upstream.base_url
    models = [
        fake_model("tiny", "ok-tiny", 1.0, base),
        fake_model("mid", middle, 3.0, base),
        fake_model("big", "ok-big", 8.0, base),
    ]
    return GatewayServer({"models": models, "gateway": {"log_url": "none"}})


@pytest.fixture(scope="module")
def broken(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    with _gateway(upstream, "fail500") as gw:
        yield gw


@pytest.fixture(scope="module")
def healthy(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    with _gateway(upstream, "ok-mid") as gw:
        yield gw


def _client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=20)


def test_upstream_failing_mid_ladder_falls_back_and_says_so(broken: GatewayServer) -> None:
    # The fake upstream returns no logprobs, so the logprob scorer distrusts every answer: the ladder is climbed.
    answer = _client(broken).chat.completions.create(model="cascade-logprob", messages=MESSAGES, max_tokens=8)
    decision = answer.model_extra["sizewise"]
    assert answer.choices[0].message.content.startswith("echo: what")
    assert decision["model"] == "big" and decision["escalated"] is True
    assert decision["fallback"] is True and decision["fallback_from"] == "mid"
    steps = decision["steps"]
    assert steps[0]["model"] == "tiny" and steps[0]["accepted"] is False and "escalate" in steps[0]["reason"]
    assert steps[0]["score"] is not None and steps[0]["score"] < steps[0]["threshold"]
    assert any(s["model"] == "mid" and s["error"] for s in steps)
    assert steps[-1]["model"] == "big" and steps[-1]["accepted"] is True
    assert decision["cost"] > 0


def test_confident_small_answer_is_accepted(healthy: GatewayServer) -> None:
    answer = _client(healthy).chat.completions.create(model="cascade-logprob:0", messages=MESSAGES, max_tokens=8)
    decision = answer.model_extra["sizewise"]
    assert decision["model"] == "tiny" and decision["escalated"] is False and decision["fallback"] is False
    assert [s["model"] for s in decision["steps"]] == ["tiny"] and decision["steps"][0]["accepted"]


def test_stream_sends_the_accepted_answer(healthy: GatewayServer) -> None:
    stream = _client(healthy).chat.completions.create(
        model="cascade-logprob", messages=MESSAGES, max_tokens=8, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.startswith("echo: what")


def test_unknown_scorer_is_a_400(healthy: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown scorer"):
        _client(healthy).chat.completions.create(model="cascade-nope", messages=MESSAGES, max_tokens=8)
    with pytest.raises(openai.BadRequestError, match="not fitted") as info:
        _client(healthy).chat.completions.create(model="cascade-answer-classifier", messages=MESSAGES, max_tokens=8)
    # The gateway user is told which file to provide, not to call fit() from Python.
    assert "scorer-answer-classifier.zip in the router directory" in str(info.value)
