"""``POST /v1/messages`` with the official ``anthropic`` client against a live gateway: plain text, system
prompts, streaming, a Claude-Code-style tool round trip (stream and not), images, stop reasons and errors
in Anthropic's shape. The upstream is a real HTTP server that records what it was sent and answers in
OpenAI's format (tool calls included), so the test sees both halves of the translation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from fakes import FakeUpstream, GatewayServer, ThreadedServer, fake_model, read_body
from sizewise.gateway.auth import hash_key

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class ToolUpstream(ThreadedServer):
    """An OpenAI-compatible upstream that records each request and calls ``get_weather`` when offered tools
    (until the history holds a tool result), else answers ``done: <last user text>``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = json.loads(await read_body(receive))
        self.requests.append(request)
        messages = request["messages"]
        call = request.get("tools") and messages[-1]["role"] != "tool"
        short = (request.get("max_tokens") or 99) <= 2
        text = "" if call else "done: " + _text(messages[-1])
        finish = "tool_calls" if call else ("length" if short else "stop")
        usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if call:
            message["tool_calls"] = [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ]
        if not request.get("stream"):
            answer = {"id": "chatcmpl-up", "object": "chat.completion", "created": 0, "model": request["model"]}
            answer |= {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}
            await _send(send, "application/json", [json.dumps(answer).encode()])
            return
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": text}] if text else []
        if call:  # the arguments arrive in pieces, as OpenAI streams them
            first = {
                "index": 0,
                "id": "call_7",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
            deltas += [{"role": "assistant", "content": None, "tool_calls": [first]}]
            deltas += [
                {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in ('{"city": ', '"Paris"}')
            ]
        base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 0, "model": request["model"]}
        events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage})
        await _send(
            send, "text/event-stream", [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
        )


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return str(content)


async def _send(send: Any, media: str, pieces: list[bytes]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", media.encode())]})
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def upstream() -> Iterator[ToolUpstream]:
    with ToolUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def faults() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    upstream: ToolUpstream, faults: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    models = [
        fake_model(
            "up", "up-model", 1.0, upstream.base_url, modalities=["text", "image"], aliases=["claude-sonnet-4-5"]
        ),
        fake_model("broken", "fail500", 2.0, faults.base_url),
        fake_model("cut", "cutlate", 3.0, faults.base_url),
    ]
    log = tmp_path_factory.mktemp("log") / "log.sqlite"
    with GatewayServer({"models": models, "gateway": {"log_url": f"sqlite:///{log}"}}) as server:
        yield server


@pytest.fixture
def client(gateway: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url.removesuffix("/v1"), api_key="unused", max_retries=0)


def test_plain_text_answer(client: anthropic.Anthropic, upstream: ToolUpstream) -> None:
    raw = client.messages.with_raw_response.create(
        model="up",
        max_tokens=32,
        messages=[{"role": "user", "content": "hello there"}],
        extra_body={"temperature": 0.5},
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == "done: hello there"
    assert message.stop_reason == "end_turn" and message.role == "assistant" and message.id.startswith("msg_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 5)
    assert raw.headers["x-sizewise-model"] == "up"
    sent = upstream.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": "hello there"}]
    assert (sent["max_tokens"], sent["temperature"], sent["model"]) == (32, 0.5, "up-model")


def test_system_prompt_string_and_blocks(client: anthropic.Anthropic, upstream: ToolUpstream) -> None:
    client.messages.create(model="up", max_tokens=8, system="Be brief.", messages=[{"role": "user", "content": "hi"}])
    assert upstream.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
    blocks = [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}},
    ]
    client.messages.create(model="up", max_tokens=8, system=blocks, messages=[{"role": "user", "content": "hi"}])  # type: ignore[arg-type]
    assert upstream.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief.\n\nAnswer in French."}


def test_streamed_text(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="up", max_tokens=32, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "done: stream me"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 5)


def test_claude_code_style_tool_round_trip(client: anthropic.Anthropic, upstream: ToolUpstream) -> None:
    history: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}]
    first = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "auto"},
        messages=history,  # type: ignore[list-item]
        metadata={"user_id": "session-1"},
    )
    sent = upstream.requests[-1]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": WEATHER["description"],
            },
        }
    ]
    assert sent["tool_choice"] == "auto" and sent["user"] == "session-1"
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert (call.id, call.name, call.input) == ("call_7", "get_weather", {"city": "Paris"})
    history += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}]},
    ]
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, tools=[WEATHER], messages=history)  # type: ignore[list-item]
    sent = upstream.requests[-1]
    assistant = sent["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"] == [
        {"id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_7", "content": "18 C, sunny"}
    assert second.stop_reason == "end_turn" and second.content[0].text == "done: 18 C, sunny"  # type: ignore[union-attr]


def test_parallel_tool_results_follow_their_calls_in_order(client: anthropic.Anthropic, upstream: ToolUpstream) -> None:
    calls = [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    results = [
        {"type": "tool_result", "tool_use_id": "call_a", "content": [{"type": "text", "text": "18 C"}]},
        {"type": "tool_result", "tool_use_id": "call_b", "content": "boom", "is_error": True},
        {"type": "text", "text": "Compare them."},
    ]
    history: Any = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "two calls", "signature": "s"}, *calls]},
        {"role": "user", "content": results},
    ]
    client.messages.create(model="up", max_tokens=16, tools=[WEATHER], messages=history)  # type: ignore[list-item]
    sent = upstream.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_a", "call_b"] and sent[1]["content"] is None
    assert (sent[2]["tool_call_id"], sent[2]["content"]) == ("call_a", "18 C")
    assert (sent[3]["tool_call_id"], sent[3]["content"]) == ("call_b", "Error: boom")
    assert sent[4]["content"] == [{"type": "text", "text": "Compare them."}]


