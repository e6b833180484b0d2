"""Servers for bench/reliability.py, all on 127.0.0.1: the gateway in its own process (so its memory is
its own), an upstream that reports token usage and records every body it receives, and a raw-socket
upstream that sends a 1xx interim response before each answer."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from fake_upstream import ThreadedServer, free_port, read_body

BENCH = Path(__file__).resolve().parent


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


class Gateway:
    """``create_app(catalog)`` served by uvicorn in a child process: ``with Gateway(catalog) as gw: gw.url``."""

    def __init__(self, catalog: dict[str, Any]) -> None:
        self.port = free_port()
        self._file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump(catalog, self._file)
        self._file.close()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The gateway's root URL (no /v1)."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Gateway:
        cmd = [sys.executable, str(BENCH / "reliability.py"), "--serve", self._file.name, str(self.port)]
        # stderr to a file, not a pipe: a pipe nobody reads would block a gateway that logs a lot.
        with Path(self._file.name + ".log").open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {Path(self._file.name + '.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("gateway not up after 60 s")

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            self.proc.terminate()  # uvicorn shuts down cleanly on SIGTERM, so the request log is flushed
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        Path(self._file.name).unlink(missing_ok=True)
        Path(self._file.name + ".log").unlink(missing_ok=True)


def serve(catalog_file: str, port: int) -> None:
    """Child process entry point of :class:`Gateway`."""
    from sizewise.catalog.schema import CatalogSpec
    from sizewise.gateway.app import create_app

    spec = CatalogSpec.model_validate(json.loads(Path(catalog_file).read_text()))
    uvicorn.run(create_app(spec), host="127.0.0.1", port=port, log_level="critical", access_log=False)


def usage_tokens(text: str) -> int:
    """Tokens an upstream would bill for ``text``: one per non-ASCII character (CJK is about one token per
    character in real tokenizers), one per four ASCII characters."""
    wide = sum(1 for char in text if ord(char) > 127)
    return wide + math.ceil((len(text) - wide) / 4)


class UsageApp:
    """An OpenAI-compatible upstream answering ``ok``, billing every token it may (``max_tokens`` used in
    full) and recording each body: ``bills`` is (upstream model, prompt tokens, completion tokens)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.bills: list[tuple[str, int, int]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.bodies.append(body)
        request = json.loads(body)
        text = "".join(str(m.get("content", "")) for m in request.get("messages", []))
        prompt, completion = usage_tokens(text), int(request.get("max_tokens") or 16)
        self.bills.append((str(request.get("model")), prompt, completion))
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if request.get("stream"):
            chunk = {
                "id": "u",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": request.get("model"),
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": usage,
            }
            await _send(send, b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n", "text/event-stream")
            return
        answer = {
            "id": "u",
            "object": "chat.completion",
            "created": 0,
            "model": request.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage,
        }
        await _send(send, json.dumps(answer).encode(), "application/json")


async def _send(send: Any, body: bytes, media: str) -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ThreadServer(ThreadedServer):
    """An ASGI app served by uvicorn in a background thread: ``with ThreadServer(app) as s: s.base_url``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        super().__init__(app)


class InterimUpstream:
    """A raw keep-alive HTTP/1.1 upstream that sends ``103 Early Hints`` (or ``100 Continue``) and then
    the answer, which echoes the request's last message: a client that takes the 1xx as the answer
    leaves the real one on the connection for the next request to read."""

    def __init__(self, interim: bytes = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n") -> None:
        self.interim = interim
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                request = json.loads(await reader.readexactly(length))
                content = str(request["messages"][-1]["content"])
                answer = {
                    "id": "i",
                    "object": "chat.completion",
                    "created": 0,
                    "model": request.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"echo: {content}"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                body = json.dumps(answer).encode()
                writer.write(self.interim)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
            writer.close()

    def __enter__(self) -> InterimUpstream:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        )
        self._server = started.result(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
