"""Gateway overhead: the same traffic straight to a fast fake upstream, through sizewise, and through LiteLLM.

Starts (as separate processes, all on 127.0.0.1, all niced): ``bench/fake_upstream.py``; the sizewise
gateway (request log and metrics on, as served) with two ``openai``-backend models on that upstream;
and LiteLLM's proxy (``litellm[proxy]``, from its own venv, default ``/tmp/litellm-venv``) with the
same models. A keep-alive HTTP/1.1 load generator then measures, per target and round:

* latency: ``--seq`` sequential requests (one connection) -> p50 / p99;
* throughput: ``--conc-requests`` requests over ``--concurrency`` connections -> requests/s.

Targets: ``upstream`` (direct), ``sizewise-routed`` (model ``router-heuristic-0.5``: routing with the cheap
built-in scorer), ``sizewise-bypass`` (a catalog model by name), ``litellm``, and with ``--baseline-src DIR``
``baseline-routed``: the same gateway served from another checkout's ``src`` (say, the previous commit), to
measure a change under the same load. Rounds alternate targets so
background load hits all alike; the median over rounds is reported. Overhead = target - upstream.

Usage: ``nice -n 10 .venv/bin/python bench/gateway.py [--rounds 3] [--seq 1000] [--baseline-src DIR]``.
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

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _loadgen import MASTER_KEY, load  # noqa: E402
from _results import markdown_table, update_section, write_json  # noqa: E402
from fake_upstream import free_port  # noqa: E402

ROOT = BENCH.parent
GOAL_OVERHEAD_MS = 2.0
GOAL_RPS_RATIO = 2.0


def _gateway_main(upstream_port: int, port: int, log_url: str) -> None:
    """Child process: serve the sizewise gateway on ``port`` over the fake upstream."""
    import uvicorn

    from sizewise.catalog.schema import CatalogSpec
    from sizewise.gateway.app import create_app

    base = f"http://127.0.0.1:{upstream_port}/v1"
    models = [
        {
            "name": name,
            "backend": "openai",
            "context_window": 32768,
            "params_b": size,
            "price_in": price,
            "price_out": 2 * price,
            "location": "remote",
            "settings": {"base_url": base, "model": f"ok-{name}"},
        }
        for name, size, price in (("small", 0.5, 0.1), ("big", 1.5, 0.5))
    ]
    spec = CatalogSpec.model_validate({"models": models, "gateway": {"log_url": log_url}})
    uvicorn.run(create_app(spec), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _litellm_config(upstream_port: int, directory: Path) -> Path:
    base = f"http://127.0.0.1:{upstream_port}/v1"
    lines = ["model_list:"]
    for name in ("small", "big"):
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            f"      model: openai/ok-{name}",
            f"      api_base: {base}",
            "      api_key: fake",
        ]
    lines += ["litellm_settings:", "  telemetry: false", "  drop_params: true", "  turn_off_message_logging: true"]
    path = directory / "litellm.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the process
    # A new session per server, so its CPU time can be summed over every process it starts.
    return subprocess.Popen(
        ["nice", "-n", "10", *cmd], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def _cpu_seconds(session: int) -> float:
    """User + system CPU seconds of every live process in ``session`` (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # field 6 of stat: session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not up after {timeout:.0f}s")


def _measure(port: int, path: str, model: str, session: int, args: argparse.Namespace) -> dict[str, Any]:
    asyncio.run(load(port, path, model, args.warmup, 1))
    latency = asyncio.run(load(port, path, model, args.seq, 1))
    cpu_before = _cpu_seconds(session)
    throughput = asyncio.run(load(port, path, model, args.conc_requests, args.concurrency))
    cpu = _cpu_seconds(session) - cpu_before
    return {
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "rps": throughput["rps"],
        # CPU time the serving process spent per request: unlike latency, barely moved by other load.
        "cpu_ms_per_request": 1000 * cpu / args.conc_requests,
        "errors": latency["errors"] + throughput["errors"],
    }


def _default_router_cost(port: int, requests: int) -> dict[str, Any]:
    """Sequential requests with new prompts: model ``sizewise`` (pretrained router) vs a catalog model."""
    path = "/v1/chat/completions"
    asyncio.run(load(port, path, "sizewise", 3, 1))  # loads the router and its embedding model
    bypass = asyncio.run(load(port, path, "small", requests, 1, distinct=True))
    routed = asyncio.run(load(port, path, "sizewise", requests, 1, distinct=True))
    return {
        "requests": requests,
        "bypass_p50_ms": bypass["p50_ms"],
        "default_p50_ms": routed["p50_ms"],
        "default_p99_ms": routed["p99_ms"],
        "scoring_p50_ms": routed["p50_ms"] - bypass["p50_ms"],
        "errors": bypass["errors"] + routed["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seq", type=int, default=1000)
    parser.add_argument("--conc-requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--router-requests", type=int, default=100, help="new prompts for the default router")
    parser.add_argument("--litellm", default="/tmp/litellm-venv/bin/litellm", help="litellm executable")
    parser.add_argument("--baseline-src", help="also serve the gateway from this src/ folder (another checkout)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "gateway.json"))
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/results.md")
    args = parser.parse_args()

    procs: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="sizewise-bench-gw-"))
    up_port, gw_port, ll_port, base_port = free_port(), free_port(), free_port(), free_port()
    # name -> (port, path, model, index in procs of the process that serves it)
    targets: dict[str, tuple[int, str, str, int]] = {
        "upstream": (up_port, "/v1/chat/completions", "ok-small", 0),
        "sizewise-routed": (gw_port, "/v1/chat/completions", "router-heuristic-0.5", 1),
        "sizewise-bypass": (gw_port, "/v1/chat/completions", "small", 1),
    }
    litellm_note = None
    default_router = None
    load_before = os.getloadavg()[0]
    try:
        procs.append(_start([sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(up_port)]))
        _wait(f"http://127.0.0.1:{up_port}/v1/models", procs[-1], 30)
        gw = [
            sys.executable,
            __file__,
            "--serve-gateway",
            str(up_port),
            str(gw_port),
            f"sqlite:///{workdir / 'log.sqlite'}",
        ]
        procs.append(_start(gw, log=workdir / "gateway.log"))
        _wait(f"http://127.0.0.1:{gw_port}/healthz", procs[-1], 60)
        if args.baseline_src:
            env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
            gw[-2:] = [str(base_port), f"sqlite:///{workdir / 'baseline.sqlite'}"]
            procs.append(_start(gw, env=env, log=workdir / "baseline.log"))
            _wait(f"http://127.0.0.1:{base_port}/healthz", procs[-1], 60)
            targets["baseline-routed"] = (base_port, "/v1/chat/completions", "router-heuristic-0.5", len(procs) - 1)
        if Path(args.litellm).exists():
            env = {
                **os.environ,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_LOG": "ERROR",
                "LITELLM_MASTER_KEY": MASTER_KEY,
                "DISABLE_SCHEMA_UPDATE": "True",
            }
            config = _litellm_config(up_port, workdir)
            procs.append(
                _start(
                    [
                        args.litellm,
                        "--config",
                        str(config),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(ll_port),
                        "--num_workers",
                        "1",
                    ],
                    env=env,
                    log=workdir / "litellm.log",
                )
            )
            try:
                _wait(f"http://127.0.0.1:{ll_port}/health/liveliness", procs[-1], 180)
                targets["litellm"] = (ll_port, "/v1/chat/completions", "small", len(procs) - 1)
            except RuntimeError as error:
                litellm_note = (
                    f"LiteLLM proxy did not start: {error}; log: {(workdir / 'litellm.log').read_text()[-500:]}"
                )
        else:
            litellm_note = f"LiteLLM not found at {args.litellm}"
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for round_index in range(args.rounds):
            order = list(targets) if round_index % 2 == 0 else list(reversed(targets))
            for name in order:
                port, path, model, index = targets[name]
                rounds[name].append(_measure(port, path, model, procs[index].pid, args))
                print(f"round {round_index + 1} {name}: {rounds[name][-1]}", flush=True)
        default_router = _default_router_cost(gw_port, args.router_requests) if args.router_requests else None
        print(f"default learned router: {default_router}", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    summary = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in rounds.items()}
    base = summary["upstream"]
    rows = []
    for name, s in summary.items():
        rows.append(
            {
                "target": name,
                "p50_ms": s["p50_ms"],
                "p99_ms": s["p99_ms"],
                "overhead_p50_ms": s["p50_ms"] - base["p50_ms"],
                "overhead_p99_ms": s["p99_ms"] - base["p99_ms"],
                "requests_per_s": s["rps"],
                "server_cpu_ms_per_request": s["cpu_ms_per_request"],
                "errors": int(s["errors"]),
            }
        )
    table = markdown_table(rows, digits=2)
    print(table)
    routed = summary["sizewise-routed"]
    verdict = {"overhead_p50_ms": routed["p50_ms"] - base["p50_ms"], "goal_overhead_ms": GOAL_OVERHEAD_MS}
    verdict["overhead_goal_met"] = verdict["overhead_p50_ms"] <= GOAL_OVERHEAD_MS
    verdict["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    if "litellm" in summary:
        verdict["cpu_ratio_litellm_vs_sizewise"] = (
            summary["litellm"]["cpu_ms_per_request"] / routed["cpu_ms_per_request"]
        )
        verdict["rps_ratio_vs_litellm"] = routed["rps"] / summary["litellm"]["rps"]
        verdict["rps_goal_met"] = verdict["rps_ratio_vs_litellm"] >= GOAL_RPS_RATIO
        verdict["litellm_overhead_p50_ms"] = summary["litellm"]["p50_ms"] - base["p50_ms"]
    payload = {
        "args": vars(args),
        "rounds": rounds,
        "summary": summary,
        "verdict": verdict,
        "litellm_note": litellm_note,
        "default_router": default_router,
    }
    write_json(args.out, payload)
    print(json.dumps(verdict, indent=2))
    if litellm_note:
        print(litellm_note)
    if not args.no_docs:
        lines = [
            "Same requests (one short chat message, max_tokens 16, keep-alive HTTP/1.1) straight to a fast local "
            "fake upstream, through sizewise (request log and metrics on) and through LiteLLM's proxy; all "
            f"processes on this machine, niced. Latency: {args.seq} sequential requests; throughput: "
            f"{args.conc_requests} requests over {args.concurrency} connections; median of {args.rounds} rounds. "
            "`sizewise-routed` asks for `router-heuristic-0.5` (routing on, with the built-in cheap scorer); "
            "`sizewise-bypass` names a catalog model. "
            "`server_cpu_ms_per_request` is the CPU time the serving process (not the upstream) spent per request in "
            "the throughput phase: it is what the gateway costs, and unlike latency it barely moves when other jobs "
            f"load the machine (1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
            f"on {os.cpu_count()} cores).",
            "",
            table,
            "",
            f"- p50 overhead of `sizewise` routing: {verdict['overhead_p50_ms']:.2f} ms "
            f"(goal <= {GOAL_OVERHEAD_MS} ms: {'met' if verdict['overhead_goal_met'] else 'NOT met'})",
        ]
        if "litellm_overhead_p50_ms" in verdict:
            lines.append(
                f"- added latency p50 in the same run: sizewise {verdict['overhead_p50_ms']:.2f} ms, "
                f"LiteLLM's proxy {verdict['litellm_overhead_p50_ms']:.2f} ms"
            )
        if "baseline-routed" in summary:
            lines.append(
                f"- `baseline-routed`: the gateway served from `{args.baseline_src}` in the same rounds, p50 overhead "
                f"{summary['baseline-routed']['p50_ms'] - base['p50_ms']:.2f} ms"
            )
        if "rps_ratio_vs_litellm" in verdict:
            lines.append(
                f"- requests/s vs LiteLLM: {verdict['rps_ratio_vs_litellm']:.2f}x "
                f"(goal >= {GOAL_RPS_RATIO}x: {'met' if verdict['rps_goal_met'] else 'NOT met'}); "
                f"LiteLLM spends {verdict['cpu_ratio_litellm_vs_sizewise']:.1f}x the CPU per request"
            )
        if default_router:
            lines.append(
                f"- the default `sizewise` policy's pretrained router (static embedding + gbdt, on CPU) adds "
                f"{default_router['scoring_p50_ms']:.1f} ms p50 per new prompt on top of that (p50 "
                f"{default_router['default_p50_ms']:.1f} ms, p99 {default_router['default_p99_ms']:.1f} ms over "
                f"{default_router['requests']} sequential new prompts, vs {default_router['bypass_p50_ms']:.1f} ms "
                "naming a model): the price of a learned decision, small next to a local model's generation time"
            )
        if litellm_note:
            lines.append(f"- {litellm_note}")
        command = " ".join(["nice -n 10 .venv/bin/python bench/gateway.py", *sys.argv[1:]])
        update_section("gateway", "Gateway overhead", command, "\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-gateway":
        _gateway_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
