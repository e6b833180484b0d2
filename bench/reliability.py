"""Reliability of the gateway under hostile input, load and faults (issue #16), bounded in time and count.

Every server runs on 127.0.0.1: the gateway in its own process (``_reliability_servers.Gateway``), fake
upstreams in threads. Parts, each a function that returns its rows (a part that cannot run says
"not measured" and why, instead of stopping the others):

* ``fuzz``: hand-made hostile bodies and seeded random ones -> status counts, 500s (goal 0), requests
  answered vs rows in the request log (goal equal);
* ``memory``: gateway RSS before and after a load of 4 parallel 100 MB uploads plus ordinary requests;
* ``metrics``: 3,000 distinct ``router-heuristic-0.x`` names -> series in /metrics (goal bounded);
* ``privacy``: the placements of ``tests/privacy_cases.py`` (when present) under ``privacy: local-only``
  -> how many reached the remote upstream (goal 0);
* ``budget``: 100 parallel requests against a $0.01 daily limit, English and CJK prompts, one and two
  gateways sharing SQLite (and PostgreSQL when ``SIZEWISE_TEST_POSTGRES_URL`` is set; its
  ``budget_ledger`` rows are deleted first), an upstream that bills every token -> overspend (goal 0);
* ``transport``: an upstream that sends ``103`` / ``100`` before each answer -> answers that reached
  the wrong request (goal 0).

Usage: ``.venv/bin/python bench/reliability.py [--fuzz 1500] [--no-docs]`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _reliability_cases import Case, generated, hand_made  # noqa: E402
from _reliability_servers import Gateway, InterimUpstream, ThreadServer, UsageApp, rss_mb, serve  # noqa: E402
from _results import markdown_table, update_section, write_json  # noqa: E402
from fake_upstream import FakeUpstream  # noqa: E402

ROOT = BENCH.parent
CHAT = "/v1/chat/completions"
LIMIT_USD = 0.01
PRICES = {"small": (1.0, 2.0), "big": (4.0, 8.0)}  # USD per 1M tokens in / out


def catalog(base_url: str, log_url: str, **gateway: Any) -> dict[str, Any]:
    """Two remote models (``small``, ``big``) on one upstream; the heuristic router decides."""
    models = [
        {
            "name": name,
            "backend": "openai",
            "context_window": 32768,
            "params_b": size,
            "price_in": price[0],
            "price_out": price[1],
            "location": "remote",
            "settings": {"base_url": base_url, "model": name},
        }
        for (name, price), size in zip(PRICES.items(), (0.5, 1.5), strict=True)
    ]
    return {"models": models, "gateway": {"log_url": log_url, "router": "heuristic", **gateway}}


async def send_all(url: str, cases: Iterable[Case], concurrency: int, deadline: float) -> Counter[int]:
    """POST every case (until ``deadline``) over ``concurrency`` connections; status counts (0: no answer)."""
    statuses: Counter[int] = Counter()
    queue = iter(cases)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def worker() -> None:
            for body, headers in queue:
                if time.monotonic() > deadline:
                    return
                try:
                    response = await client.post(CHAT, content=body, headers=headers)
                    statuses[response.status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def logged_rows(db: Path, expected: int, wait_s: float = 10.0) -> int:
    """Rows in the SQLite request log, once they reach ``expected`` or stop growing."""
    deadline, last, stable = time.monotonic() + wait_s, -1, 0
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as connection:
            count = int(connection.execute("SELECT count(*) FROM requests").fetchone()[0])
        stable = stable + 1 if count == last else 0
        if count >= expected or stable >= 5:
            return count
        last = count
        time.sleep(0.2)
    return last


def part_fuzz(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Hostile and random requests: statuses, 500s, answered vs logged."""
    db = work / "fuzz.sqlite"
    with FakeUpstream() as up, Gateway(catalog(up.base_url, f"sqlite:///{db}")) as gw:
        cases = [*hand_made(), *generated(args.fuzz)]
        statuses = asyncio.run(send_all(gw.url, cases, 8, time.monotonic() + args.part_s))
        answered = sum(n for status, n in statuses.items() if status)
        logged = logged_rows(db, answered)
    return {
        "cases": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors_500": statuses[500],
        "no_answer": statuses[0],
        "answered": answered,
        "logged": logged,
    }


