"""Several gateway replicas decide as one (issue #21, shared state): three ``sizewise serve`` processes on
127.0.0.1 share the real PostgreSQL that ``.ci/run`` starts (``SIZEWISE_TEST_POSTGRES_URL``; skipped with
the reason without it), one billing fake upstream answers them all, and an httpx async client spreads
100-300 concurrent requests over two or three of them:

* a session is pinned across replicas: every turn of a conversation is answered by the model of its first
  turn, whichever replica takes it (the router, ``router-random-0.5``, would pick a fresh model each turn);
* a spend limit is exact across replicas: the upstream never bills more than the limit, what was billed
  is what the ledger settled, and every request over it is a 429 ``budget_exceeded``;
* one request log holds a row for every request, whichever replica answered it.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from billing_upstream import BillingUpstream, byte_tokens
from fakes import free_port
from learned_helpers import planted_pair
from pg_helpers import postgres_url as _postgres_url
from sizewise.routers.baselines import RandomRouter

pytestmark = pytest.mark.slow  # three gateway processes start (~10 s on 2 cores), then 330 requests

REPLICAS = 3
FREE, CAPPED = "free-key-" + uuid.uuid4().hex, "capped-key-" + uuid.uuid4().hex
#: Room for about 40 of the capped requests, not a whole number of them (so a race on the last one shows).
LIMIT = 0.0405
CATALOG = """models:
{models}
gateway:
  log_url: "{url}"
  state_url: log
  session_keys: [header]
  session_margin: null
  router_dir: routers
  budget_wait_s: 2
  access_log: false
  api_keys:
    - {{name: free, sha256: "{free}"}}
    - {{name: capped, sha256: "{capped}", daily_budget_usd: {limit}}}
"""
MODEL = """  - name: {name}
    backend: openai
    context_window: 8192
    location: remote
    params_b: {params}
    price_in: {price}
    price_out: {price2}
    settings: {{base_url: "{base}", model: "up-{name}", timeout_s: 10}}"""
# metered: the written tokens cost nearly all, so a reservation is within ~3% of the bill and a replica
# that reserved without seeing another's reservation would overspend.
PRICES = {"small": (1.0, 2.0), "big": (5.0, 10.0), "metered": (0.1, 1.0)}


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    yield from _postgres_url()


@pytest.fixture(scope="module")
def upstream() -> Iterator[BillingUpstream]:
    with BillingUpstream(byte_tokens, delay_s=0.05) as up:
        yield up


def _start(catalog: Path, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "sizewise.cli.main", "serve", "-c", str(catalog), "--port", str(port)]
    with (folder / f"err-{port}.txt").open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, cwd=folder)
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(process: subprocess.Popen[bytes], url: str, folder: Path, wait_s: float = 120.0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        assert process.poll() is None, f"replica exited {process.returncode}: {list(folder.glob('err-*'))}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"replica {url} not ready after {wait_s} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def replicas(postgres_url: str, upstream: BillingUpstream, tmp_path_factory: Any) -> Iterator[list[str]]:
    """Base URLs of three gateway processes sharing one PostgreSQL (log, ledger, sessions)."""
    folder = tmp_path_factory.mktemp("replicas")
    models = [
        MODEL.format(name=n, params=p, price=PRICES[n][0], price2=PRICES[n][1], base=upstream.base_url)
        for n, p in (("small", 1), ("big", 70), ("metered", 0.5))
    ]
    RandomRouter().fit(planted_pair(40)).save(folder / "routers" / "random.zip")
    catalog = folder / "sizewise.yaml"
    catalog.write_text(
        CATALOG.format(models="\n".join(models), url=postgres_url, free=_sha(FREE), capped=_sha(CAPPED), limit=LIMIT)
    )
    started = [_start(catalog, folder) for _ in range(REPLICAS)]
    try:
        for process, url in started:
            _wait_ready(process, url, folder)
        yield [url for _, url in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            process.wait(20)


def _limits(connections: int) -> httpx.Limits:
    # Idle connections dropped well before uvicorn's 5 s keep-alive ends, or a request may go out on a
    # connection the server is closing (httpx.ReadError on a loaded machine).
    return httpx.Limits(max_connections=connections, keepalive_expiry=1.0)


def _log_rows(url: str, key: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(text("select count(*) from requests where api_key = :k"), {"k": key}).scalar()
            )
    finally:
        engine.dispose()


def _wait_log(url: str, key: str, expected: int, wait_s: float = 30.0) -> int:
    """The log's rows for ``key`` once the replicas' writers caught up (or the count after ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while (rows := _log_rows(url, key)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return rows


async def _conversation(client: httpx.AsyncClient, urls: list[str], first: int, turns: int) -> list[tuple[str, str]]:
    """One session's turns, the first on replica ``first``, each next one on the next replica:
    (model that answered, what the session did) per turn."""
    session = f"conv-{uuid.uuid4().hex}"
    headers = {"authorization": f"Bearer {FREE}", "x-sizewise-session-id": session}
    messages: list[dict[str, str]] = []
    seen = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"question {turn} of {session}: what is {turn} + {first}?"})
        url = urls[(first + turn) % len(urls)]
        body = {"model": "router-random-0.5", "messages": messages, "max_tokens": 8}
        response = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200, response.text
        seen.append((response.headers["x-sizewise-model"], response.headers.get("x-sizewise-session", "")))
        messages.append({"role": "assistant", "content": response.json()["choices"][0]["message"]["content"]})
    return seen


