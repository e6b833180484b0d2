"""Keep-alive HTTP/1.1 load generator of bench/gateway.py: OpenAI chat requests over N connections on
127.0.0.1, latency percentiles and requests/s. Raw asyncio streams, no HTTP library in the loop."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

PROMPT = {"role": "user", "content": "What is the capital of France? Answer in one word."}
# LiteLLM refuses to start without a master key; every target gets the same header (the others ignore it).
MASTER_KEY = "sk-sizewise-bench-0123456789abcdef"


async def _connection(port: int, path: str, bodies: Iterator[bytes], latencies: list[float], errors: list[int]) -> None:
    """One keep-alive connection sending bodies (shared with the other connections) until none is left; a
    connection the server cuts counts as an error (-1) and is opened again."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for body in bodies:
            request = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {MASTER_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            try:
                status = await _exchange(reader, writer, request)
            except (asyncio.IncompleteReadError, ConnectionError):
                errors.append(-1)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request and read its whole answer; the status."""
    writer.write(request)
    header = await reader.readuntil(b"\r\n\r\n")
    status = int(header[9:12])
    lower = header.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    else:  # chunked
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def load(
    port: int, path: str, model: str, requests: int, concurrency: int, distinct: bool = False
) -> dict[str, Any]:
    """Send ``requests`` requests over ``concurrency`` connections; ``distinct`` numbers each prompt."""
    body = json.dumps({"model": model, "messages": [PROMPT], "max_tokens": 16}).encode()
    if distinct:  # defeats any cache of prompt embeddings: every request is a new prompt
        bodies: Iterator[bytes] = (
            json.dumps(
                {
                    "model": model,
                    "messages": [
                        {
                            "role": "user",
                            "content": f"Question {i}: {PROMPT['content']} Also, what is {i} times {i % 7 + 2}?",
                        }
                    ],
                    "max_tokens": 16,
                }
            ).encode()
            for i in range(requests)
        )
    else:
        bodies = itertools.repeat(body, requests)
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, path, bodies, latencies, errors) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "rps": len(latencies) / elapsed,
        "errors": len(errors),
    }
