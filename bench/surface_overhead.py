"""Latency of the translated surface against the same fast fake upstream: ``/v1/chat/completions`` vs
Anthropic's ``/v1/messages`` (JSON and streamed) vs ``/v1/route`` (the decision without the call).

Each round sends the same one-sentence prompt to each endpoint in turn (so drift hits all alike), with
the default policy choosing between two fake models; prints p50 / p95 in ms per endpoint.

    python bench/surface_overhead.py --requests 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes import FakeUpstream, GatewayServer, fake_model

PROMPT = "What is the capital of France?"


def _bodies() -> dict[str, tuple[str, dict[str, Any]]]:
    messages = [{"role": "user", "content": PROMPT}]
    chat = {"model": "sizewise", "messages": messages, "max_tokens": 16}
    anthropic = {"model": "sizewise", "messages": messages, "max_tokens": 16}
    return {
        "chat": ("/chat/completions", chat),
        "chat stream": ("/chat/completions", {**chat, "stream": True}),
        "messages": ("/messages", anthropic),
        "messages stream": ("/messages", {**anthropic, "stream": True}),
        "route": ("/route", chat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    args = parser.parse_args()
    bodies = _bodies()
    times: dict[str, list[float]] = {name: [] for name in bodies}
    with FakeUpstream() as upstream:
        models = [
            fake_model("small", "ok-small", 1.0, upstream.base_url),
            fake_model("big", "ok-big", 8.0, upstream.base_url),
        ]
        with (
            GatewayServer({"models": models, "gateway": {"log_url": "none"}}) as gw,
            httpx.Client(timeout=30) as client,
        ):
            for round_ in range(args.requests + 10):  # 10 warm-up rounds
                for name, (path, body) in bodies.items():
                    started = time.perf_counter()
                    response = client.post(gw.url + path, json=body)
                    response.read()
                    elapsed = time.perf_counter() - started
                    assert response.status_code == 200, response.text
                    if round_ >= 10:
                        times[name].append(elapsed * 1000)
    for name, values in times.items():
        values.sort()
        p95 = values[int(0.95 * (len(values) - 1))]
        print(f"{name:<16} p50 {statistics.median(values):6.2f} ms   p95 {p95:6.2f} ms   (n={len(values)})")


if __name__ == "__main__":
    main()
