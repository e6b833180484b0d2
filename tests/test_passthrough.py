"""The chat API passes through the gateway whole (issue #18, item 1; the stream read timeout of item 5).

The official ``openai`` client talks to a live gateway whose model is a recording upstream on 127.0.0.1: what
the client sends reaches the upstream as sent (tools, tool_choice, n, max_completion_tokens, user, metadata,
reasoning_effort, stream_options...), and what the upstream answers comes back (tool calls, streamed or not,
``content: null``, logprobs, every choice of ``n``, its ``id`` and ``system_fingerprint``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from fakes import GatewayServer, ThreadedServer, fake_model, read_body
from sizewise.catalog.schema import ModelSpec

FIELDS = ModelSpec.model_fields

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALLS = [
    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
]
#: A conversation an agent sends on its second turn: its earlier tool call and the tool's answer in history.
HISTORY = [
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALLS[0]]},
    {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
    {"role": "user", "content": "And Oslo?"},
]
LOGPROBS = {"content": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}], "refusal": None}
BASE = {"id": "chatcmpl-upstream-7", "created": 1700000000, "system_fingerprint": "fp_up"}


class Recording:
    """An OpenAI-compatible upstream that records each request body and answers by the requested model:
    ``tools`` (two parallel tool calls), ``text`` (n choices, logprobs when asked), ``slow`` (a stream of
    4 events ``pause_s`` apart), ``stall`` (one event, then silence for ``stall_s``)."""

    def __init__(self, pause_s: float = 0.3, stall_s: float = 3.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.pause_s, self.stall_s = pause_s, stall_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive))
        self.bodies.append(body)
        if body.get("stream"):
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            )
            for event, pause in self._events(body):
                await send({"type": "http.response.body", "body": event, "more_body": True})
                await asyncio.sleep(pause)
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        data = json.dumps(self._answer(body)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if body["model"] == "tools":
            message = {"role": "assistant", "content": None, "tool_calls": CALLS, "refusal": None}
            choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}]
        else:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": f"answer {i}"},
                    "logprobs": LOGPROBS if body.get("logprobs") else None,
                    "finish_reason": "stop",
                }
                for i in range(body.get("n", 1))
            ]
        return {**BASE, "object": "chat.completion", "model": body["model"], "choices": choices, "usage": usage}

    def _events(self, body: dict[str, Any]) -> list[tuple[bytes, float]]:
        def event(choices: list[dict[str, Any]], **more: Any) -> bytes:
            chunk = {**BASE, "object": "chat.completion.chunk", "model": body["model"], "choices": choices, **more}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        def delta(content: Any = None, finish: str | None = None, **more: Any) -> dict[str, Any]:
            return {"index": 0, "delta": {"content": content, **more}, "logprobs": None, "finish_reason": finish}

        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if body["model"] == "tools":  # OpenAI's shape: the arguments arrive in pieces, one call after another
            pieces = []
            for index, call in enumerate(CALLS):
                head = {"index": index, "id": call["id"], "type": "function"}
                args = call["function"]["arguments"]
                pieces.append({**head, "function": {"name": "get_weather", "arguments": ""}})
                pieces += [{"index": index, "function": {"arguments": args[:6]}}]
                pieces += [{"index": index, "function": {"arguments": args[6:]}}]
            events = [event([delta(role="assistant", tool_calls=[piece])]) for piece in pieces]
            events.append(event([delta(finish="tool_calls")]))
        else:
            events = [event([delta(word)]) for word in ["one ", "two ", "three ", "four"]]
            events.append(event([delta(finish="stop")]))
            for index in range(1, body.get("n", 1)):  # n > 1: the other choices, as OpenAI interleaves them
                other = {"index": index, "delta": {"content": f"choice {index}"}, "logprobs": None}
                events.insert(1, event([{**other, "finish_reason": None}]))
                events.insert(-1, event([{"index": index, "delta": {}, "logprobs": None, "finish_reason": "length"}]))
        events.append(event([], usage=usage))
        pause = self.pause_s if body["model"] == "slow" else 0.0
        timed = [(e, pause) for e in events]
        if body["model"] == "stall":
            timed[0] = (timed[0][0], self.stall_s)
        return timed


class Upstream(ThreadedServer):
    """The recording upstream served by uvicorn in a thread."""

    force_exit = True

    def __init__(self, app: Recording) -> None:
        self.app = app
        super().__init__(app)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Recording]:
    app = Recording()
    with Upstream(app) as up:
        app.base_url = f"http://127.0.0.1:{up.port}/v1"  # type: ignore[attr-defined]
        yield app


@pytest.fixture(scope="module")
def gateway(upstream: Recording) -> Iterator[GatewayServer]:
    base = upstream.base_url  # type: ignore[attr-defined]
    # Where the catalog knows capabilities, these models have every one the requests below need.
    caps = {"capabilities": ["tools", "json_schema", "logprobs", "reasoning"]} if "capabilities" in FIELDS else {}
    models = [
        fake_model(name, name, size, base, timeout_s=0.8, **caps)
        for name, size in (("tools", 1.0), ("text", 2.0), ("slow", 3.0), ("stall", 4.0))
    ]
    with GatewayServer({"models": models, "gateway": {"request_timeout_s": 30}}, log_url="none") as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=20)


def test_tool_calls_round_trip(client: openai.OpenAI, upstream: Recording) -> None:
    """Parallel tool calls come back as the upstream sent them, with ``content: null`` and its ids kept."""
    raw = client.chat.completions.with_raw_response.create(
        model="tools", messages=HISTORY, tools=TOOLS, tool_choice="auto", parallel_tool_calls=True
    )
    answer = raw.parse()
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [call.model_dump() for call in choice.message.tool_calls or []] == CALLS
    assert (answer.id, answer.created, answer.system_fingerprint) == (BASE["id"], BASE["created"], "fp_up")
    assert raw.headers["x-request-id"] and answer.model_extra and answer.model_extra["sizewise"]["model"] == "tools"
    assert upstream.bodies[-1]["messages"] == HISTORY  # the assistant's null content and tool turn, unchanged


def test_tool_calls_round_trip_streamed(client: openai.OpenAI, upstream: Recording) -> None:
    """Streamed tool call deltas reach the client in order; its include_usage gets OpenAI's usage chunk."""
    stream = client.chat.completions.create(
        model="tools", messages=HISTORY, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    )
    calls: dict[int, dict[str, Any]] = {}
    finish, usage_only, ids = None, [], set()
    for chunk in stream:
        ids.add(chunk.id)
        if not chunk.choices:
            usage_only.append(chunk.usage)
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for piece in choice.delta.tool_calls or []:
            call = calls.setdefault(piece.index, {"id": piece.id, "type": "function", "function": {"arguments": ""}})
            if piece.function and piece.function.name:
                call["function"]["name"] = piece.function.name
            call["function"]["arguments"] += (piece.function.arguments or "") if piece.function else ""
    assert [calls[i] for i in sorted(calls)] == [
        {
            "id": c["id"],
            "type": "function",
            "function": {"arguments": c["function"]["arguments"], "name": "get_weather"},
        }
        for c in CALLS
    ]
    assert finish == "tool_calls" and ids == {BASE["id"]}
    assert len(usage_only) == 1 and usage_only[0] is not None and usage_only[0].total_tokens == 18
    assert upstream.bodies[-1]["stream_options"] == {"include_usage": True} and upstream.bodies[-1]["tools"] == TOOLS


