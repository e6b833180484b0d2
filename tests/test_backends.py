"""Backends against real parts: a real HTTP upstream on 127.0.0.1, a recorded table, the tiny GGUF model."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sizewise.backends.base import BackendError, ChatChunk, ChatRequest
from sizewise.backends.factory import make_backend
from sizewise.backends.openai_compat import OpenAICompatBackend
from sizewise.backends.replay import ReplayBackend
from sizewise.catalog import load_catalog
from sizewise.catalog.schema import ModelSpec
from sizewise.errors import ConfigError, UnknownModelError
from sizewise.evaluation.table import OutcomeTable

SEEN: list[dict[str, Any]] = []


class Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible fake whose behaviour is picked by the requested model name."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _event(self, payload: str) -> None:
        data = f"data: {payload}\n\n".encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        SEEN.append({"body": body, "auth": self.headers.get("Authorization"), "path": self.path})
        model = body["model"]
        if model == "slow":
            time.sleep(1.0)
        if model == "boom":
            return self._json(500, {"error": {"message": "internal"}})
        if model == "bad":
            return self._json(400, {"error": {"message": "bad request"}})
        if not body.get("stream"):
            content = [{"token": "Hi", "logprob": -0.1}, {"token": "!", "logprob": -0.5}]
            return self._json(
                200,
                {
                    "choices": [
                        {
                            "message": {"role": "assistant", "content": "Hi!"},
                            "finish_reason": "stop",
                            "logprobs": {"content": content},
                        }
                    ],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 2},
                },
            )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in ("Hel", "lo"):
            self._event(json.dumps({"choices": [{"delta": {"content": piece}, "finish_reason": None}]}))
        if model == "cut":  # drop the connection mid-stream, without the terminating chunk
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._event(json.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}]}))
        self._event(json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}))
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def remote(base_url: str, model: str, **settings: Any) -> OpenAICompatBackend:
    spec = ModelSpec(
        name=f"up-{model}",
        context_window=4096,
        location="remote",
        backend="openai",
        settings={"base_url": base_url, "model": model, "timeout_s": 0.3, **settings},
    )
    backend = make_backend(spec)
    assert isinstance(backend, OpenAICompatBackend)
    return backend


HELLO = ChatRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=8, logprobs=True)


async def collect(backend: Any, request: ChatRequest = HELLO) -> list[ChatChunk]:
    return [chunk async for chunk in backend.stream(request)]


def test_openai_complete_with_usage_logprobs_and_key(upstream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UP_KEY", "sk-test")
    result = asyncio.run(remote(upstream, "ok", api_key_env="UP_KEY").complete(HELLO))
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ("Hi!", 7, 2)
    assert result.tokens == ["Hi", "!"] and result.logprobs == [-0.1, -0.5]
    assert result.model == "up-ok" and result.latency_s > 0
    assert SEEN[-1]["auth"] == "Bearer sk-test" and SEEN[-1]["path"] == "/v1/chat/completions"
    assert SEEN[-1]["body"]["max_tokens"] == 8 and SEEN[-1]["body"]["logprobs"] is True


def test_openai_missing_key_env_is_not_retryable(upstream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UP_KEY", raising=False)
    with pytest.raises(BackendError, match="UP_KEY") as info:
        asyncio.run(remote(upstream, "ok", api_key_env="UP_KEY").complete(HELLO))
    assert not info.value.retryable


def test_openai_stream(upstream: str) -> None:
    chunks = asyncio.run(collect(remote(upstream, "ok")))
    assert "".join(c.text for c in chunks) == "Hello"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].completion_tokens == 2 and chunks[-1].prompt_tokens == 5


@pytest.mark.parametrize(
    ("model", "stream", "retryable", "message"),
    [
        ("slow", False, True, "timed out"),
        ("slow", True, True, "timed out"),
        ("boom", False, True, "answered 500"),
        ("boom", True, True, "answered 500"),
        ("bad", False, False, "answered 400"),
        ("cut", True, True, "upstream"),
    ],
)
def test_openai_errors_are_mapped(upstream: str, model: str, stream: bool, retryable: bool, message: str) -> None:
    backend = remote(upstream, model)
    with pytest.raises(BackendError, match=message) as info:
        asyncio.run(collect(backend) if stream else backend.complete(HELLO))
    assert info.value.retryable is retryable


def test_openai_cut_stream_yields_the_start_first(upstream: str) -> None:
    pieces: list[str] = []

    async def run() -> None:
        async for chunk in remote(upstream, "cut").stream(HELLO):
            pieces.append(chunk.text)

    with pytest.raises(BackendError):
        asyncio.run(run())
    assert "".join(pieces) == "Hello"  # the part before the cut arrived; the error says the rest did not


def test_openai_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BackendError, match="unreachable") as info:
        asyncio.run(remote(f"http://127.0.0.1:{port}/v1", "ok").complete(HELLO))
    assert info.value.retryable


def table() -> OutcomeTable:
    prompts = pd.DataFrame({"prompt_id": ["a", "b"], "text": ["What is 2+2?", "Name a colour."]})
    responses = np.array([["4", "Four."], ["red", None]], dtype=object)
    return OutcomeTable(
        "t",
        prompts,
        ["weak", "strong"],
        quality=np.ones((2, 2)),
        responses=responses,
        tokens_in=np.full((2, 2), 5.0),
        tokens_out=np.array([[1.0, 2.0], [1.0, np.nan]]),
    )


def test_replay_answers_by_prompt_text() -> None:
    backend = ReplayBackend(table(), model="strong")
    ask = ChatRequest(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is 2+2?"}])
    result = asyncio.run(backend.complete(ask))
    assert (result.text, result.prompt_tokens, result.completion_tokens, result.model) == ("Four.", 5, 2, "strong")
    chunks = asyncio.run(collect(backend, ask))
    assert "".join(c.text for c in chunks) == "Four." and chunks[-1].finish_reason == "stop"
    with pytest.raises(BackendError, match="no recorded answer") as info:  # recorded as missing
        asyncio.run(backend.complete(ChatRequest(messages=[{"role": "user", "content": "Name a colour."}])))
    assert not info.value.retryable
    with pytest.raises(BackendError, match="no recorded answer"):
        asyncio.run(backend.complete(ChatRequest(messages=[{"role": "user", "content": "unknown"}])))
    with pytest.raises(UnknownModelError):
        ReplayBackend(table(), model="nope")


def test_replay_from_a_saved_table_through_the_factory(tmp_path: Any) -> None:
    path = table().save(tmp_path / "t.parquet")
    spec = ModelSpec(name="weak", context_window=100, backend="replay", settings={"table": str(path)})
    result = asyncio.run(
        make_backend(spec).complete(ChatRequest(messages=[{"role": "user", "content": "Name a colour."}]))
    )
    assert result.text == "red"


def test_factory_rejects_bad_settings() -> None:
    spec = ModelSpec(name="x", context_window=100, backend="openai", settings={"base_url": "ftp://x"})
    with pytest.raises(ConfigError, match="model 'x': bad openai settings"):
        make_backend(spec)


# --- the real tiny model -------------------------------------------------------------------------------------

TINY_Q = ChatRequest(
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=12,
    temperature=0,
    logprobs=True,
)


@pytest.fixture(scope="module")
def tiny() -> Any:
    catalog = load_catalog(None)
    return make_backend(catalog.get("smollm2-135m"), catalog)


@pytest.mark.model
@pytest.mark.slow
def test_tiny_complete_stream_and_logprobs(tiny: Any) -> None:
    async def run() -> tuple[Any, list[ChatChunk], dict[str, float]]:
        result = await tiny.complete(TINY_Q)
        chunks = await collect(tiny, TINY_Q)
        choices = await tiny.choice_logprobs(TINY_Q, ["Paris", "London"])
        return result, chunks, choices

    result, chunks, choices = asyncio.run(run())
    assert result.text and result.prompt_tokens > 5 and 0 < result.completion_tokens <= 12
    assert result.logprobs is not None and result.tokens is not None
    assert all(lp <= 0 for lp in result.logprobs)
    if result.finish_reason == "length":  # every generated token's logprob was recorded, in order
        assert len(result.logprobs) == result.completion_tokens and "".join(result.tokens) == result.text
    # Greedy decoding picks the most likely first token, so no candidate can beat its logprob.
    assert result.logprobs[0] >= max(choices.values()) - 1e-4
    assert set(choices) == {"Paris", "London"} and all(v < 0 for v in choices.values())
    assert "".join(c.text for c in chunks) == result.text  # same greedy answer streamed
    assert chunks[-1].finish_reason == result.finish_reason and chunks[-1].prompt_tokens == result.prompt_tokens


@pytest.mark.model
@pytest.mark.slow
def test_tiny_serialises_concurrent_requests_and_rejects_overlong_prompts(tiny: Any) -> None:
    short = ChatRequest(messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0)
    huge = ChatRequest(messages=[{"role": "user", "content": "word " * 10_000}], max_tokens=4)

    async def run() -> list[Any]:
        return await asyncio.gather(tiny.complete(short), tiny.complete(short), tiny.complete(short))

    starts = tiny.process().starts
    results = asyncio.run(run())
    assert len({r.text for r in results}) == 1 and results[0].text  # same greedy answer, no interleaving
    other = make_backend(load_catalog(None).get("smollm2-135m"))
    assert other.process() is tiny.process() and tiny.process().starts == starts  # one worker, loaded once
    with pytest.raises(BackendError, match="context window") as info:
        asyncio.run(tiny.complete(huge))
    assert not info.value.retryable and info.value.status == 400


@pytest.mark.model
@pytest.mark.slow
def test_tiny_stops_generating_when_the_caller_gives_up(tiny: Any) -> None:
    # A timed-out call's worker thread cannot be killed; unless its generation stops, the next call on the
    # same model (a retry) waits for all of it.
    long = ChatRequest(
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}], max_tokens=400, temperature=0
    )
    short = ChatRequest(messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0)

    async def run() -> tuple[Any, Any]:
        full = await tiny.complete(long)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tiny.complete(long), timeout=full.latency_s / 10)
        return full, await tiny.complete(short)

    full, after = asyncio.run(run())
    assert full.completion_tokens == 400  # the story runs to max_tokens: there is a long generation to stop
    # The next call's latency counts its wait for the model: far less than the rest of the abandoned story.
    assert after.text and after.latency_s < full.latency_s / 3


@pytest.mark.model
@pytest.mark.slow
def test_tiny_takes_text_parts_and_null_assistant_content(tiny: Any) -> None:
    parts = ChatRequest(
        messages=[
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": None},
            {"role": "user", "content": [{"type": "text", "text": "Say hi."}]},
        ],
        max_tokens=4,
        temperature=0,
    )
    assert asyncio.run(tiny.complete(parts)).text  # chat templates want string content: parts are joined
    assert asyncio.run(collect(tiny, parts))[-1].finish_reason
    assert asyncio.run(tiny.choice_logprobs(parts, ["Hi", "No"]))


def test_llamacpp_refuses_parts_other_than_text() -> None:
    from sizewise.backends.llama_runtime import text_messages as _text_messages

    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert _text_messages("m", [{"role": "user", "content": parts}]) == [{"role": "user", "content": "a\nb"}]
    with pytest.raises(BackendError, match="takes text only, not file parts") as info:
        _text_messages("m", [{"role": "user", "content": [{"type": "file", "file": {}}]}])
    assert not info.value.retryable and info.value.status == 400
