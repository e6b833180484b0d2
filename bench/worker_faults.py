"""Local model workers killed under load: how many requests were answered, fell back, failed, and were logged.

Usage: ``python bench/worker_faults.py [--requests 200] [--kills 3] [--concurrency 4]``. A real gateway (HTTP on
127.0.0.1) serves two embedded models; every request names the smaller one, whose worker process is killed with
SIGKILL ``--kills`` times, evenly spread over the run. A request caught by a kill falls back to the other model
(the plan's next candidate); the next request to the small model starts a new worker. Goal: 0 failed, and as many
log rows as requests, each fallback's row naming the kill. Writes docs/results/worker_faults.json and the
``worker-faults`` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx

from _results import ROOT, markdown_table, update_section, write_json
from _serve import serve_in_thread
from sizewise.catalog import load_catalog
from sizewise.catalog.schema import CatalogSpec
from sizewise.gateway.app import create_app
from sizewise.gateway.log import read_rows

SMALL, FALLBACK = "smollm2-135m", "qwen2.5-coder-0.5b"


def _catalog(log_url: str) -> CatalogSpec:
    built_in = load_catalog(None)
    models = [built_in.get(name).model_dump() for name in (SMALL, FALLBACK)]
    # The requests name SMALL: a killed worker may fall back only when the catalog allows it for named models.
    gateway = {"log_url": log_url, "fallback_for_named_models": True}
    return CatalogSpec.model_validate({"models": models, "gateway": gateway})


async def _worker_pid(client: httpx.AsyncClient) -> int | None:
    health = (await client.get("/healthz")).json()
    return (health["workers"].get(SMALL) or {}).get("pid")


async def _killer(client: httpx.AsyncClient, done: Counter[str], total: int, kills: int, killed: list[float]) -> None:
    """Kill the small model's worker each time another 1/(kills+1) of the requests has finished."""
    for k in range(1, kills + 1):
        while sum(done.values()) < k * total // (kills + 1):
            await asyncio.sleep(0.01)
        while (pid := await _worker_pid(client)) is None:  # wait for the restarted worker
            await asyncio.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        killed.append(time.monotonic())


async def _run(
    url: str, total: int, kills: int, concurrency: int
) -> tuple[Counter[str], list[str], list[float], list[float]]:
    done: Counter[str] = Counter()
    ids: list[str] = []
    killed: list[float] = []
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def send() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {
                    "model": SMALL,
                    "messages": [{"role": "user", "content": f"Request {i}: write a short poem about the sea."}],
                    "max_tokens": 16,
                    "temperature": 0,
                }
                start = time.monotonic()
                response = await client.post("/v1/chat/completions", json=body)
                latencies.append(time.monotonic() - start)
                ids.append(response.headers.get("x-request-id", ""))
                if response.status_code != 200:
                    done["failed"] += 1
                elif response.headers.get("x-sizewise-fallback"):
                    done["fell back"] += 1
                else:
                    done["answered"] += 1

        await client.post(
            "/v1/chat/completions",
            json={"model": SMALL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        )
        killer = asyncio.create_task(_killer(client, done, total, kills, killed))
        await asyncio.gather(*(send() for _ in range(concurrency)))
        await killer
    return done, ids, killed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log_url = f"sqlite:///{tmp}/log.sqlite"
        app = create_app(_catalog(log_url))
        start = time.monotonic()
        with serve_in_thread(app) as url:
            done, ids, killed, latencies = asyncio.run(_run(url, args.requests, args.kills, args.concurrency))
            assert app.state.gateway.log.flush(30)
        seconds = time.monotonic() - start
        rows = [row for row in read_rows(log_url) if row["request_id"] in set(ids)]
    killed_rows = [r for r in rows if any("SIGKILL" in e for e in json.loads(r["errors"] or "[]"))]
    result = {
        "requests": args.requests,
        "kills": len(killed),
        "answered": done["answered"],
        "fell_back": done["fell back"],
        "failed": done["failed"],
        "logged": len(rows),
        "logged_with_the_kill": len(killed_rows),
        "p50_s": statistics.median(latencies),
        "max_s": max(latencies),
        "seconds": seconds,
    }
    print(markdown_table([result]), flush=True)
    write_json(ROOT / "docs" / "results" / "worker_faults.json", result)
    body = markdown_table([result]) + (
        f"\n\nEvery request names `{SMALL}` (a worker process); its worker is killed with SIGKILL {len(killed)} "
        f"times under {args.concurrency} concurrent clients. `fell_back`: answered by `{FALLBACK}`, the plan's next "
        "model; `logged_with_the_kill`: log rows whose errors name the SIGKILL. Goal: 0 failed, logged = requests."
    )
    command = "python bench/worker_faults.py" + (f" --requests {args.requests}" if args.requests != 200 else "")
    update_section("worker-faults", "Local model workers killed under load", command, body)


if __name__ == "__main__":
    main()
