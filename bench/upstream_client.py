"""Per-request cost of the upstream client: sizewise's httpx backend against the official openai async client.

Both call the same fake upstream (bench/fake_upstream.py) on 127.0.0.1, in alternating rounds, whole answers
and streams; the table shows the median wall time and the CPU time per request of the calling process (the
fake upstream runs in a thread of it, the same for both). Run: ``python bench/upstream_client.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import openai

from fake_upstream import FakeUpstream
from sizewise.backends.openai_compat import OpenAICompatBackend
from sizewise.catalog.schema import ModelSpec, OpenAISettings
from sizewise.core.chat import ChatRequest

MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
Call = Callable[[], Awaitable[str]]


def _calls(base_url: str) -> dict[str, Call]:
    spec = ModelSpec(name="m", backend="openai", context_window=4096, location="remote", settings={})
    backend = OpenAICompatBackend(spec, OpenAISettings(base_url=base_url, model="ok"))
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    request = ChatRequest(messages=MESSAGES, max_tokens=16)

    async def httpx_answer() -> str:
        return (await backend.complete(request)).text

    async def httpx_stream() -> str:
        return "".join([chunk.text async for chunk in backend.stream(request)])

    async def openai_answer() -> str:
        answer = await client.chat.completions.create(model="ok", messages=MESSAGES, max_tokens=16)  # type: ignore[arg-type]
        return answer.choices[0].message.content or ""

    async def openai_stream() -> str:
        stream = await client.chat.completions.create(  # type: ignore[call-overload]
            model="ok", messages=MESSAGES, max_tokens=16, stream=True, stream_options={"include_usage": True}
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    return {
        "httpx answer": httpx_answer,
        "openai answer": openai_answer,
        "httpx stream": httpx_stream,
        "openai stream": openai_stream,
    }


async def _measure(calls: dict[str, Call], rounds: int, per_round: int) -> dict[str, tuple[list[float], float]]:
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu = dict.fromkeys(calls, 0.0)
    for call in calls.values():  # warm-up: connections, imports, pydantic models
        for _ in range(20):
            await call()
    for _ in range(rounds):
        for name, call in calls.items():
            started_cpu = time.process_time()
            for _ in range(per_round):
                started = time.perf_counter()
                await call()
                wall[name].append(time.perf_counter() - started)
            cpu[name] += time.process_time() - started_cpu
    total = rounds * per_round
    return {name: (wall[name], cpu[name] / total) for name in calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=100)
    args = parser.parse_args()
    with FakeUpstream() as upstream:
        results = asyncio.run(_measure(_calls(upstream.base_url), args.rounds, args.per_round))
    print("| client, call | p50 wall ms | CPU ms / request |\n|---|---|---|")
    for name, (wall, cpu) in results.items():
        print(f"| {name} | {statistics.median(wall) * 1000:.2f} | {cpu * 1000:.2f} |")


if __name__ == "__main__":
    main()
