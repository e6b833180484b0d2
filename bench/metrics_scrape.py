"""What a ``GET /metrics`` scrape costs when replicas share their metrics (``gateway.state_url``, #21).

Usage: ``python bench/metrics_scrape.py [SCRAPES]``. Starts 1 gateway without ``state_url``, then 1 and 3
gateways sharing a SQLite state file, each in front of the fake upstream with 3 models; sends 20 requests
to each gateway, waits a poll, and times SCRAPES (default 200) scrapes of the first one: p50, p95 and the
body's size. A shared scrape republishes the answering replica's row (when it changed) and parses every
replica's row (docs/gateway.md, Metrics).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai

POLL_S = 1.0


def _spec(upstream: Any, state_url: str | None) -> dict[str, Any]:
    from fakes import fake_model

    models = [fake_model(n, f"ok-{n}", p, upstream.base_url) for n, p in (("small", 1), ("mid", 8), ("big", 70))]
    shared = {"state_url": state_url, "state_poll_s": POLL_S} if state_url else {}
    return {"models": models, "gateway": {"log_url": "none", "router": "heuristic", **shared}}


def _time(url: str, scrapes: int) -> tuple[float, float, int]:
    """p50 and p95 in ms, and the body's bytes, of ``scrapes`` sequential GETs."""
    spans, size = [], 0
    with httpx.Client(timeout=30) as client:
        client.get(url)
        for _ in range(scrapes):
            started = time.perf_counter()
            size = len(client.get(url).content)
            spans.append((time.perf_counter() - started) * 1000)
    return statistics.median(spans), sorted(spans)[int(0.95 * (scrapes - 1))], size


def main(scrapes: int = 200) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fakes import FakeUpstream, GatewayServer

    with FakeUpstream() as upstream:
        for replicas in (0, 1, 3):
            url = f"sqlite:///{tempfile.mkdtemp()}/state.sqlite" if replicas else None
            with ExitStack() as stack:
                gateways = [stack.enter_context(GatewayServer(_spec(upstream, url))) for _ in range(max(replicas, 1))]
                for gateway in gateways:
                    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)
                    for model in ("small", "mid", "big", "sizewise") * 5:
                        client.chat.completions.create(
                            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4
                        )
                time.sleep(1.5 * POLL_S)  # every replica has published its traffic
                p50, p95, size = _time(gateways[0].url.removesuffix("/v1") + "/metrics", scrapes)
                what = f"{replicas} shared" if replicas else "1, no state_url"
                print(f"replicas {what}: /metrics p50 {p50:.1f} ms, p95 {p95:.1f} ms, {size} bytes")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