async def _upload(port: int, size: int) -> str:
    """Stream ``size`` bytes of one JSON string as a chunked body; what the gateway said (or did)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    piece, head = b"a" * (1 << 20), b'{"messages": [{"role": "user", "content": "'
    sent = 0
    try:
        writer.write(b"%x\r\n%s\r\n" % (len(head), head))
        while sent < size:
            writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            await writer.drain()
            sent += len(piece)
        writer.write(b'3\r\n"}]\r\n0\r\n\r\n')
        status = (await asyncio.wait_for(reader.readline(), 60)).decode()[9:12]
    except (ConnectionError, TimeoutError):
        status = "closed"
        with contextlib.suppress(ConnectionError, TimeoutError):
            status = (await asyncio.wait_for(reader.readline(), 5)).decode()[9:12] or "closed"
    writer.close()
    return status


def part_memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Gateway RSS before and after 4 parallel 100 MB uploads plus ordinary load."""
    ok: Case = (b'{"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}', {})
    with FakeUpstream() as up, Gateway(catalog(up.base_url, f"sqlite:///{work / 'mem.sqlite'}")) as gw:
        assert gw.proc is not None
        asyncio.run(send_all(gw.url, [ok] * 200, 4, time.monotonic() + 30))  # warm up
        before = rss_mb(gw.proc.pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak.append(rss_mb(gw.proc.pid))  # type: ignore[union-attr]

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        async def load() -> tuple[list[str], Counter[int]]:
            uploads = asyncio.gather(*(_upload(gw.port, 100 << 20) for _ in range(4)))
            ordinary = send_all(gw.url, [ok] * args.load, 8, time.monotonic() + args.part_s)
            return await asyncio.gather(uploads, ordinary)  # type: ignore[return-value]

        uploads, statuses = asyncio.run(load())
        time.sleep(1)
        after = rss_mb(gw.proc.pid)
        done.set()
    return {
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(max(peak), 1),
        "rss_after_mb": round(after, 1),
        "uploads": dict(Counter(uploads)),
        "load_statuses": {str(k): v for k, v in statuses.items()},
    }


def part_metrics(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """3,000 distinct policy names: how many series /metrics holds afterwards."""
    names = [
        f'{{"model": "router-heuristic-0.{i}", "messages": [{{"role": "user", "content": "hi"}}]}}'
        for i in range(args.names)
    ]
    with FakeUpstream() as up, Gateway(catalog(up.base_url, "none")) as gw:
        statuses = asyncio.run(send_all(gw.url, [(n.encode(), {}) for n in names], 8, time.monotonic() + args.part_s))
        text = httpx.get(gw.url + "/metrics", timeout=30).text
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {"names_sent": sum(statuses.values()), "series": len(series), "metrics_bytes": len(text.encode())}


def part_privacy(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Each personal-data placement of tests/privacy_cases.py: did it reach the remote model?"""
    from _reliability_privacy import run_privacy_cases

    if not (ROOT / "tests" / "privacy_cases.py").exists():
        return {"not_measured": "tests/privacy_cases.py not found"}
    sys.path.insert(0, str(ROOT / "tests"))
    return run_privacy_cases(importlib.import_module("privacy_cases"), work)


def _spent(app: UsageApp) -> float:
    return sum((p * PRICES[m][0] + c * PRICES[m][1]) / 1e6 for m, p, c in app.bills)


def budget_run(prompt: str, gateways: int, log_url: str, requests: int = 100) -> dict[str, Any]:
    """``requests`` parallel requests split over ``gateways`` sharing ``log_url``; spend vs the limit."""
    body = httpx.Request(
        "POST", "/", json={"model": "sizewise", "messages": [{"role": "user", "content": prompt}], "max_tokens": 100}
    ).content
    with ThreadServer(UsageApp()) as up:
        spec = catalog(up.base_url, log_url, daily_budget_usd=LIMIT_USD)
        servers = [Gateway(spec) for _ in range(gateways)]
        for server in servers:
            server.__enter__()
        try:

            async def fire() -> list[Counter[int]]:
                share = [(body, {})] * (requests // gateways)
                deadline = time.monotonic() + 60
                return await asyncio.gather(*(send_all(s.url, share, 50, deadline) for s in servers))

            statuses = sum(asyncio.run(fire()), Counter())
        finally:
            for server in servers:
                server.__exit__()
        spent = _spent(up.app)
    return {
        "answered_200": statuses[200],
        "refused_429": statuses[429],
        "other": sum(n for s, n in statuses.items() if s not in (200, 429)),
        "spent_usd": round(spent, 6),
        "limit_usd": LIMIT_USD,
        "overspend_pct": round(max(0.0, spent - LIMIT_USD) / LIMIT_USD * 100, 1),
        "used_pct": round(spent / LIMIT_USD * 100, 1),
    }


@contextlib.contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A URL whose tables live in a fresh schema of ``base``, dropped afterwards (as tests/pg_helpers.py)."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"create schema {schema}"))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


def part_budget(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Overspend against a $0.01 day, English and CJK, one and two gateways, SQLite (and PostgreSQL)."""
    prompts = {"english": ("The quick brown fox jumps over the lazy dog. " * 23)[:1000], "cjk": "数据隐私保护" * 167}
    postgres = os.environ.get("SIZEWISE_TEST_POSTGRES_URL")
    runs: dict[str, Any] = {}
    for store in ("sqlite", "postgresql") if postgres else ("sqlite",):
        for language, prompt in prompts.items():
            for gateways in (1, 2):
                name = f"{language}-{gateways}gw-{store}"
                if store == "sqlite":
                    runs[name] = budget_run(prompt, gateways, f"sqlite:///{work / name}.sqlite")
                    continue
                with postgres_schema(str(postgres)) as url:
                    runs[name] = budget_run(prompt, gateways, url)
    if not postgres:
        runs["postgresql"] = {"not_measured": "SIZEWISE_TEST_POSTGRES_URL not set"}
    return runs


def part_transport(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Sequential requests, each with its own secret, through an upstream sending a 1xx first."""
    results: dict[str, Any] = {}
    for label, interim in (
        ("103", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"),
        ("100", b"HTTP/1.1 100 Continue\r\n\r\n"),
    ):
        with InterimUpstream(interim) as up, Gateway(catalog(up.base_url, "none")) as gw:
            wrong = failed = 0
            with httpx.Client(base_url=gw.url, timeout=20) as client:
                for i in range(8):
                    secret = f"user{i}-secret-{i * 1111}"
                    body = {"model": "small", "messages": [{"role": "user", "content": secret}]}
                    response = client.post(CHAT, json=body)
                    if response.status_code != 200:
                        failed += 1
                    elif secret not in response.json()["choices"][0]["message"]["content"]:
                        wrong += 1
        results[f"interim_{label}"] = {"requests": 8, "wrong_answer": wrong, "failed": failed}
    return results


PARTS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "fuzz": part_fuzz,
    "memory": part_memory,
    "metrics": part_metrics,
    "privacy": part_privacy,
    "budget": part_budget,
    "transport": part_transport,
}


def run_parts(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every selected part; one that fails is recorded as not measured, with the reason."""
    results: dict[str, Any] = {}
    for name, part in PARTS.items():
        if args.parts and name not in args.parts:
            continue
        started = time.monotonic()
        try:
            results[name] = part(args, work)
        except Exception as error:  # one broken part must not hide the others' numbers
            results[name] = {"not_measured": f"{type(error).__name__}: {error}"[:300]}
        results[name]["seconds"] = round(time.monotonic() - started, 1)
        print(f"{name}: {results[name]}", flush=True)
    return results


def main() -> None:
    from _reliability_table import table_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=1500, help="random requests")
    parser.add_argument("--load", type=int, default=1000, help="ordinary requests during the upload load")
    parser.add_argument("--names", type=int, default=3000, help="distinct router-... names sent")
    parser.add_argument("--part-s", type=float, default=40.0, help="time limit of each part's request loop")
    parser.add_argument("--parts", nargs="*", choices=list(PARTS), help="run only these parts")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "reliability.json"))
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/results.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_parts(args, Path(tmp))
    rows = table_rows(results)
    table = markdown_table(rows, ["what", "measured", "goal"])
    print(table)
    write_json(args.out, results)
    if not args.no_docs:
        note = (
            "All servers on 127.0.0.1; the gateway in its own process, request log on SQLite. Budget: a $0.01 day, "
            "100 parallel requests of 1,000 characters with max_tokens 100 (a request that fits once those in "
            "flight settle waits for them, gateway.budget_wait_s 5 s); the upstream bills one token per "
            "non-ASCII character and per four ASCII ones, and every max_tokens token. Each request reserves a "
            "bound that holds for any tokenizer (the prompt's UTF-8 bytes), so a burst stops when one more "
            "bound would pass the limit, leaving less than one bound unspent ($0.0013 English, $0.0034 CJK: a "
            "burst spends at least 87% and 66%). PostgreSQL rows run when "
            "SIZEWISE_TEST_POSTGRES_URL is set (.ci/run sets it). Run with PYTHONPATH=<other checkout>/src to "
            "measure another version the same way. Full numbers in docs/results/reliability.json."
        )
        command = "SIZEWISE_TEST_POSTGRES_URL=... .venv/bin/python bench/reliability.py"
        update_section("reliability", "Reliability", command, f"{table}\n\n{note}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
