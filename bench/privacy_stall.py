"""Does the privacy scan of a long prompt stall other clients? Latency of tiny requests, alone and while
100 KB numeric prompts are being scanned, through a real gateway process (``privacy: local-only``).

The gateway and the fake upstream run as their own processes on 127.0.0.1; this process is only the
client. ``--src DIR`` serves another checkout's ``src`` (e.g. the code before a change) in the same
way. The long prompt is three-digit numbers and commas: no rule fires (so no scan can stop early),
yet every group is a phone-number candidate (about 3 s of CPU per 100 KB, the slowest case found).

    .venv/bin/python bench/privacy_stall.py [--src OTHER/src] [--seconds 6] [--chars 100000] [--parallel 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import quantiles

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_upstream import free_port

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "edge", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def numeric_prompt(chars: int, seed: int = 0) -> str:
    """Three-digit numbers and commas: no rule fires, so every phone candidate is parsed (the slowest scan)."""
    rng = random.Random(seed)
    return " ".join(f"{rng.randint(100, 999)}," for _ in range(chars // 5))


def _catalog(upstream: str) -> str:
    def model(name: str, location: str) -> dict[str, object]:
        settings = {"base_url": upstream, "model": f"{name}-ok"}
        return {
            "name": name,
            "backend": "openai",
            "context_window": 200_000,
            "location": location,
            "settings": settings,
        }

    catalog = {
        "models": [model("edge", "local"), model("cloud", "remote")],
        "gateway": {"privacy": "local-only", "log_url": "none"},
    }
    return json.dumps(catalog)  # JSON is YAML


def _wait(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


async def _tiny(client: httpx.AsyncClient, seconds: float) -> list[float]:
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await client.post("/v1/chat/completions", json=TINY)
        assert response.status_code == 200, response.text
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    return latencies


async def _big(client: httpx.AsyncClient, prompt: str, stop: asyncio.Event) -> list[float]:
    body = {"model": "edge", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4}
    took = []
    while not stop.is_set():
        started = time.perf_counter()
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        took.append(time.perf_counter() - started)
    return took


async def measure(url: str, seconds: float, chars: int, parallel: int) -> dict[str, object]:
    """Tiny-request latencies alone, then while ``parallel`` clients send long prompts back to back."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await _tiny(client, 0.5)  # warm-up
        alone = await _tiny(client, seconds)
        stop = asyncio.Event()
        big = [asyncio.create_task(_big(client, numeric_prompt(chars, seed), stop)) for seed in range(parallel)]
        await asyncio.sleep(0.2)
        loaded = await _tiny(client, seconds)
        stop.set()
        big_s = [took for task in big for took in await task]
    return {"alone": _summary(alone), "during_scan": _summary(loaded), "long_prompt_ms": _summary(big_s)}


def _summary(values: list[float]) -> dict[str, float]:
    cuts = quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    ms = {"p50": cuts[49], "p99": cuts[98], "max": max(values)}
    return {"n": len(values), **{k: round(v * 1000, 1) for k, v in ms.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the sizewise source the gateway runs")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=1, help="clients sending long prompts at once")
    args = parser.parse_args()
    upstream_port, gateway_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "sizewise.yaml"
        config.write_text(_catalog(f"http://127.0.0.1:{upstream_port}/v1"))
        env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
        upstream = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/fake_upstream.py"), "--port", str(upstream_port)]
        )
        serve = [
            sys.executable,
            "-m",
            "sizewise.cli.main",
            "serve",
            "--config",
            str(config),
            "--port",
            str(gateway_port),
        ]
        gateway = subprocess.Popen(serve, env=env, cwd=work)
        try:
            url = f"http://127.0.0.1:{gateway_port}"
            _wait(f"{url}/v1/models")
            result = asyncio.run(measure(url, args.seconds, args.chars, args.parallel))
        finally:
            for process in (gateway, upstream):
                process.terminate()
                process.wait(timeout=10)
    print(json.dumps({"src": str(args.src), "chars": args.chars, "parallel": args.parallel, **result}))


if __name__ == "__main__":
    main()
