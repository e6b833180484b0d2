"""End to end with the official ``openai`` and ``anthropic`` clients against a live gateway (issue #18).

Remote models are played by a recording upstream that answers like OpenAI (tool calls for tools, JSON for
a response_format: ``bench/_compat_upstream.py``), so a test sees both what the client got and what the
upstream was sent. Local rows use the embedded tiny GGUF model (marked ``model``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from fakes import GatewayServer, fake_model  # fakes puts bench/ on sys.path

# isort: split
from _compat_cases import WEATHER
from _compat_upstream import RecordingUpstream

SYSTEM = "You are a coding agent. Use the tools to answer."
ASK = {"role": "user", "content": "What is the weather in Paris?"}


class City(pydantic.BaseModel):
    city: str
    country: str


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


def _catalog(upstream: RecordingUpstream, log: Path, **gateway: Any) -> dict[str, Any]:
    models = [
        fake_model("small", "rec-small", 0.5, upstream.base_url, timeout_s=10),
        fake_model("big", "rec-big", 1.5, upstream.base_url, timeout_s=10, aliases=["claude-sonnet-4-5"]),
    ]
    return {"models": models, "gateway": {"log_url": f"sqlite:///{log}", **gateway}}


@pytest.fixture(scope="module")
def gateway(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    log = tmp_path_factory.mktemp("e2e") / "log.sqlite"
    with GatewayServer(_catalog(upstream, log, router="heuristic")) as gw:
        yield gw


def _openai(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0, timeout=120)


def _anthropic(gw: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url.removesuffix("/v1"), api_key="x", max_retries=0, timeout=120)


# -- tool calls, OpenAI chat completions ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_tool_call_round_trips_through_an_upstream(
    gateway: GatewayServer, upstream: RecordingUpstream, stream: bool
) -> None:
    client = _openai(gateway)
    if stream:
        with client.chat.completions.stream(model="small", messages=[ASK], tools=[WEATHER]) as events:
            answer = events.get_final_completion()
    else:
        answer = client.chat.completions.create(model="small", messages=[ASK], tools=[WEATHER])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "ok"}
    assert answer.id.startswith("chatcmpl-rec-")  # the upstream's own id, not a new one
    assert upstream.bodies[-1]["tools"] == [WEATHER]
    # The second turn: the assistant's call and the tool's result go back, as an agent sends them.
    history = [ASK, choice.message.model_dump(exclude_none=True), _tool_result(call.id)]
    final = client.chat.completions.create(model="small", messages=history, tools=[WEATHER], stream=False)
    sent = upstream.bodies[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2] == _tool_result(call.id)
    assert final.choices[0].finish_reason == "tool_calls"  # the recorder calls a tool whenever tools are offered


def _tool_result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 21}'}


def test_a_json_schema_answer_from_an_upstream_parses(gateway: GatewayServer, upstream: RecordingUpstream) -> None:
    answer = _openai(gateway).chat.completions.parse(model="big", messages=[ASK], response_format=City)
    assert answer.choices[0].message.parsed == City(city="ok", country="ok")
    assert upstream.bodies[-1]["response_format"]["json_schema"]["name"] == "City"


# -- Anthropic Messages, as Claude Code sends them ---------------------------------------------------

CLAUDE_TOOLS = [
    {
        "name": "Read",
        "description": "Read a file from the local filesystem.",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
    },
    {
        "name": "Bash",
        "description": "Run a shell command.",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    },
]
CLAUDE_SYSTEM = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]


def _claude_request() -> dict[str, Any]:
    """A Claude Code turn: cached system blocks, tools, metadata.user_id, a beta header, a model alias."""
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": CLAUDE_SYSTEM,
        "tools": CLAUDE_TOOLS,
        "metadata": {"user_id": "user_abc_account_1_session_2"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Read setup.py"}]}],
        "extra_headers": {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
    }


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_claude_code_style_messages_with_tools(
    gateway: GatewayServer, upstream: RecordingUpstream, stream: bool
) -> None:
    client = _anthropic(gateway)
    if stream:
        with client.messages.stream(**_claude_request()) as events:
            kinds = {event.type for event in events}
            message = events.get_final_message()
        assert {"message_start", "content_block_start", "content_block_delta", "message_stop"} <= kinds
    else:
        message = client.messages.create(**_claude_request())
    assert message.stop_reason == "tool_use"
    use = next(block for block in message.content if block.type == "tool_use")
    assert use.name in ("Read", "Bash") and use.input in ({"file_path": "ok"}, {"command": "ok"})
    sent = upstream.bodies[-1]
    assert sent["model"] == "rec-big"  # the alias named the big model
    assert [t["function"]["name"] for t in sent["tools"]] == ["Read", "Bash"]
    assert sent["messages"][0]["role"] == "system" and SYSTEM in json.dumps(sent["messages"][0])
    # The tool's result goes back as Claude Code sends it: a user turn with a tool_result block.
    follow = _claude_request()
    follow["messages"] += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "print('hi')"}]},
    ]
    client.messages.create(**follow)
    tool_turn = upstream.bodies[-1]["messages"][-1]
    assert tool_turn["role"] == "tool" and tool_turn["tool_call_id"] == use.id and "print('hi')" in str(tool_turn)


# -- a session: 10 agent turns on one model --------------------------------------------------------


def _agent(gw: GatewayServer, session: str | None) -> list[str]:
    """Ten turns of an agent loop driven by the gateway's answers: each tool call is answered with a long
    tool output, so the heuristic router's score climbs from 0.36 past its threshold 0.5 (to 0.62, inside
    the session margin); the model of each turn."""
    client = _openai(gw)
    headers = {"x-sizewise-session-id": session} if session else {}
    task = {"role": "user", "content": "Compare the weather in Paris and Lyon this week."}
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, task]
    models = []
    for turn in range(10):
        raw = client.chat.completions.with_raw_response.create(
            model="router-heuristic-0.5", messages=messages, tools=[WEATHER], extra_headers=headers
        )
        models.append(raw.headers["x-sizewise-model"])
        message = raw.parse().choices[0].message
        assert message.tool_calls, f"turn {turn}: no tool call"
        messages.append(message.model_dump(exclude_none=True))
        output = f"Paris, station {turn}: 21 C, light wind from the west, humidity 40 percent, no rain today. " * 4
        messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": output})
    return models


def test_a_session_stays_on_one_model_for_ten_agent_turns(
    upstream: RecordingUpstream, tmp_path: Path, gateway: GatewayServer
) -> None:
    models = _agent(gateway, "agent-1")
    assert models == [models[0]] * 10
    with GatewayServer(_catalog(upstream, tmp_path / "log.sqlite", session_keys=[])) as plain:
        without = _agent(plain, None)
    assert len(set(without)) > 1, "the router never switched: this conversation cannot show a session holding"
    assert without[0] == models[0]


def _claude_agent(gw: GatewayServer) -> list[str]:
    """Claude Code's loop over /v1/messages, with no session header (Claude Code sends none): ten turns, each
    tool_use answered by a long tool_result; the model of each turn."""
    client = _anthropic(gw)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Compare the weather in Paris and Lyon this week."}]
    models = []
    for turn in range(10):
        raw = client.messages.with_raw_response.create(
            model="router-heuristic-0.5", max_tokens=512, system=CLAUDE_SYSTEM, tools=CLAUDE_TOOLS, messages=messages
        )
        models.append(raw.headers["x-sizewise-model"])
        message = raw.parse()
        use = next((block for block in message.content if block.type == "tool_use"), None)
        assert use is not None, f"turn {turn}: no tool_use"
        messages.append(
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]}
        )
        output = f"Lyon, station {turn}: 19 C, light wind from the north, humidity 55 percent, no rain today. " * 4
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": output}]}
        )
    return models


def test_a_claude_code_session_stays_on_one_model_with_no_session_header(
    upstream: RecordingUpstream, tmp_path: Path, gateway: GatewayServer
) -> None:
    models = _claude_agent(gateway)  # the conversation's opening is the session
    assert models == [models[0]] * 10
    with GatewayServer(_catalog(upstream, tmp_path / "log.sqlite", session_keys=[])) as plain:
        without = _claude_agent(plain)
    assert len(set(without)) > 1, "the router never switched: this conversation cannot show a session holding"


# -- the local tiny model: grammars -----------------------------------------------------------------


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    from sizewise.catalog import load_catalog

    tiny = load_catalog(None).get("smollm2-135m")
    log = tmp_path_factory.mktemp("e2e-local") / "log.sqlite"
    with GatewayServer({"models": [tiny.model_dump()], "gateway": {"log_url": f"sqlite:///{log}"}}) as gw:
        yield gw


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_local_model_calls_a_tool_through_a_grammar(local_gateway: GatewayServer, stream: bool) -> None:
    client = _openai(local_gateway)
    request: dict[str, Any] = {
        "model": "smollm2-135m",
        "messages": [ASK],
        "tools": [WEATHER],
        "tool_choice": "required",
        "max_tokens": 48,
        "temperature": 0,
    }
    if stream:
        with client.chat.completions.stream(**request) as events:
            answer = events.get_final_completion()
    else:
        answer = client.chat.completions.create(**request)
    calls = answer.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments)["city"], str)
    assert answer.choices[0].finish_reason == "tool_calls"
    # The round trip: the local chat template takes the call and the tool's result back.
    history = [ASK, answer.choices[0].message.model_dump(exclude_none=True), _tool_result(calls[0].id)]
    final = client.chat.completions.create(
        model="smollm2-135m", messages=history, tools=[WEATHER], max_tokens=12, temperature=0
    )
    assert final.choices[0].message.content or final.choices[0].message.tool_calls


@pytest.mark.model
@pytest.mark.slow
def test_a_local_json_schema_answer_parses(local_gateway: GatewayServer) -> None:
    answer = _openai(local_gateway).chat.completions.parse(
        model="smollm2-135m", messages=[ASK], response_format=City, max_tokens=64, temperature=0
    )
    assert isinstance(answer.choices[0].message.parsed, City)
