"""A fast fake OpenAI-compatible upstream on 127.0.0.1 that can inject faults, for tests and benchmarks.

The requested ``model`` picks the behaviour, so one server stands in for several upstreams:

* ``*ok*`` (anything not below): answers at once (``echo: <first words of the last message>``);
* ``fail500``: HTTP 500 with an OpenAI-style error body;
* ``timeout``: sleeps ``--timeout-sleep`` seconds (default 30) before answering;
* ``cut``: sends the headers and part of the body, then drops the connection (stream or not);
* ``cutlate``: streams two chunks, then drops the connection;
* ``flaky``: fails with 503 on every other call (1st, 3rd, ...), answers on the others.

Connection refused needs no server: point a model at a port nothing listens on (:func:`free_port`).
Run standalone: ``python bench/fake_upstream.py --port 9100``; in-process: :class:`FakeUpstream`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Self

import uvicorn


async def read_body(receive: Any) -> bytes:
    """The whole body of an ASGI HTTP request (every ``http.request`` message until ``more_body`` is false)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def send_until_gone(receive: Any, send: Any, limit: int, count: Callable[[int], None]) -> None:
    """Send 1 MiB chunks (after the caller's response start) until the client hangs up or ``limit`` bytes are
    out, then end the body, calling ``count`` with each chunk's size as it goes. An endless upstream for
    size-cap tests: after a disconnect uvicorn's ``send`` no longer waits, so ``receive`` is watched for it."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    chunk, sent = b"a" * (1 << 20), 0
    while sent < limit and not gone.is_set():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += len(chunk)
        count(len(chunk))
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})
    watcher.cancel()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Cut(Exception):
    """Raised inside a response body to make uvicorn drop the connection."""


class FakeApp:
    """The ASGI app. ``calls`` counts requests per model name."""

    def __init__(self, timeout_sleep: float = 30.0, words: int = 8) -> None:
        self.timeout_sleep = timeout_sleep
        self.words = words
        self.calls: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = await read_body(receive)
        if scope["path"].endswith("/models"):
            await _send(send, 200, {"object": "list", "data": [{"id": "fake-ok", "object": "model"}]})
            return
        try:
            request = json.loads(body)
        except ValueError:
            await _send(send, 400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
            return
        model = str(request.get("model", "ok"))
        self.calls[model] += 1
        if "fail500" in model:
            await _send(send, 500, {"error": {"message": "injected failure", "type": "server_error"}})
            return
        if "flaky" in model and self.calls[model] % 2 == 1:
            await _send(send, 503, {"error": {"message": "injected flake", "type": "server_error"}})
            return
        if "timeout" in model:
            await asyncio.sleep(self.timeout_sleep)
        messages = request.get("messages") or [{}]
        last = messages[-1].get("content") if isinstance(messages[-1], dict) else ""
        words = ["echo:", *str(last).split()[: self.words]]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
        if request.get("stream"):
            await self._stream(send, model, words, prompt_tokens)
            return
        if "cut" in model:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"500")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"id": "x", "choices": [', "more_body": True})
            raise _Cut("injected cut")
        await _send(send, 200, _completion(model, " ".join(words), prompt_tokens, len(words)))

    async def _stream(self, send: Any, model: str, words: list[str], prompt_tokens: int) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        if "cut" in model and "cutlate" not in model:
            await send({"type": "http.response.body", "body": b'data: {"id": ', "more_body": True})
            raise _Cut("injected cut")
        for i, word in enumerate(words):
            if "cutlate" in model and i == 2:
                raise _Cut("injected late cut")
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                    "more_body": True,
                }
            )
        final = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            },
        }
        await send(
            {
                "type": "http.response.body",
                "body": b"data: " + json.dumps(final).encode() + b"\n\n" + b"data: [DONE]\n\n",
            }
        )


async def send_answer(send: Any, model: str, text: str, usage: dict[str, int], *, stream: bool = False) -> None:
    """Answer a chat request with ``text``: one JSON completion, or (``stream``) a content event, a final event
    with ``finish_reason`` and ``usage``, then ``[DONE]``. For test upstreams that only record or bill."""
    if not stream:
        await _send(send, 200, {**_completion(model, text, 0, 0), "usage": usage})
        return
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage},
    ]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for event in events:
        await send({"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _completion(model: str, text: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def _send(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ThreadedServer:
    """An ASGI app served by uvicorn in a daemon thread on a free 127.0.0.1 port; the start/stop code every
    in-process fake shares. A subclass keeps its own ``app`` and passes it up:
    ``super().__init__(self.app)``; then ``with Sub() as s: s.base_url``.

    ``config`` overrides the uvicorn defaults here (no lifespan, ASGI 3, quiet). ``__enter__`` waits up to
    ``start_timeout_s`` for the server to listen and raises RuntimeError if it does not (or its thread dies);
    ``__exit__`` asks it to stop (at once with ``force_exit``) and joins the thread for ``stop_timeout_s``.
    """

    start_timeout_s = 10.0
    stop_timeout_s = 5.0
    force_exit = False

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        options = {"log_level": "critical", "lifespan": "off", "interface": "asgi3", **config}
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            name = f"{type(self).__name__} on 127.0.0.1:{self.port}"
            if not self.thread.is_alive():
                raise RuntimeError(f"{name} stopped before it started listening (port taken? see uvicorn's error)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start within {self.start_timeout_s:g}s")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.server.force_exit = self.force_exit
        self.thread.join(timeout=self.stop_timeout_s)


class FakeUpstream(ThreadedServer):
    """The fake server in a background thread: ``with FakeUpstream() as up: up.base_url``."""

    force_exit = True

    def __init__(self, port: int | None = None, timeout_sleep: float = 30.0) -> None:
        self.app = FakeApp(timeout_sleep=timeout_sleep)
        super().__init__(self.app, port, lifespan="on", timeout_graceful_shutdown=1)

    @property
    def calls(self) -> Counter[str]:
        """Requests received, per model name."""
        return self.app.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--timeout-sleep", type=float, default=30.0)
    args = parser.parse_args()
    uvicorn.run(
        FakeApp(timeout_sleep=args.timeout_sleep),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
