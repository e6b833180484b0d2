"""``GET /metrics`` on any replica shows every replica's series when they share state (#21).

Two real gateways (uvicorn on 127.0.0.1) share a state database (a SQLite file, and PostgreSQL when
``SIZEWISE_TEST_POSTGRES_URL`` is set); the requests go through the official ``openai`` client; the
scrapes are parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, insert, text

from fakes import FakeUpstream, GatewayServer, fake_model, free_port
from sizewise.gateway.metrics import Metrics
from sizewise.gateway.metrics_shared import STALE_POLLS, SharedMetrics, snapshots_table

POLL_S = 0.2
KEY = "sk-metrics-test"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def _spec(upstream: FakeUpstream, state_url: str | None, **gateway: Any) -> dict[str, Any]:
    models = [fake_model("small", "ok-s", 1, upstream.base_url), fake_model("big", "ok-b", 70, upstream.base_url)]
    state = {"state_url": state_url, "state_poll_s": POLL_S} if state_url else {}
    return {"models": models, "gateway": {"log_url": "none", "router": "heuristic", **state, **gateway}}


def _ask(gateway: GatewayServer, count: int) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key=KEY, max_retries=0)
    for _ in range(count):
        client.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def _root(gateway: GatewayServer) -> str:
    return gateway.url.removesuffix("/v1")


def _scrape(gateway: GatewayServer, scope: str | None = None) -> dict[tuple[str, str], float]:
    """(replica, status) -> ``sizewise_requests_total`` for model ``small``, from one scrape."""
    query = f"?scope={scope}" if scope else ""
    response = httpx.get(f"{_root(gateway)}/metrics{query}", headers={"authorization": f"Bearer {KEY}"}, timeout=10)
    assert response.status_code == 200, response.text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "sizewise_requests_total" and sample.labels["model"] == "small":
                key = (sample.labels.get("replica", "-"), sample.labels["status"])
                counts[key] = counts.get(key, 0) + sample.value
    return counts


def _replica(gateway: GatewayServer) -> str:
    """The gateway's ``replica`` label value (``"none"`` for a gateway that does not share its metrics)."""
    shared: SharedMetrics | None = gateway.app.state.gateway.shared_metrics
    return shared.replica if shared is not None else "none"


def _until(gateway: GatewayServer, expected: dict[tuple[str, str], float], wait_s: float = 10) -> dict[Any, float]:
    """The first scrape equal to ``expected`` (the other replica publishes every POLL_S), else the last."""
    deadline = time.monotonic() + wait_s
    while (counts := _scrape(gateway)) != expected and time.monotonic() < deadline:
        time.sleep(POLL_S / 4)
    return counts


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


def test_metrics_on_either_replica_count_both(upstream: FakeUpstream, state_url: str) -> None:
    with ExitStack() as stack:
        a, b = (stack.enter_context(GatewayServer(_spec(upstream, state_url))) for _ in range(2))
        _ask(a, 3)
        _ask(b, 5)
        expected = {(_replica(a), "200"): 3.0, (_replica(b), "200"): 5.0}
        counts = _until(a, expected)
        assert sum(counts.values()) == 8  # both replicas' requests, whichever answers the scrape
        assert counts == expected
        assert _until(b, expected) == expected  # the same union whichever replica a scrape lands on


def test_without_state_url_metrics_stay_per_process(upstream: FakeUpstream) -> None:
    # The control: apart, each gateway counts only what it answered, with no replica label.
    with GatewayServer(_spec(upstream, None)) as a, GatewayServer(_spec(upstream, None)) as b:
        assert a.app.state.gateway.shared_metrics is None
        _ask(a, 3)
        _ask(b, 5)
        assert _scrape(a) == {("-", "200"): 3.0}