def test_streamed_tool_call(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="up",
        max_tokens=64,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather?"}],  # type: ignore[list-item]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.stop_reason == "tool_use"
    call = final.content[-1]
    assert call.type == "tool_use" and (call.id, call.name, call.input) == ("call_7", "get_weather", {"city": "Paris"})


def test_images_and_tool_choice_translate(client: anthropic.Anthropic, upstream: ToolUpstream) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    client.messages.create(
        model="up",
        max_tokens=8,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},  # type: ignore[list-item]
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "what is this?"}]}],  # type: ignore[list-item]
    )
    sent = upstream.requests[-1]
    assert sent["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False


def test_structured_output_becomes_a_json_schema_response_format(
    client: anthropic.Anthropic, upstream: ToolUpstream, gateway: GatewayServer
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    client.messages.create(
        model="up",
        max_tokens=8,
        messages=[{"role": "user", "content": "Where?"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    sent = upstream.requests[-1]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}
    body = {"model": "up", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    bad = httpx.post(gateway.url + "/messages", json={**body, "output_config": {"format": {"type": "yaml"}}})
    assert bad.status_code == 400 and "output_config.format" in bad.json()["error"]["message"]


def test_max_tokens_and_stop_sequences(client: anthropic.Anthropic, upstream: ToolUpstream) -> None:
    message = client.messages.create(
        model="up", max_tokens=2, stop_sequences=["\n\nHuman:"], messages=[{"role": "user", "content": "long"}]
    )
    assert message.stop_reason == "max_tokens"
    assert upstream.requests[-1]["stop"] == ["\n\nHuman:"]


def test_errors_have_anthropics_shape(client: anthropic.Anthropic, gateway: GatewayServer) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["type"] == "error"  # type: ignore[index]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(model="broken", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502 and failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    bare = httpx.post(gateway.url + "/messages", json={"model": "up", "messages": [{"role": "user", "content": "hi"}]})
    assert bare.status_code == 400
    assert bare.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "missing required field 'max_tokens'"},
    }
    bad = httpx.post(gateway.url + "/messages", content=b"{nope")
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("malformed JSON body")
    server_tool = {"type": "web_search_20250305", "name": "web_search"}
    body = {"model": "up", "max_tokens": 8, "tools": [server_tool], "messages": [{"role": "user", "content": "hi"}]}
    rejected = httpx.post(gateway.url + "/messages", json=body)
    flood = {"model": "up", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}] * 3000}
    many = httpx.post(gateway.url + "/messages", json=flood)
    assert many.status_code == 400 and "too many messages: 3000" in many.json()["error"]["message"]
    huge = httpx.post(gateway.url + "/messages", content=b" " * (8 * 1024 * 1024 + 1))  # over gateway.max_body_bytes
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "request_too_large"
    assert rejected.status_code == 400 and "web_search_20250305" in rejected.json()["error"]["message"]


def test_the_anthropic_client_lists_and_retrieves_models(client: anthropic.Anthropic) -> None:
    listed = [model.id for model in client.models.list()]
    assert {"up", "claude-sonnet-4-5", "sizewise"} <= set(listed)
    assert client.models.retrieve("claude-sonnet-4-5").display_name == "claude-sonnet-4-5"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-opus-9")


def test_count_tokens_estimates_without_calling(client: anthropic.Anthropic, upstream: ToolUpstream) -> None:
    sent = len(upstream.requests)
    text = "word " * 400  # 2,000 characters
    plain = client.messages.count_tokens(model="up", messages=[{"role": "user", "content": text}])
    with_tools = client.messages.count_tokens(
        model="up",
        messages=[{"role": "user", "content": text}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert 500 <= plain.input_tokens <= 510  # "user: " + 2,000 characters, / 4
    assert with_tools.input_tokens > plain.input_tokens + 30  # the tool schema counts
    assert len(upstream.requests) == sent


def test_a_named_model_without_its_key_is_an_api_error(upstream: ToolUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIZEWISE_TEST_ABSENT_KEY", raising=False)
    cloud = fake_model("cloud", "c", 2.0, upstream.base_url)
    cloud["settings"]["api_key_env"] = "SIZEWISE_TEST_ABSENT_KEY"
    spec = {"models": [fake_model("up", "up-model", 1.0, upstream.base_url), cloud], "gateway": {"log_url": "none"}}
    with GatewayServer(spec) as gw:
        client = anthropic.Anthropic(base_url=gw.url.removesuffix("/v1"), api_key="x", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as failed:
            client.messages.create(model="cloud", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 503
    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "SIZEWISE_TEST_ABSENT_KEY" in failed.value.body["error"]["message"]  # type: ignore[index]


def test_a_stream_cut_midway_ends_with_an_error_event(client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIStatusError, match="upstream stream failed"),
        client.messages.stream(
            model="cut", max_tokens=8, messages=[{"role": "user", "content": "one two three"}]
        ) as stream,
    ):
        for _ in stream:
            pass


def test_requests_are_logged_like_chat_completions(client: anthropic.Anthropic, gateway: GatewayServer) -> None:
    before = len(gateway.rows())
    client.messages.create(model="up", max_tokens=8, messages=[{"role": "user", "content": "log me"}])
    with client.messages.stream(model="up", max_tokens=8, messages=[{"role": "user", "content": "and me"}]) as stream:
        stream.get_final_message()
    rows = gateway.rows()[before:]
    assert [(row["status"], row["model"], row["prompt_tokens"], bool(row["stream"])) for row in rows] == [
        (200, "up", 11, False),
        (200, "up", 11, True),
    ]


def test_x_api_key_is_the_gateway_key(upstream: ToolUpstream) -> None:
    keys = [{"name": "team", "sha256": hash_key("secret")}]
    spec = {
        "models": [fake_model("up", "up-model", 1.0, upstream.base_url)],
        "gateway": {"log_url": "none", "api_keys": keys},
    }
    with GatewayServer(spec) as gw:
        base = gw.url.removesuffix("/v1")
        good = anthropic.Anthropic(base_url=base, api_key="secret", max_retries=0)
        assert good.messages.create(model="up", max_tokens=8, messages=[{"role": "user", "content": "hi"}]).content
        with pytest.raises(anthropic.AuthenticationError) as denied:
            anthropic.Anthropic(base_url=base, api_key="wrong", max_retries=0).messages.create(
                model="up", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