def test_the_upstream_receives_the_fields_the_client_sent(client: openai.OpenAI, upstream: Recording) -> None:
    """Every field, as sent: max_completion_tokens is not renamed, n/user/metadata/reasoning_effort arrive;
    every choice of n and the logprobs object come back."""
    sent: dict[str, Any] = {
        "model": "text",
        "messages": HISTORY,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        "n": 2,
        "logprobs": True,
        "top_logprobs": 2,
        "max_completion_tokens": 50,
        "reasoning_effort": "low",
        "user": "user-42",
        "metadata": {"team": "a"},
        "seed": 7,
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "frequency_penalty": 0.1,
        "logit_bias": {"50256": -100},
        "service_tier": "default",
        "store": False,
    }
    answer = client.chat.completions.create(**sent)
    assert upstream.bodies[-1] == sent
    assert [c.message.content for c in answer.choices] == ["answer 0", "answer 1"]
    assert answer.choices[0].logprobs is not None and answer.choices[0].logprobs.model_dump() == LOGPROBS
    client.chat.completions.create(model="text", messages=HISTORY, max_tokens=9)
    assert upstream.bodies[-1]["max_tokens"] == 9 and "max_completion_tokens" not in upstream.bodies[-1]


def test_logprobs_only_when_asked_and_no_usage_chunk_unless_asked(client: openai.OpenAI, upstream: Recording) -> None:
    answer = client.chat.completions.create(model="text", messages=HISTORY)
    assert answer.choices[0].logprobs is None and len(answer.choices) == 1
    chunks = list(client.chat.completions.create(model="text", messages=HISTORY, stream=True))
    assert all(chunk.choices for chunk in chunks)  # no empty-choices usage chunk: the client did not ask
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three four"
    assert upstream.bodies[-1]["stream_options"] == {"include_usage": True}  # sizewise's own need


