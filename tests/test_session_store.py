"""The SQL session store (issue #21, shared state): the memory store's interface, a TTL, and a claim that
replicas racing on a new session agree on (first writer wins). Real SQLite, and the real PostgreSQL that
``.ci/run`` starts (``SIZEWISE_TEST_POSTGRES_URL``; skipped with the reason without it)."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.catalog.schema import GatewaySettings
from sizewise.errors import ConfigError
from sizewise.serve.session import MemorySessionStore
from sizewise.serve.session_sql import SqlSessionStore, session_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_get_put_claim_and_ttl(db_url: str) -> None:
    clock = Clock()
    store = SqlSessionStore(db_url, ttl_s=100, clock=clock)
    try:
        assert store.get("header:a") is None
        assert store.claim("header:a", "small") == "small"
        assert store.claim("header:a", "big") == "small"  # a live session keeps its first model
        assert store.get("header:a") == "small"
        store.put("header:a", "big")  # a switched session is overwritten
        assert store.get("header:a") == "big"
        clock.now += 90
        assert store.get("header:a") == "big"  # refreshed: 90 s after its last use it is alive
        clock.now += 90
        assert store.get("header:a") == "big"
        clock.now += 101
        assert store.get("header:a") is None  # expired
        assert store.claim("header:a", "small") == "small"  # an expired session is new again
        assert len(store) == 1
    finally:
        store.close()


def test_racing_replicas_agree_on_a_new_session(db_url: str) -> None:
    """Eight replicas (each its own engine and connections) claim the same new sessions at once with
    different models: each session ends with one model, and every replica was told that one."""
    stores = [SqlSessionStore(db_url, ttl_s=3600) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    told: dict[tuple[int, str], str] = {}

    def replica(index: int) -> None:
        barrier.wait()
        for session in range(20):
            key = f"header:s{session}"
            told[(index, key)] = stores[index].claim(key, f"model-{index}")

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(len(stores))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for session in range(20):
            key = f"header:s{session}"
            answers = {told[(i, key)] for i in range(len(stores))}
            assert len(answers) == 1, f"{key}: replicas were told {answers}"
            assert stores[0].get(key) == answers.pop()
    finally:
        for store in stores:
            store.close()


def test_the_store_follows_the_settings(tmp_path: Path) -> None:
    assert isinstance(session_store(GatewaySettings()), MemorySessionStore)  # no database: memory, as before
    log = f"sqlite:///{tmp_path / 'log.sqlite'}"
    shared = session_store(GatewaySettings(log_url=log, state_url="log"))
    assert isinstance(shared, SqlSessionStore) and shared.url == log
    shared.close()
    with pytest.raises(ConfigError, match="state_url is 'log' but gateway\\.log_url is 'none'"):
        session_store(GatewaySettings(log_url="none", state_url="log"))
    with pytest.raises(ConfigError, match="session store"):
        session_store(GatewaySettings(state_url="nosuchdb://x"))
    pytest.importorskip("psycopg")
    with pytest.raises(ConfigError, match=r"session store .*cannot create table") as refused:
        session_store(GatewaySettings(state_url="postgresql+psycopg://me:secret@127.0.0.1:1/db"))
    assert "secret" not in str(refused.value)  # the error names the database, not its password


def test_a_failing_database_costs_affinity_not_the_request(tmp_path: Path) -> None:
    store = SqlSessionStore(f"sqlite:///{tmp_path / 'state.sqlite'}", ttl_s=60)
    store.claim("header:a", "small")
    (tmp_path / "state.sqlite").unlink()
    (tmp_path / "state.sqlite").mkdir()  # the file is gone and cannot be recreated: every query fails
    store.engine.dispose()
    assert store.get("header:a") is None
    assert store.claim("header:b", "big") == "big"
    store.put("header:b", "small")  # logged, not raised
    store.close()


def _turn(gateway: Any, messages: list[dict[str, str]]) -> tuple[str, str]:
    body = {"model": "sizewise", "messages": messages, "max_tokens": 4}
    headers = {"x-sizewise-session-id": "conversation-1"}
    response = httpx.post(f"{gateway.url}/chat/completions", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["x-sizewise-model"], response.headers["x-sizewise-session"]


@pytest.mark.parametrize("shared", [True, False])
def test_two_gateways_on_one_sqlite_file_keep_a_session_on_its_model(tmp_path: Path, shared: bool) -> None:
    """A conversation opened on one gateway and continued on another with a prompt the router sends to the
    big model stays on the small one when they share ``state_url``; in memory the second gateway has
    never seen it (the control)."""
    hard = "Prove step by step that 17 * 23 = 391, then derive 2^10 - 7 * 13 and explain each step. " * 8
    with FakeUpstream() as upstream, ExitStack() as stack:
        models = [fake_model("small", "ok-s", 1, upstream.base_url), fake_model("big", "ok-b", 70, upstream.base_url)]
        state = {"state_url": f"sqlite:///{tmp_path / 'state.sqlite'}"} if shared else {}
        spec = {
            "models": models,
            "gateway": {"log_url": "none", "router": "heuristic", "session_margin": None, **state},
        }
        first, second = (stack.enter_context(GatewayServer(spec)) for _ in range(2))
        messages = [{"role": "user", "content": "hi"}]
        assert _turn(first, messages) == ("small", "new")
        messages += [{"role": "assistant", "content": "hello"}, {"role": "user", "content": hard}]
        assert _turn(second, messages) == (("small", "kept") if shared else ("big", "new"))
