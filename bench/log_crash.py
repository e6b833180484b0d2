"""Request-log rows lost when the gateway is killed with SIGKILL under load: the crash-loss window.

Usage: ``python bench/log_crash.py [--kills 5] [--concurrency 8]``. Each round starts a gateway process (one
``openai`` model on a fast local fake upstream, request log on SQLite), sends chat requests over
``--concurrency`` connections for 1.5-2.5 s, kills the gateway with SIGKILL, and counts the answered requests
(HTTP 200 received) against the 200 rows in the log. The window is lost rows / answered rows per second. Writes
docs/results/log_crash.json and the ``log-crash`` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx

from _results import ROOT, markdown_table, update_section, write_json
from fake_upstream import FakeUpstream, free_port

GATEWAY = """
import sys, uvicorn
from sizewise.catalog.schema import CatalogSpec
from sizewise.gateway.app import create_app
upstream, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
model = {"name": "small", "backend": "openai", "context_window": 4096, "params_b": 1.0, "price_in": 1.0,
         "price_out": 2.0, "location": "local", "settings": {"base_url": upstream, "model": "ok-small"}}
spec = CatalogSpec.model_validate({"models": [model], "gateway": {"log_url": f"sqlite:///{db}"}})
uvicorn.run(create_app(spec), host="127.0.0.1", port=port, log_level="critical")
"""


async def _load(url: str, proc: subprocess.Popen[bytes], concurrency: int) -> tuple[int, float]:
    """Answered requests and seconds of load until the kill."""
    answered = 0
    body = {"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal answered
        while True:
            try:
                response = await client.post(url, json=body)
            except httpx.HTTPError:
                return  # the gateway is gone
            answered += response.status_code == 200

    async with httpx.AsyncClient(timeout=5) as client:
        start = time.monotonic()
        tasks = [asyncio.create_task(client_loop(client)) for _ in range(concurrency)]
        await asyncio.sleep(1.5 + random.random())
        os.kill(proc.pid, signal.SIGKILL)
        seconds = time.monotonic() - start
        await asyncio.gather(*tasks)
    return answered, seconds


def _round(upstream: str, db: Path, concurrency: int) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", GATEWAY, upstream, str(port), str(db)])
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the gateway did not start") from None
            time.sleep(0.1)
    answered, seconds = asyncio.run(_load(f"http://127.0.0.1:{port}/v1/chat/completions", proc, concurrency))
    proc.wait()
    with sqlite3.connect(db) as connection:
        logged = connection.execute("select count(*) from requests where status = 200").fetchone()[0]
    return {"answered": answered, "logged": logged, "lost": answered - logged, "requests_per_s": answered / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    random.seed(0)
    with FakeUpstream() as upstream, tempfile.TemporaryDirectory() as tmp:
        rounds = [_round(upstream.base_url, Path(tmp) / f"log{k}.sqlite", args.concurrency) for k in range(args.kills)]
    for row in rounds:
        row["window_s"] = row["lost"] / row["requests_per_s"]
    total = {
        "kills": len(rounds),
        "answered": sum(r["answered"] for r in rounds),
        "lost": sum(r["lost"] for r in rounds),
        "most_lost_in_one_kill": max(r["lost"] for r in rounds),
        "largest_window_s": max(r["window_s"] for r in rounds),
    }
    print(markdown_table(rounds, digits=3), markdown_table([total], digits=3), sep="\n\n", flush=True)
    write_json(ROOT / "docs" / "results" / "log_crash.json", {"rounds": rounds, "total": total})
    body = markdown_table([total], digits=3) + (
        f"\n\nA gateway on SQLite killed with SIGKILL {len(rounds)} times under {args.concurrency} concurrent "
        "clients. `lost`: answered requests (200 received) with no row; `largest_window_s`: the most lost in one kill "
        "divided by that round's answered requests per second. Goal: below 0.3 s."
    )
    update_section("log-crash", "Request-log rows lost to a kill -9", "python bench/log_crash.py", body)


if __name__ == "__main__":
    main()
