"""Ray (#21): the gateway on Ray Serve with 1, 2, 3 replicas against one fast fake upstream, and ``eval`` on a
100k-row outcome table in one process vs over Ray tasks, on the same cores.

Part ``serve``: a local Ray cluster (``--cpus``), the gateway deployed by :func:`sizewise.distributed.run.deploy`
with N replicas (0.5 CPU each) in front of bench/fake_upstream.py; the same keep-alive load (bench/_loadgen.py)
per N: requests/s, p50, p99, and the ratio to one replica. Part ``eval``: a 100k-row table resampled (with
replacement, fixed seed) from a RouteLLM table, ``evaluate`` with ``--cv`` folds of each router, first with
every fit in this process (each fit timed: the per-task cost), then one Ray task per fit; the numbers must
match. From the per-task cost it says what W workers would take: put + ceil(tasks / W) x task + driver.

    python bench/replicas.py [--parts serve,eval] [--requests 2000] [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _loadgen import load
from _results import ROOT, markdown_table, update_section, write_json
from fake_upstream import FakeUpstream, free_port

JSON_PATH = ROOT / "docs" / "results" / "replicas.json"


def _catalog(base_url: str) -> Any:
    from sizewise.catalog.schema import CatalogSpec

    def model(name: str, upstream: str, size: float) -> dict[str, Any]:
        settings = {"base_url": base_url, "model": upstream, "timeout_s": 10.0}
        return {
            "name": name,
            "backend": "openai",
            "context_window": 4096,
            "params_b": size,
            "location": "remote",
            "price_in": size,
            "price_out": 2 * size,
            "settings": settings,
        }

    return CatalogSpec.model_validate(
        {"models": [model("small", "ok-small", 1), model("big", "ok-big", 8)], "gateway": {"log_url": "none"}}
    )


def serve_part(requests: int, concurrency: int, counts: list[int]) -> list[dict[str, Any]]:
    """requests/s and latency of the single-process gateway, then on Ray with each replica count, then with 2
    replicas of which one is killed mid-run; one run each, after a short warm-up."""
    from ray import serve

    from sizewise.distributed.run import deploy

    rows = []
    with FakeUpstream() as upstream:
        spec, port = _catalog(upstream.base_url), free_port()
        rows.append({"run": "one process (sizewise serve)", **_single_process(spec, requests, concurrency)})
        print(rows[-1], flush=True)
        for count in counts:
            started = time.perf_counter()
            deploy(spec, spec.gateway, replicas=count, host="127.0.0.1", port=port)
            ready_s = time.perf_counter() - started
            asyncio.run(load(port, "/v1/chat/completions", "sizewise", 100, concurrency))  # warm every replica
            result = asyncio.run(load(port, "/v1/chat/completions", "sizewise", requests, concurrency, distinct=True))
            rows.append({"run": f"Ray, {count} replica{'s' * (count > 1)}", **result, "deploy_s": ready_s})
            print(rows[-1], flush=True)
        deploy(spec, spec.gateway, replicas=2, host="127.0.0.1", port=port)
        asyncio.run(load(port, "/v1/chat/completions", "sizewise", 100, concurrency))
        rows.append({"run": "Ray, 2 replicas, one killed mid-run", **asyncio.run(_killed(port, requests, concurrency))})
        print(rows[-1], flush=True)
        serve.delete("sizewise")
    for row in rows:
        row["rps_ratio"] = row["rps"] / rows[0]["rps"]
    return rows


def _single_process(spec: Any, requests: int, concurrency: int) -> dict[str, Any]:
    """The same catalog and load on ``sizewise serve`` (one process, no Ray): the baseline of the ratios."""
    import subprocess
    import tempfile

    import httpx
    import yaml

    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "sizewise.yaml"
        config.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True)))
        command = [str(Path(sys.executable).parent / "sizewise"), "serve", "-c", str(config), "--port", str(port)]
        server = subprocess.Popen([*command, "--log-url", "none"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("sizewise serve did not start")
                time.sleep(0.3)
            asyncio.run(load(port, "/v1/chat/completions", "sizewise", 100, concurrency))
            return asyncio.run(load(port, "/v1/chat/completions", "sizewise", requests, concurrency, distinct=True))
        finally:
            server.terminate()
            server.wait(30)


async def _killed(port: int, requests: int, concurrency: int) -> dict[str, Any]:
    """The load, with one of the gateway replicas killed (``ray.kill``) a third of the way through."""
    import ray
    from ray.util import list_named_actors

    replicas = sorted(
        a["name"]
        for a in list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::sizewise#gateway#")
    )
    run = asyncio.create_task(load(port, "/v1/chat/completions", "sizewise", requests, concurrency, distinct=True))
    await asyncio.sleep(requests / 100 / 3)  # about a third of the run at ~100 requests/s
    victim = ray.get_actor(replicas[0], namespace="serve")
    await asyncio.to_thread(ray.kill, victim, no_restart=True)
    result = await run
    return {**result, "killed_after_s": round(requests / 100 / 3, 1)}


def _resampled(name: str, rows: int, seed: int) -> Any:
    """``rows`` prompts drawn with replacement from table ``name``; each draw gets its own prompt id."""
    from dataclasses import replace

    import numpy as np

    from sizewise.cli.tables import read_table

    table = read_table(name)
    picked = np.random.default_rng(seed).integers(0, len(table), rows)
    prompts = table.prompts.iloc[picked].reset_index(drop=True)
    prompts["prompt_id"] = [f"{pid}#{i}" for i, pid in enumerate(prompts["prompt_id"])]
    cells = {
        key: None if getattr(table, key) is None else getattr(table, key)[picked]
        for key in ("quality", "cost", "tokens_in", "tokens_out", "latency", "responses")
    }
    return replace(table, name=f"{name} x{rows}", prompts=prompts, **cells)


def eval_part(dataset: str, rows: int, routers: list[str], cv: int) -> dict[str, Any]:
    """One process vs Ray tasks on the same table; per-task cost and the cluster estimate."""
    import ray

    from sizewise.distributed.batch import ray_fold_map
    from sizewise.evaluation.harness import evaluate, fit_fold

    table = _resampled(dataset, rows, seed=0)
    task_s: list[float] = []

    def timed_local(data: Any, weak: str, strong: str, jobs: list[Any]) -> list[Any]:
        out = []
        for router, train, test in jobs:
            started = time.perf_counter()
            out.append(fit_fold(router, data, train, test, weak, strong))
            task_s.append(time.perf_counter() - started)
        return out

    started = time.perf_counter()
    local = evaluate(table, routers, cv=cv, seed=0, fold_map=timed_local)
    local_s = time.perf_counter() - started
    started = time.perf_counter()
    ray.get(ray.put(table))
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    spread = evaluate(table, routers, cv=cv, seed=0, fold_map=ray_fold_map)
    ray_s = time.perf_counter() - started
    same = json.dumps(local.to_json(), sort_keys=True) == json.dumps(spread.to_json(), sort_keys=True)
    tasks, per_task = len(task_s), sum(task_s) / len(task_s)
    driver_s = local_s - sum(task_s)
    estimate = {w: put_s + math.ceil(tasks / w) * per_task + driver_s for w in (1, 2, 4, 8, 16)}
    return {
        "dataset": dataset,
        "rows": len(table),
        "routers": routers,
        "cv": cv,
        "tasks": tasks,
        "local_s": local_s,
        "ray_s": ray_s,
        "put_s": put_s,
        "task_s": task_s,
        "per_task_s": per_task,
        "driver_s": driver_s,
        "same_numbers": same,
        "rows_per_s_local": len(table) * len(routers) / local_s,
        "rows_per_s_ray": len(table) * len(routers) / ray_s,
        "estimate_s_by_workers": estimate,
    }


def _report(
    serve_rows: list[dict[str, Any]] | None,
    ev: dict[str, Any] | None,
    cpus: int,
    command: str,
    ev_command: str | None = None,
) -> None:
    lines = [f"A local Ray cluster of {cpus} CPUs on this machine (Ray {__import__('ray').__version__})."]
    if serve_rows:
        lines += [
            "",
            "The same catalog, load and fast fake upstream on `sizewise serve` (one process) and on Ray Serve "
            "with N gateway replicas (0.5 CPU each, and a front each), `model: sizewise` (routed), distinct "
            "prompts; one run each. `errors`: requests not answered 200 (a lost request counts here):",
            "",
            markdown_table(serve_rows, ["run", "rps", "rps_ratio", "p50_ms", "p99_ms", "errors"], 2),
            "",
            f"Here every replica, Serve's HTTP proxy, the fronts, the load generator and the fake upstream share "
            f"{cpus} CPUs, so the ratio says what one more replica adds on this machine, not on a cluster, where "
            "each replica brings its own cores. On Ray a request takes three hops (Serve's proxy, a front, a "
            "gateway replica): that is the price of Ray Serve and of resending a request whose replica died "
            "(docs/scaling.md).",
        ]
    if ev:
        lines += [
            "",
            *([f"Command: `{ev_command}`", ""] if ev_command and ev_command != command else []),
            f"`eval` of {', '.join(ev['routers'])} ({ev['cv']}-fold) on {ev['rows']:,} rows resampled from "
            f"{ev['dataset']}: {ev['tasks']} fits; same numbers both ways: {ev['same_numbers']}.",
            "",
            markdown_table(
                [
                    {"run": "one process", "seconds": ev["local_s"], "rows/s": ev["rows_per_s_local"]},
                    {"run": f"Ray tasks ({cpus} CPUs)", "seconds": ev["ray_s"], "rows/s": ev["rows_per_s_ray"]},
                ],
                digits=1,
            ),
            "",
            f"Per fit (task) {ev['per_task_s']:.1f} s; table to the object store {ev['put_s']:.2f} s; "
            f"driver (folds, ranks, curves) {ev['driver_s']:.1f} s; the fits of the one-process run took "
            f"{min(ev['task_s']):.0f} to {max(ev['task_s']):.0f} s (a machine shared with other jobs), so the "
            "ratio of the two runs carries that noise. Estimated on W workers "
            "(put + ceil(tasks/W) x task + driver): "
            + ", ".join(f"W={w}: {s:.0f} s" for w, s in ev["estimate_s_by_workers"].items())
            + f"; past W = {ev['tasks']} fits nothing is left to spread: more folds or routers make more tasks.",
        ]
    update_section("replicas", "Ray: gateway replicas and eval over Ray tasks (issue #21)", command, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="serve,eval")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dataset", default="routellm-mmlu")
    parser.add_argument("--routers", default="tfidf-logreg")
    parser.add_argument("--cv", type=int, default=4)
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from the last JSON")
    args = parser.parse_args()
    if args.report_only:
        last = json.loads(JSON_PATH.read_text())
        commands = last.get("commands", {})
        _report(last.get("serve"), last.get("eval"), last["cpus"], last["command"], commands.get("eval"))
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, address="local", log_to_driver=False)
    parts = set(args.parts.split(","))
    command = "python bench/replicas.py " + " ".join(a for a in sys.argv[1:] if a != "--report-only")
    payload: dict[str, Any] = {"cpus": args.cpus, "command": command.strip()}
    if JSON_PATH.exists():  # a part not run keeps its last numbers (and the section says which command)
        last = json.loads(JSON_PATH.read_text())
        payload.update({part: last[part] for part in ("serve", "eval") if part in last and part not in parts})
        kept = {part: last.get("commands", {}).get(part, last["command"]) for part in ("serve", "eval")}
        payload["commands"] = {part: command.strip() if part in parts else kept[part] for part in kept}
    if "serve" in parts:
        payload["serve"] = serve_part(args.requests, args.concurrency, [1, 2, 3])
    if "eval" in parts:
        payload["eval"] = eval_part(args.dataset, args.rows, args.routers.split(","), args.cv)
        print({k: v for k, v in payload["eval"].items() if k != "task_s"}, flush=True)
    write_json(JSON_PATH, payload)
    ev_command = payload.get("commands", {}).get("eval")
    _report(payload.get("serve"), payload.get("eval"), args.cpus, payload["command"], ev_command)
    ray.shutdown()


if __name__ == "__main__":
    main()
