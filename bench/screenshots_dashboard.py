"""A screenshot of the live dashboard (docs/img/dashboard.png), and what one refresh of its data costs.

Usage: ``python bench/screenshots_dashboard.py [--seconds 60] [--rows 100000]``.

1. A gateway (SQLite request log) in front of the fake upstream on 127.0.0.1 with three models (``small-1b``,
   ``mid-8b``, which always fails, and ``big-70b``) takes mixed traffic for ``--seconds``: requests pinned to a
   model, ``cascade-logprob`` requests (escalated past small, falling back past mid), long prompts the
   context filter keeps off small, and the default policy; the small model's part grows over the run. A few
   answers are judged as shadow judging stores them (both models scored), and the router directory's
   history is written with three events, so every chart has something to show. Headless Chromium
   (Debian's ``chromium``) opens ``/dashboard?since=2m&bucket=5`` and saves the page.
2. ``GET /dashboard/data`` over HTTP on a log of ``--rows`` rows (written straight into the table, spread
   over the last hour): 5 uncached answers for a 1-hour window back to back (the time computing one, and the
   time each waited, which the duty cycle sets); the p50 of chat requests through the same gateway, quiet and
   while a thread polls ``/dashboard/data`` without pause (uncached: worse than any number of open pages,
   which share one answer every 2 s).

Writes docs/img/dashboard.png and prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _chromium import browser
from fake_upstream import FakeUpstream, ThreadedServer
from sizewise.catalog.schema import CatalogSpec
from sizewise.gateway.app import create_app
from sizewise.learn.outcomes import Outcome

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "dashboard.png"
FIRED = json.dumps({"context": {"small-1b": "context window 64 < ~130 tokens needed"}})
LONG = "summarise the following notes for the weekly report: " + "item " * 120


def _model(name: str, upstream: str, params_b: float, base_url: str, context: int = 8192) -> dict[str, Any]:
    return {
        "name": name,
        "backend": "openai",
        "context_window": context,
        "params_b": params_b,
        "price_in": params_b / 10,
        "price_out": params_b / 5,
        "location": "remote",
        "settings": {"base_url": base_url, "model": upstream, "timeout_s": 5.0},
    }


class Gateway(ThreadedServer):
    """A real gateway on a free 127.0.0.1 port."""

    start_timeout_s = 60.0

    def __init__(self, config: dict[str, Any]) -> None:
        self.app = create_app(CatalogSpec.model_validate(config))
        super().__init__(self.app, lifespan="auto")


def _history(folder: Path) -> None:
    """Three router events an hour apart, the last one a rollback (the file format of learn/versions.py)."""
    now = time.time()
    stamp = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - hours * 3600)) for hours in (3, 2, 1)]
    events = [
        {"time": stamp[0], "event": "promote", "from": None, "to": "v0001", "reason": "first router"},
        {"time": stamp[1], "event": "promote", "from": "v0001", "to": "v0002", "reason": "retrained: better"},
        {"time": stamp[2], "event": "rollback", "from": "v0002", "to": "v0001", "reason": "rolled back from v0002"},
    ]
    (folder / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _traffic(gateway: Gateway, seconds: float, rng: random.Random) -> dict[str, list[str]]:
    """Mixed requests for ``seconds`` at about 10 per second; the request ids answered, by model."""
    served: dict[str, list[str]] = {}
    started = time.monotonic()
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        while (elapsed := time.monotonic() - started) < seconds:
            small_part = 0.2 + 0.6 * elapsed / seconds  # the router is trusted more as the run goes on
            roll = rng.random()
            if roll < small_part:
                model, text = "small-1b", "what is the capital of France"
            elif roll < small_part + 0.1:
                model, text = "cascade-logprob", "explain the proof step by step"
            elif roll < small_part + 0.15:
                model, text = "sizewise", LONG
            elif roll < 0.97:
                model, text = "big-70b", "write a detailed design review"
            else:
                model, text = "mid-8b", "hello"
            body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8}
            response = client.post("/chat/completions", json=body)
            if response.status_code == 200:
                served.setdefault(response.json()["sizewise"]["model"], []).append(response.headers["x-request-id"])
            time.sleep(0.1)
    return served


def _judge(gateway: Gateway, served: dict[str, list[str]], rng: random.Random) -> int:
    """Judge some answers as shadow judging would (served and big model both scored); returns how many."""
    state = gateway.app.state.gateway
    assert state.log.flush(10)
    judged = 0
    for model, ids in served.items():
        for request_id in rng.sample(ids, min(len(ids), 15)):
            big = min(1.0, max(0.0, rng.gauss(0.85, 0.1)))
            state.outcomes.store.add(Outcome(request_id, "big-70b", big, "llm-judge"))
            if model != "big-70b":
                state.outcomes.store.add(
                    Outcome(request_id, model, min(1.0, max(0.0, rng.gauss(0.78, 0.15))), "llm-judge")
                )
            judged += 1
    return judged


def screenshot(seconds: float) -> None:
    """Part 1: traffic, judging, and the page in headless Chromium saved to docs/img/dashboard.png."""
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as up:
        folder = Path(tmp)
        _history(folder)
        models = [
            _model("small-1b", "ok-small", 1.0, up.base_url, context=64),
            _model("mid-8b", "fail500", 8.0, up.base_url),
            _model("big-70b", "ok-big", 70.0, up.base_url),
        ]
        gateway_settings = {
            "log_url": f"sqlite:///{folder / 'log.db'}",
            "router_dir": str(folder),
            "ladder": ["small-1b", "mid-8b", "big-70b"],
        }
        with Gateway({"models": models, "gateway": gateway_settings}) as gateway:
            served = _traffic(gateway, seconds, rng)
            judged = _judge(gateway, served, rng)
            print(
                f"traffic: {sum(map(len, served.values()))} answered ({ {m: len(v) for m, v in served.items()} }), "
                f"{judged} judged"
            )
            _save_page(gateway.base_url.removesuffix("/v1") + "/dashboard?since=2m&bucket=5")
    print(f"wrote {OUT.relative_to(ROOT)}")


def _save_page(url: str) -> None:
    """Open ``url`` in headless Chromium (``bench/_chromium.py``), wait for the first drawing, save the page."""
    with browser(1400, 1700) as driver:
        driver.get(url)
        deadline = time.monotonic() + 60
        while not driver.execute_script("return (window.sizewiseDashboard || {}).renders > 0"):
            if time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not draw within 60 s")
            time.sleep(0.2)
        time.sleep(1.0)  # let the last chart finish its layout
        OUT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(OUT))


def refresh_cost(rows: int) -> None:
    """Part 2: the median time of an uncached ``/dashboard/data`` answer over a log of ``rows`` rows."""
    from sqlalchemy import insert

    from sizewise.core.requestlog import make_engine, metadata, requests_table

    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as up:
        url = f"sqlite:///{Path(tmp) / 'log.db'}"
        engine = make_engine(url)
        metadata.create_all(engine)
        now, names = time.time(), ["small-1b", "big-70b"]
        batch = [
            {
                "time": now - rng.uniform(0, 3500), "request_id": f"r{i}", "prompt_hash": "-", "status": 200,
                "model": rng.choice(names), "latency_ms": rng.uniform(20, 900), "cost": 1e-4, "big_cost": 1e-3,
                "escalated": rng.random() < 0.1, "filters": FIRED if i % 20 == 0 else None,
            }
            for i in range(rows)
        ]  # fmt: skip
        with engine.begin() as connection:
            connection.execute(insert(requests_table), batch)
        engine.dispose()
        models = [_model(n, "ok", 1.0 + 10 * k, up.base_url) for k, n in enumerate(names)]
        with Gateway({"models": models, "gateway": {"log_url": url}}) as gateway:
            root = gateway.base_url.removesuffix("/v1")
            took, waited = [], []
            for bucket in range(60, 65):  # a new query each time: no cached answer
                started = time.perf_counter()
                response = httpx.get(f"{root}/dashboard/data?since=1h&bucket={bucket}", timeout=120)
                waited.append((time.perf_counter() - started) * 1000)
                answer = response.json() if response.status_code == 200 else {}
                assert answer.get("totals", {}).get("answered") == rows, response.text[:200]
                took.append(answer["took_ms"])
            print(
                f"/dashboard/data over {rows} rows (1 h window), 5 uncached answers back to back: computing one "
                f"takes {statistics.median(took):.0f} ms (median), answered after {statistics.median(waited):.0f} ms "
                f"(the duty cycle spaces computations)"
            )
            quiet, watched = [], []
            for _ in range(2):  # interleaved, so a change in the machine's load hits both alike
                quiet += _chat_latencies(gateway.base_url, 100)
                with _Poller(root):
                    watched += _chat_latencies(gateway.base_url, 100)
            print(
                f"chat p50 {statistics.median(quiet):.1f} ms without the dashboard, "
                f"{statistics.median(watched):.1f} ms while /dashboard/data is polled without pause (uncached)"
            )


def _chat_latencies(base_url: str, n: int) -> list[float]:
    """Milliseconds of ``n`` sequential chat requests to a model pinned by name (the fake upstream answers at once)."""
    body = {"model": "small-1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    out = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(n):
            started = time.perf_counter()
            assert client.post("/chat/completions", json=body).status_code == 200
            out.append((time.perf_counter() - started) * 1000)
    return out


class _Poller:
    """A thread asking ``/dashboard/data`` for a new window (never cached) again and again while in use."""

    def __init__(self, root: str) -> None:
        self.root, self.stop = root, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        bucket = 100
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                bucket += 1
                client.get(f"{self.root}/dashboard/data?since=1h&bucket={bucket}")

    def __enter__(self) -> _Poller:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="how long the screenshot's traffic runs (0: no screenshot)"
    )
    parser.add_argument("--rows", type=int, default=100_000, help="log rows for the refresh timing (0: skip)")
    args = parser.parse_args()
    if args.seconds > 0:
        screenshot(args.seconds)
    if args.rows:
        refresh_cost(args.rows)


if __name__ == "__main__":
    main()
