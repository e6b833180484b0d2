"""Does shadow judging slow the client? Client latency with shadowing off (twice: the second "off" row,
an A/A comparison, shows the noise), on at about 7% of requests (the defaults: 2% uniform + 5% active) and
on at 100% (every answer shadowed and judged in both orders: three more upstream calls per request),
through a live gateway with the official openai client; then the time a request spends in the shadow hook,
the only shadow work on the request path.

The upstream (weak, strong and judge models) runs in its own process and answers after
``--delay-ms``; the gateway runs in this process in a thread (as in the tests), the client in the main
thread, sequential requests. Configurations are interleaved in rounds so drift hits them alike, and each
is compared with the "off" run of its own round (paired differences).

    .venv/bin/python bench/shadow_latency.py [--requests 40] [--rounds 20] [--delay-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, markdown_table, update_section, write_json
from fake_upstream import ThreadedServer, free_port, read_body, send_answer
from sizewise.catalog.schema import CatalogSpec
from sizewise.gateway.app import create_app

USAGE = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
PROMPTS = ["What is 2+2?", "Name a colour.", "Say hello in French.", "What is the capital of Italy?"]


def upstream_app(delay_s: float) -> Any:
    """weak-up / strong-up answer after ``delay_s``; judge-up answers ``A`` after ``delay_s``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive) or b"{}")
        await asyncio.sleep(delay_s)
        model = str(body.get("model"))
        await send_answer(send, model, "A" if model == "judge-up" else f"{model} says hi", USAGE)

    return app