def test_a_replica_that_stops_publishing_leaves_after_the_window(upstream: FakeUpstream, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with GatewayServer(_spec(upstream, url)) as a, GatewayServer(_spec(upstream, url)) as b:
        _ask(b, 2)
        expected = {(_replica(b), "200"): 2.0}
        assert _until(a, expected) == expected
        shared: SharedMetrics = b.app.state.gateway.shared_metrics
        shared._poller.stop()  # b's publisher dies (b itself serves on): its row ages
        stopped = time.monotonic()
        assert _until(a, {}) == {}
        assert time.monotonic() - stopped >= (STALE_POLLS - 1) * POLL_S  # kept for the window, not dropped at once
    # a and b are stopped; a replica that stops cleanly deletes its row at once.
    with create_engine(url).connect() as connection:
        assert connection.execute(snapshots_table.select()).all() == []


def test_a_clean_stop_leaves_at_once(upstream: FakeUpstream, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with GatewayServer(_spec(upstream, url, state_poll_s=60)) as a:
        with GatewayServer(_spec(upstream, url, state_poll_s=60)) as b:
            _ask(b, 1)
            _scrape(b)  # b republishes on its own scrape; its next poll is a minute away
            assert _scrape(a) == {(_replica(b), "200"): 1.0}
        assert _scrape(a) == {}  # 60 s polls: only the delete at b's shutdown explains this


def test_counters_never_step_back_whichever_replica_answers(upstream: FakeUpstream, tmp_path: Path) -> None:
    """A request on b, then a scrape of b and at once one of a: b's counter as each scrape shows it never goes
    down (a decrease is a counter reset to Prometheus, and rate() would count a phantom burst). Polls are a
    minute apart, so only the answering replica's republishing keeps the two scrapes in step."""
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    spec = _spec(upstream, url, state_poll_s=60)
    with GatewayServer(spec) as a, GatewayServer(spec) as b:
        seen = []
        for _ in range(5):
            _ask(b, 1)
            seen += [_scrape(gateway).get((_replica(b), "200"), 0.0) for gateway in (b, a)]
        assert seen == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0]


def test_a_corrupt_or_foreign_row_is_left_out_not_a_500(upstream: FakeUpstream, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with GatewayServer(_spec(upstream, url)) as a:
        _ask(a, 1)
        rows = [
            {"replica": "broken", "published": time.time() + 60, "text": "sizewise_requests_total{model=\n"},
            # A replica of another version with the same name as another type: that family is left out.
            {
                "replica": "other",
                "published": time.time() + 60,
                "text": '# TYPE sizewise_requests_total gauge\nsizewise_requests_total{model="small",status="200"} 9\n',
            },
        ]
        with create_engine(url).begin() as connection:
            connection.execute(insert(snapshots_table), rows)
        assert _scrape(a) == {(_replica(a), "200"): 1.0}


def test_a_failing_database_leaves_this_replicas_own_series(
    upstream: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with GatewayServer(_spec(upstream, url)) as a:
        _ask(a, 2)
        with create_engine(url).begin() as connection:
            connection.execute(text("DROP TABLE metrics_snapshots"))  # the shared database lost it
        assert _scrape(a) == {(_replica(a), "200"): 2.0}  # a 200 with its own counts, not a 500
        assert "shared metrics: database failed (OperationalError)" in caplog.text


def test_metrics_still_need_a_key_when_shared(upstream: FakeUpstream, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    spec = _spec(
        upstream,
        url,
        api_keys=[{"name": "ops", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "dashboard": "all"}],
    )
    with GatewayServer(spec) as a:
        response = httpx.get(f"{_root(a)}/metrics", timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["code"]
        assert _scrape(a) == {}


def test_scope_local_is_this_process_alone_and_a_bad_scope_is_a_400(upstream: FakeUpstream, tmp_path: Path) -> None:
    # For a Prometheus that scrapes every replica itself: the union on each target would count each N times.
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with GatewayServer(_spec(upstream, url)) as a, GatewayServer(_spec(upstream, url)) as b:
        _ask(a, 2)
        _ask(b, 1)
        both = {(_replica(a), "200"): 2.0, (_replica(b), "200"): 1.0}
        assert _until(a, both) == both
        assert _scrape(a, "local") == {("-", "200"): 2.0}
        assert _scrape(a, "all") == both
        response = httpx.get(_root(a) + "/metrics?scope=everything", headers={"authorization": f"Bearer {KEY}"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_scope"
        assert response.json()["error"]["message"] == "scope must be one of all, local, not 'everything'"


# -- two `sizewise serve` processes, one killed -------------------------------------------------------------
def _serve(catalog: Path, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "sizewise.cli.main", "serve", "-c", str(catalog), "--port", str(port)]
    with (folder / f"err-{port}.txt").open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, cwd=folder)
    return process, f"http://127.0.0.1:{port}"


def _ready(process: subprocess.Popen[bytes], url: str, folder: Path, wait_s: float = 60) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = [path.read_text()[-1000:] for path in folder.glob("err-*.txt")]
            raise AssertionError(f"gateway exited {process.returncode}: {errors}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"gateway {url} not ready after {wait_s} s")


def _per_replica(url: str) -> list[float]:
    """``sizewise_requests_total`` per replica (model ``small``), sorted, from one scrape of ``url``."""
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {KEY}"}, timeout=10).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sizewise_requests_total" and sample.labels["model"] == "small":
                replica = sample.labels.get("replica", "-")
                counts[replica] = counts.get(replica, 0) + sample.value
    return sorted(counts.values())


def _poll(url: str, expected: list[float], wait_s: float = 15) -> list[float]:
    deadline = time.monotonic() + wait_s
    while (seen := _per_replica(url)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return seen


@pytest.mark.slow  # two gateway processes start (a few seconds on 2 cores)
def test_a_killed_gateway_process_leaves_the_others_metrics(upstream: FakeUpstream, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    spec = _spec(upstream, url, state_poll_s=0.5, access_log=False)
    catalog = tmp_path / "sizewise.yaml"
    catalog.write_text(json.dumps(spec))  # JSON is YAML
    a, b = _serve(catalog, tmp_path), _serve(catalog, tmp_path)
    try:
        for process, base in (a, b):
            _ready(process, base, tmp_path)
        for (_, base), count in ((a, 3), (b, 4)):
            client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
            for _ in range(count):
                client.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
        assert _poll(a[1], [3.0, 4.0]) == [3.0, 4.0]
        b[0].send_signal(signal.SIGKILL)  # no shutdown: its row stays until it is 3 polls old
        b[0].wait(10)
        killed = time.monotonic()
        assert _per_replica(a[1]) == [3.0, 4.0]  # the dead replica's last counts, within the window
        assert _poll(a[1], [3.0]) == [3.0]
        # 3 polls of 0.5 s less the row's age when b was killed (at most a poll, and some on a loaded machine)
        assert 0.5 <= time.monotonic() - killed <= 15
        a[0].terminate()  # a clean stop (SIGTERM: uvicorn runs the lifespan's shutdown) deletes its row
        a[0].wait(20)  # uvicorn re-raises SIGTERM once shut down: the exit status is -15 either way
        with create_engine(url).connect() as connection:
            left = [row.replica.split(":")[1] for row in connection.execute(snapshots_table.select())]
        assert str(a[0].pid) not in left  # b's stale row may stay until a live replica's next poll deletes it
    finally:
        for process, _ in (a, b):
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_a_scrape_after_the_stop_does_not_bring_the_row_back(tmp_path: Path) -> None:
    # A scrape still in flight while the gateway shuts down: the deleted row stays deleted.
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    metrics = Metrics(["small"])
    shared = SharedMetrics(url, metrics, POLL_S)
    shared.start()
    shared.stop()
    metrics.requests.labels("small", "small", "200").inc()
    assert b'replica="' in shared.render_blocking()  # it still answers, from its live registry
    with create_engine(url).connect() as connection:
        assert connection.execute(snapshots_table.select()).all() == []


# -- sizewise serve --ray: a scrape through Serve's proxy lands on any replica ----------------------------------
@pytest.mark.slow  # a local Ray cluster and 2 gateway replicas (~15 s on 2 cores)
def test_serve_ray_metrics_through_the_proxy_count_both_replicas(upstream: FakeUpstream, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from ray_helpers import serving_on_ray

    spec = _spec(upstream, f"sqlite:///{tmp_path / 'state.sqlite'}", state_poll_s=1)
    (tmp_path / "sizewise.yaml").write_text(json.dumps(spec))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["--replicas", "2", "-c", str(tmp_path / "sizewise.yaml")]
    with serving_on_ray(port, args, tmp_path / "out.txt"):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=60)
        for _ in range(30):
            client.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        time.sleep(2.5)  # every replica has published since (polls of 1 s)
        scrapes = [_per_replica(base) for _ in range(6)]  # each lands on either replica
        # Both replicas, 30 in all, on every scrape (without state_url each showed one replica's ~15).
        assert all(len(seen) == 2 and sum(seen) == 30 for seen in scrapes), scrapes
