"""Structured output and tool calls on a local GGUF model (issue #18, item 1), with the official openai client.

The real tiny embedded model (SmolLM2-135M, whose chat template knows nothing of tools) behind a live gateway:
a ``json_schema`` answer parses and follows the schema (a llama.cpp grammar); a named ``tool_choice`` comes
back as an OpenAI tool call, streamed or not; logprobs come in OpenAI's object with ``top_logprobs``; ``n``
answers n choices. The reading of free answers (``<tool_call>`` tags, bare or fenced JSON) is tested on text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fakes import GatewayServer
from sizewise.backends.llama_tools import ToolMode, parse_answer, prompt_messages, tool_mode
from sizewise.core.chat import BackendError, ChatRequest

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    }
]
ASK = [{"role": "user", "content": "What is the weather in Paris for the next 2 days?"}]


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    from sizewise.catalog import load_catalog

    tiny = load_catalog(None).get("smollm2-135m")
    with GatewayServer({"models": [tiny.model_dump()]}, log_url="none") as gw:
        yield openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0, timeout=120)


def _follows(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"city", "population"}
        and isinstance(value["city"], str)
        and isinstance(value["population"], int)
    )


@pytest.mark.model
@pytest.mark.slow
def test_a_json_schema_answer_parses_and_follows_the_schema(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Name the largest city of France and its population."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}},
        max_tokens=40,
        temperature=0,
    )
    assert _follows(json.loads(answer.choices[0].message.content or ""))


@pytest.mark.model
@pytest.mark.slow
def test_a_forced_tool_call_parses(client: openai.OpenAI) -> None:
    forced = {"type": "function", "function": {"name": "get_weather"}}
    answer = client.chat.completions.create(
        model="smollm2-135m", messages=ASK, tools=TOOLS, tool_choice=forced, max_tokens=40, temperature=0
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)

    stream = client.chat.completions.create(
        model="smollm2-135m", messages=ASK, tools=TOOLS, tool_choice=forced, max_tokens=40, temperature=0, stream=True
    )
    chunks = [c for c in stream if c.choices]
    pieces = [piece for c in chunks for piece in c.choices[0].delta.tool_calls or []]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert [p.function.name for p in pieces if p.function] == ["get_weather"]
    assert json.loads("".join(p.function.arguments or "" for p in pieces if p.function)) == arguments  # greedy


@pytest.mark.model
@pytest.mark.slow
def test_a_schema_no_grammar_takes_is_a_400_not_a_502(client: openai.OpenAI) -> None:
    """The client's schema is wrong (a dangling $ref): its mistake, said as a 400 naming the problem; it was a
    502 "every model failed", as if the gateway had broken."""
    bad = {"type": "object", "properties": {"a": {"$ref": "#/definitions/nope"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="smollm2-135m",
            messages=ASK,
            max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": bad}},
        )
    message = caught.value.body["message"]  # type: ignore[index]
    assert "cannot turn the JSON schema into a grammar" in message and "definitions" in message


def test_logprobs_with_top_logprobs_and_n_choices(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        n=2,
    )
    assert len(answer.choices) == 2 and answer.choices[0].message.content == answer.choices[1].message.content
    content = answer.choices[0].logprobs.content if answer.choices[0].logprobs else None
    assert content and "".join(item.token for item in content) == answer.choices[0].message.content
    for item in content:
        assert len(item.top_logprobs) == 3 and item.top_logprobs[0].logprob >= item.logprob - 1e-4  # greedy
    assert answer.usage and answer.usage.completion_tokens == 2 * len(content)

    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        n=2,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    first = [c.choices[0] for c in chunks if c.choices[0].index == 0]
    entries = [item for choice in first if choice.logprobs for item in choice.logprobs.content or []]
    assert "".join(choice.delta.content or "" for choice in first) == answer.choices[0].message.content
    assert [item.token for item in entries] == [item.token for item in content]  # each token once, in order
    second = [choice for c in chunks for choice in c.choices if choice.index == 1]
    assert [choice.delta.content for choice in second] == [answer.choices[1].message.content]


def test_a_free_answer_is_read_for_tool_calls() -> None:
    request = ChatRequest(messages=ASK, extra={"tools": TOOLS})
    mode = tool_mode(request)
    tagged = 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>'
    text, calls = parse_answer(mode, request, tagged)
    assert text == "Sure." and calls and json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "days": 2}
    two = tagged + tagged.replace("Paris", "Rome")
    assert len(parse_answer(mode, request, two)[1] or []) == 2
    single = ChatRequest(messages=ASK, extra={"tools": TOOLS, "parallel_tool_calls": False})
    assert len(parse_answer(mode, single, two)[1] or []) == 1
    fenced = '```json\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 1}}\n```'  # Qwen2.5-0.5B's way
    assert parse_answer(mode, request, fenced)[1]
    assert parse_answer(mode, request, '{"name": "other", "arguments": {}}') == (
        '{"name": "other", "arguments": {}}',
        None,
    )
    assert parse_answer(ToolMode("none"), request, tagged) == (tagged, None)


def test_templates_without_tools_get_them_in_a_system_message() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]}]
    plain = prompt_messages(history, TOOLS, template="{{ messages }}")
    assert plain[0]["role"] == "system" and "get_weather" in plain[0]["content"]
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}' in plain[-1]["content"]
    rendered = prompt_messages(history, TOOLS, template="{% for tool in tools %}")  # Qwen's renders them itself
    assert rendered[-1]["tool_calls"][0]["function"]["arguments"] == {"city": "Rome"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "not in tools"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}},
            "json_schema.schema",
        ),
        ({"response_format": {"type": "yaml"}}, "not one of"),
        ({"tools": [{"name": "flat"}]}, "tools must be"),
    ],
)
def test_requests_a_local_model_cannot_serve_are_a_clear_error(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(BackendError, match=message) as info:
        tool_mode(ChatRequest(messages=ASK, extra=extra))
    assert info.value.status == 400 and not info.value.retryable
