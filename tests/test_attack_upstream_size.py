"""A broken upstream that never stops sending (a whole answer, one stream line, an error body) costs the
gateway a bounded read, not its memory: the call fails (502 naming the model) once the cap is passed.
A real gateway on 127.0.0.1 and an upstream that sends 1 MiB pieces until the gateway hangs up (1 GiB at most).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fakes import GatewayServer, ThreadedServer, send_until_gone

LIMIT = 1 << 30


class Endless(ThreadedServer):
    """``mode``: ``answer`` (a JSON answer that never closes), ``line`` (an SSE ``data:`` line without end),
    ``error`` (a 500 whose body never ends). ``sent`` counts what left."""

    def __init__(self) -> None:
        self.mode, self.sent = "answer", 0
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        status, kind = (500, b"application/json") if self.mode == "error" else (200, b"application/json")
        if self.mode == "line":
            kind = b"text/event-stream"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]})
        head = b'data: {"choices": [{"delta": {"content": "' if self.mode == "line" else b'{"choices": [{"message": "'
        await send({"type": "http.response.body", "body": head, "more_body": True})
        await send_until_gone(receive, send, LIMIT, self._count)

    def _count(self, size: int) -> None:
        self.sent += size


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[GatewayServer, Endless]]:
    with Endless() as upstream:
        settings = {"base_url": upstream.base_url, "model": "m", "timeout_s": 60}
        model = {"name": "m", "context_window": 8192, "location": "remote", "backend": "openai", "settings": settings}
        with GatewayServer({"models": [model], "gateway": {"log_url": "none"}}) as gateway:
            yield gateway, upstream


@pytest.mark.parametrize("mode", ["answer", "line", "error"])
def test_an_endless_upstream_answer_is_cut_off(servers: tuple[GatewayServer, Endless], mode: str) -> None:
    gateway, upstream = servers
    upstream.mode, upstream.sent = mode, 0
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.APIStatusError) as caught:
        if mode == "line":
            for _ in client.chat.completions.create(model="m", messages=messages, stream=True):  # type: ignore[arg-type]
                pass
        else:
            client.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
    assert caught.value.status_code in (502, 503) and "larger than" in caught.value.message, caught.value.message
    assert upstream.sent < 256 << 20  # hung up early: what was read, plus what loopback had in flight
