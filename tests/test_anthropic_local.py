"""Anthropic Messages on the real tiny model (llama.cpp): text, streaming and a forced tool turn (#18).
The translation against a recording upstream is tested in tests/test_anthropic.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from fakes import GatewayServer

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


# -- the real tiny model (llama.cpp) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gateway() -> Iterator[GatewayServer]:
    from sizewise.catalog import load_catalog

    tiny = load_catalog(None).get("smollm2-135m")
    with GatewayServer({"models": [tiny.model_dump()], "gateway": {"log_url": "none"}}) as gw:
        yield gw


@pytest.mark.model
@pytest.mark.slow
def test_a_local_model_answers_messages_streamed_and_not(tiny_gateway: GatewayServer) -> None:
    client = anthropic.Anthropic(base_url=tiny_gateway.url.removesuffix("/v1"), api_key="x", max_retries=0, timeout=120)
    ask = {
        "model": "sizewise",
        "max_tokens": 6,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    message = client.messages.create(**ask)  # type: ignore[arg-type]
    assert message.model == "smollm2-135m" and message.content[0].text.strip()  # type: ignore[union-attr]
    assert message.stop_reason in ("end_turn", "max_tokens") and 0 < message.usage.output_tokens <= 6
    with client.messages.stream(**ask) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 6


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_local_model_answers_a_tool_turn(tiny_gateway: GatewayServer, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=tiny_gateway.url.removesuffix("/v1"), api_key="x", max_retries=0, timeout=120)
    ask: Any = {
        "model": "smollm2-135m",
        "max_tokens": 48,
        "tools": [WEATHER],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    }
    if stream:
        with client.messages.stream(**ask) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**ask)
    assert message.stop_reason == "tool_use"
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and isinstance(call.input.get("city"), str)