class Upstream:
    """The upstream in a child process: ``with Upstream(delay) as up: up.base_url``."""

    def __init__(self, delay_ms: float) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-upstream", str(self.port), "--delay-ms", str(delay_ms)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Upstream:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base_url, timeout=0.5)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("upstream did not start")

    def __exit__(self, *_: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Gateway(ThreadedServer):
    """``create_app`` on uvicorn in a thread."""

    start_timeout_s = 60.0
    stop_timeout_s = 15.0

    def __init__(self, spec: dict[str, Any]) -> None:
        self.app = create_app(CatalogSpec.model_validate(spec))
        super().__init__(self.app, lifespan="auto")


def catalog(base_url: str, log: Path, shadow: dict[str, Any] | None) -> dict[str, Any]:
    def model(name: str, upstream: str, size: float) -> dict[str, Any]:
        settings = {"base_url": base_url, "model": upstream, "timeout_s": 10.0}
        entry = {"name": name, "backend": "openai", "context_window": 4096, "params_b": size, "location": "local"}
        return entry | {"price_in": size, "price_out": 2 * size, "settings": settings}

    gateway: dict[str, Any] = {"ladder": ["weak", "strong"], "log_url": f"sqlite:///{log}"}
    if shadow is not None:
        gateway["shadow"] = {"enabled": True, "judge": "judge", "daily_cap_usd": 100.0, **shadow}
    models = [model("weak", "weak-up", 1), model("strong", "strong-up", 2), model("judge", "judge-up", 3)]
    return {"models": models, "gateway": gateway}


def measure(gw: Gateway, requests: int) -> list[float]:
    """Client latencies (ms) of ``requests`` sequential answers from the weak model."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key="unused", max_retries=0)
    out = []
    for i in range(requests):
        started = time.perf_counter()
        client.chat.completions.create(
            model="router-heuristic-0.9", messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        )
        out.append((time.perf_counter() - started) * 1000)
    return out


def jobs(gw: Gateway) -> dict[str, int]:
    text = gw.app.state.gateway.metrics.render().decode()
    return {
        line.split('"')[1]: int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("sizewise_shadow_jobs_total{")
    }


def hook_cost_us(base_url: str, log: Path, calls: int = 20_000) -> tuple[float, float]:
    """Microseconds a request spends in the gateway's shadow hook (the only shadow work on the request path):
    (not chosen, chosen: a job and its background task built). No server: the hook alone, timed."""
    from sizewise.core.chat import ChatRequest, ChatResult
    from sizewise.core.decision import Decision
    from sizewise.serve.context import build_context

    timings = []
    for rate in (0.0, 1.0):
        shadow = {"uniform_rate": rate, "active_rate": 0.0}
        hook = create_app(CatalogSpec.model_validate(catalog(base_url, log, shadow))).state.gateway.shadow
        request = ChatRequest(messages=[{"role": "user", "content": PROMPTS[0]}])
        ctx = build_context(request, model_field="router-heuristic-0.9", request_id="bench")
        decision = Decision(policy="router-heuristic-0.9", model="weak", score=0.1, threshold=0.9)
        result = ChatResult(model="weak", text="weak-up says hi")
        started = time.perf_counter()
        for _ in range(calls):
            hook.after(ctx, decision, result)
        timings.append((time.perf_counter() - started) / calls * 1e6)
    return timings[0], timings[1]


def paired(values: list[float], baseline: list[float]) -> str:
    """Median and quartiles of the per-round differences ``values - baseline`` (ms): rounds are paired, so
    slow spells of a shared machine, which hit both in one round, cancel."""
    diffs = sorted(v - b for v, b in zip(values, baseline, strict=True))
    if len(diffs) < 2:
        return f"{diffs[0]:+.2f}"
    q1, median, q3 = statistics.quantiles(diffs, n=4)
    return f"{median:+.2f} ({q1:+.2f} to {q3:+.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per configuration and round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="each upstream answer's delay")
    parser.add_argument("--no-results", action="store_true", help="print only; leave docs/results.md alone")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        uvicorn.run(upstream_app(args.delay_ms / 1000), host="127.0.0.1", port=args.serve_upstream, log_level="error")
        return
    configs: dict[str, dict[str, Any] | None] = {
        "off": None,
        "off, again (A/A: the noise)": None,
        "on, defaults (~7%)": {},
        "on, every request": {"uniform_rate": 1.0, "active_rate": 0.0, "queue_size": 10_000},
    }
    latencies: dict[str, list[float]] = {name: [] for name in configs}
    round_p50: dict[str, list[float]] = {name: [] for name in configs}
    counts: dict[str, dict[str, int]] = {name: {} for name in configs}
    with Upstream(args.delay_ms) as up, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            names = list(configs)
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # rotated: no position bias
                shadow = configs[name]
                log = Path(tmp) / f"{round_}-{len(latencies[name])}-{abs(hash(name))}.sqlite"
                with Gateway(catalog(up.base_url, log, shadow)) as gw:
                    measure(gw, 10)  # warm-up: connections, the first policy build
                    values = measure(gw, args.requests)
                    latencies[name] += values
                    round_p50[name].append(statistics.median(values))
                    for event, n in jobs(gw).items():
                        counts[name][event] = counts[name].get(event, 0) + n
        skipped, chosen = hook_cost_us(up.base_url, Path(tmp) / "hook.sqlite")
    rows = []
    for name, values in latencies.items():
        quantiles = statistics.quantiles(values, n=100)
        judged, dropped = counts[name].get("judged", 0), counts[name].get("dropped", 0)
        rows.append(
            {
                "shadowing": name,
                "requests": len(values),
                "p50 ms": quantiles[49],
                "p50 per round, min-max": f"{min(round_p50[name]):.2f}-{max(round_p50[name]):.2f}",
                "Δp50 vs off, same round: median (quartiles)": paired(round_p50[name], round_p50["off"]),
                "p95 ms": quantiles[94],
                "mean ms": statistics.fmean(values),
                "shadow jobs judged / dropped": "-" if configs[name] is None else f"{judged} / {dropped}",
            }
        )
    table = markdown_table(rows, digits=2)
    hook = f"The shadow hook on the request path: {skipped:.1f} µs a request not chosen, {chosen:.1f} µs one chosen."
    setup = (
        f"Upstream answers after {args.delay_ms:g} ms (its own process); gateway in a thread, the openai client, "
        f"sequential requests; {args.rounds} interleaved rounds of {args.requests} requests per configuration. "
        "The two `off` rows differ in nothing: their gap is the noise. Load average at the end: "
        f"{os.getloadavg()[0]:.1f}."
    )
    print(table, hook, sep="\n\n")
    if args.no_results:
        return
    write_json(ROOT / "docs" / "results" / "shadow_latency.json", {"rows": rows, "hook_us": [skipped, chosen]})
    title = "Shadow judging: the client's latency with shadowing on and off"
    update_section("shadow-latency", title, "python bench/shadow_latency.py", f"{table}\n\n{hook}\n\n{setup}")


if __name__ == "__main__":
    main()
