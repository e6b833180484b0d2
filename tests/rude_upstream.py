"""A rude raw-socket HTTP/1.1 upstream on 127.0.0.1 for the upstream-client tests: it writes its bytes by
hand, as real servers and middleboxes may (1xx before the answer, trailers, resets, redirects, slow streams),
and acts as a forward proxy (absolute-form requests, ``CONNECT`` tunnels)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["PIECES", "RudeUpstream", "Seen"]

PIECES = ["one ", "two ", "three ", "four"]


@dataclass
class Seen:
    """One request as the upstream read it."""

    method: str
    target: str
    body: dict[str, Any]
    connection: int


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _echo(body: dict[str, Any]) -> str:
    return "echo: " + str(body["messages"][-1]["content"])


def _completion(body: dict[str, Any]) -> bytes:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    choice = {"index": 0, "message": {"role": "assistant", "content": _echo(body)}, "finish_reason": "stop"}
    answer = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}
    return json.dumps({**answer, "usage": usage}).encode()


def _events(body: dict[str, Any], pieces: list[str]) -> list[bytes]:
    events = [_sse({"choices": [{"index": 0, "delta": {"content": piece}}]}) for piece in pieces]
    usage = {"prompt_tokens": 3, "completion_tokens": len(pieces)}
    events.append(_sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}))
    return [*events, b"data: [DONE]\n\n"]


async def _tunnel(target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A forward proxy's ``CONNECT host:port``: bytes both ways until either side closes."""
    host, _, port = target.rpartition(":")
    far_reader, far_writer = await asyncio.open_connection(host, int(port))
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    await asyncio.gather(pipe(reader, far_writer), pipe(far_reader, writer), return_exceptions=True)


class RudeUpstream:
    """A raw HTTP/1.1 server in a thread; the request's ``model`` picks how rude the answer is.

    ``ok`` / ``proxied``: plain answer; ``hints``: ``103 Early Hints`` and ``100 Continue`` first; ``trailer``:
    chunked with a trailer; ``reset``: reads the request, then resets the connection; ``hangup``: answers,
    then closes; ``fail500``: a 500 on a kept-alive connection; ``redirect``: 307 to ``/v2/...``; ``slow``:
    a stream with a pause between events. As a proxy it answers absolute-form requests itself and tunnels
    ``CONNECT``.
    """

    def __init__(self, tls: ssl.SSLContext | None = None, pause_s: float = 0.3) -> None:
        self.tls, self.pause_s = tls, pause_s
        self.seen: list[Seen] = []
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    def posts(self, model: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.body.get("model") == model]

    def __enter__(self) -> RudeUpstream:
        self.thread.start()
        start = asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *_: object) -> None:
        async def stop() -> None:
            self.server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
                raw = await reader.readexactly(int(fields.get("content-length", "0")))
                seen = Seen(method, target, json.loads(raw or b"{}"), number)
                self.seen.append(seen)
                if method == "CONNECT":
                    await _tunnel(target, reader, writer)
                    return
                if not await self._answer(seen, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _answer(self, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        """Write one answer; False when the connection must end."""
        body, model = seen.body, seen.body.get("model")
        if model == "reset":  # SO_LINGER 0: close sends RST, as a crashed upstream or a load balancer does
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if model == "redirect" and seen.target.startswith("/v1/"):
            writer.write(
                b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /v2/chat/completions\r\nContent-Length: 0\r\n\r\n"
            )
        elif model == "hangup":  # answers, then closes the connection without saying so (an idle timeout)
            data = _completion(body)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
            await writer.drain()
            return False
        elif model == "fail500":
            error = b'{"error": {"message": "injected", "type": "server_error"}}'
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error))
        elif body.get("stream"):
            if model == "hints":
                writer.write(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                )
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            pieces = PIECES if model == "slow" else [_echo(body)]
            for event in _events(body, pieces):
                writer.write(_chunk(event))
                if model == "slow":
                    await writer.drain()
                    await asyncio.sleep(self.pause_s)
            writer.write(b"0\r\nx-trailer: done\r\n\r\n" if model == "trailer" else b"0\r\n\r\n")
        elif model == "trailer":
            data = _completion(body)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            writer.write(head + b"Trailer: x-checksum\r\n\r\n" + _chunk(data[:10]) + _chunk(data[10:]))
            writer.write(b"0\r\nx-checksum: 1234\r\n\r\n")
        else:
            if model == "hints":
                writer.write(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                )
            data = _completion(body)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data))
            writer.write(data)
        await writer.drain()
        return True