@pytest.mark.parametrize("count", [2, 3])
def test_a_session_stays_on_its_model_across_replicas(replicas: list[str], postgres_url: str, count: int) -> None:
    """60 conversations at once, three turns each, every turn on another replica (180 requests): each
    conversation is answered by one model. Sessions in process memory fail this (about half the turns
    taken by another replica move to the model the random router picks afresh)."""
    urls, sessions, turns = replicas[:count], 60, 3
    before = _log_rows(postgres_url, "free")

    async def run() -> list[list[tuple[str, str]]]:
        limits = _limits(sessions * count)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(_conversation(client, urls, i % count, turns) for i in range(sessions)))

    conversations = asyncio.run(run())
    moved = [c for c in conversations if len({model for model, _ in c}) > 1]
    assert not moved, f"{len(moved)} of {sessions} conversations changed model across replicas: {moved[:3]}"
    assert Counter(model for c in conversations for model, _ in c[:1]).keys() == {"small", "big"}  # both pinned
    assert {status for c in conversations for _, status in c[1:]} <= {"same", "kept"}
    assert _wait_log(postgres_url, "free", before + sessions * turns) == before + sessions * turns  # one log


def test_a_spend_limit_is_exact_across_replicas(
    replicas: list[str], postgres_url: str, upstream: BillingUpstream
) -> None:
    """150 requests at once spread over three replicas against a daily limit that holds about 40: the
    upstream bills at most the limit, the ledger settled exactly what it billed, the rest got 429
    budget_exceeded. A ledger that reserves without locking out the other replicas fails this."""
    n = 150
    prompt = "Tell me a short fact about the number seven."

    async def one(client: httpx.AsyncClient, url: str) -> httpx.Response:
        body = {"model": "metered", "messages": [{"role": "user", "content": prompt}], "max_tokens": 1000}
        return await client.post(f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {CAPPED}"})

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, limits=_limits(n)) as client:
            return await asyncio.gather(*(one(client, replicas[i % len(replicas)]) for i in range(n)))

    responses = asyncio.run(run())
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    refused = [r for r in responses if r.status_code == 429]
    assert refused, "the limit let every request through: the test proves nothing"
    assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
    assert _wait_log(postgres_url, "capped", n) == n  # one log: every request, answered or refused
    billed = upstream.cost({f"up-{n}": PRICES[n] if n == "metered" else (0.0, 0.0) for n in PRICES})
    assert billed <= LIMIT + 1e-12, f"the upstream billed ${billed:.6f} against a ${LIMIT} limit"
    assert billed >= 0.5 * LIMIT, f"only ${billed:.6f} of ${LIMIT} spent: {statuses}"
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        spent = connection.execute(text("select coalesce(sum(spent), 0) from budget_ledger where settled")).scalar()
        still_open = connection.execute(text("select count(*) from budget_ledger where not settled")).scalar()
    engine.dispose()
    assert still_open == 0
    assert float(spent or 0.0) == pytest.approx(billed)
    assert statuses[200] == sum(1 for model, _, _ in upstream.billed if model == "up-metered")