def test_a_stream_longer_than_the_read_timeout_is_not_cut(client: openai.OpenAI) -> None:
    """Events 0.3 s apart for 1.5 s under timeout_s 0.8: the timeout is per read (a gap), not per stream."""
    started = time.perf_counter()
    chunks = list(client.chat.completions.create(model="slow", messages=HISTORY, stream=True))
    assert time.perf_counter() - started > 0.8 * 1.5
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three four"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_gap_longer_than_the_read_timeout_ends_the_stream_with_an_error(gateway: GatewayServer) -> None:
    """The first event came, then 3 s of silence under a 0.8 s read timeout: an error event, not a hang."""
    started = time.perf_counter()
    body = {"model": "stall", "messages": HISTORY, "stream": True}
    with httpx.stream("POST", f"{gateway.url}/chat/completions", json=body, timeout=20) as response:
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert time.perf_counter() - started < 2.5
    assert '"content": "one "' in events[0]
    error = json.loads(events[-1][5:])["error"]
    assert error["code"] == "upstream_stream_cut" and "timed out" in error["message"]


def test_a_tool_choice_naming_no_tool_is_a_400(gateway: GatewayServer, upstream: Recording) -> None:
    before = len(upstream.bodies)
    forced = {"type": "function", "function": {"name": "get_time"}}
    body = {"model": "tools", "messages": HISTORY, "tools": TOOLS, "tool_choice": forced}
    response = httpx.post(f"{gateway.url}/chat/completions", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert "tool_choice names function 'get_time', which is not in tools" in response.json()["error"]["message"]
    assert len(upstream.bodies) == before  # refused before any model was asked


def test_a_cascade_answer_streamed_once_chosen_keeps_its_tool_calls() -> None:
    """A cascade decides on a whole answer, then streams it: the tool calls and upstream ids go with it."""
    from sizewise.core.chat import ChatResult
    from sizewise.serve.call import replay

    result = ChatResult(model="m", text="", finish_reason="tool_calls", tool_calls=CALLS, upstream=dict(BASE))

    async def collect() -> list[Any]:
        return [chunk async for chunk in replay(result)]

    first, last = asyncio.run(collect())
    assert first.tool_calls == [{"index": i, **call} for i, call in enumerate(CALLS)]
    assert first.upstream["id"] == BASE["id"] and last.finish_reason == "tool_calls"


def test_every_choice_of_n_is_streamed(client: openai.OpenAI, upstream: Recording) -> None:
    chunks = list(client.chat.completions.create(model="text", messages=HISTORY, n=3, stream=True))
    by_index: dict[int, str] = {}
    finish: dict[int, str | None] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            by_index[choice.index] = by_index.get(choice.index, "") + (choice.delta.content or "")
            finish[choice.index] = choice.finish_reason or finish.get(choice.index)
    assert by_index == {0: "one two three four", 1: "choice 1", 2: "choice 2"}
    assert finish == {0: "stop", 1: "length", 2: "length"} and upstream.bodies[-1]["n"] == 3
