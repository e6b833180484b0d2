"""One promoted router for every replica (issue #21, shared state): ``sizewise router promote|rollback -c``
with a catalog whose gateway has a ``state_url`` records the version in that database, and two running
gateways, each with its own router directory (no shared disk), route with it within a bounded time.
Real gateways on 127.0.0.1, the real CLI in a subprocess, real SQLite and the PostgreSQL ``.ci/run``
starts (``SIZEWISE_TEST_POSTGRES_URL``; skipped with the reason without it)."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import yaml

from fakes import FakeUpstream, GatewayServer, fake_model
from learned_helpers import planted_pair
from sizewise.learn.shared_router import SharedRouter
from sizewise.learn.versions import RouterVersions
from sizewise.routers.baselines import AlwaysLargeRouter, AlwaysSmallRouter

POLL_S = 0.2
#: How long a promotion may take to reach a replica here: a poll, the router's load, a loaded machine.
BOUND_S = 15.0


def _routed(gateway: GatewayServer) -> str:
    body = {"model": "sizewise", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    response = httpx.post(f"{gateway.url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["x-sizewise-model"]


def _until(gateways: list[GatewayServer], model: str) -> float:
    """Seconds until every gateway routes to ``model`` (fails after :data:`BOUND_S`)."""
    started = time.monotonic()
    while {_routed(g) for g in gateways} != {model}:
        assert time.monotonic() - started < BOUND_S, f"not every replica routes to {model} after {BOUND_S} s"
        time.sleep(0.05)
    return time.monotonic() - started


def _cli(*args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "sizewise.cli.main", "router", *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.slow  # two gateways and two CLI processes
def test_a_promotion_and_a_rollback_reach_every_replica(tmp_path: Path, db_url: str) -> None:
    admin = tmp_path / "admin"  # where the operator's CLI keeps the versions
    small = AlwaysSmallRouter().fit(planted_pair(40)).save(tmp_path / "small.zip")
    large = AlwaysLargeRouter().fit(planted_pair(40)).save(tmp_path / "large.zip")
    versions = RouterVersions(admin, state_url=db_url)
    first, second = versions.add(small), versions.add(large)
    versions.promote(first, reason="the first")
    with FakeUpstream() as upstream, ExitStack() as stack:
        spec = {
            "models": [
                fake_model("small", "ok-s", 1, upstream.base_url),
                fake_model("big", "ok-b", 70, upstream.base_url),
            ],
            "gateway": {"log_url": "none", "state_url": db_url, "state_poll_s": POLL_S},
        }
        catalog = tmp_path / "sizewise.yaml"  # the operator's: the same models, the admin directory
        catalog.write_text(yaml.safe_dump({**spec, "gateway": {**spec["gateway"], "router_dir": "admin"}}))
        # Each replica its own, empty router directory: the promoted file comes from the database.
        gateways = [stack.enter_context(GatewayServer(spec, router_dir=tmp_path / f"replica{i}")) for i in range(2)]
        assert [_routed(g) for g in gateways] == ["small", "small"]
        assert "promoted v0002" in _cli("promote", second, "-c", str(catalog))
        took = _until(gateways, "big")
        assert "rolled back to v0001" in _cli("rollback", "-c", str(catalog))
        took_back = _until(gateways, "small")
        assert [g.app.state.gateway.engine.router_watch.version for g in gateways] == [first, first]
    print(f"promotion reached both replicas in {took:.2f} s, the rollback in {took_back:.2f} s (poll {POLL_S} s)")
    shared = SharedRouter(db_url)
    current = shared.current()
    shared.close()
    assert current is not None and current.version == first


def test_without_a_state_url_nothing_is_shared(tmp_path: Path) -> None:
    """Memory stays the default: no state_url, no watch, and promotions touch only the directory."""
    small = AlwaysSmallRouter().fit(planted_pair(40)).save(tmp_path / "small.zip")
    versions = RouterVersions(tmp_path / "routers")
    versions.promote(versions.add(small), reason="the first")
    with FakeUpstream() as upstream:
        spec = {
            "models": [
                fake_model("small", "ok-s", 1, upstream.base_url),
                fake_model("big", "ok-b", 70, upstream.base_url),
            ],
            "gateway": {"log_url": "none"},
        }
        with GatewayServer(spec, router_dir=tmp_path / "routers") as gateway:
            assert gateway.app.state.gateway.engine.router_watch is None
            assert _routed(gateway) == "small"
