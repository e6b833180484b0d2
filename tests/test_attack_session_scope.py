"""Session affinity must not tell one API key what another key's conversations were.

A session is found by its id (header, metadata, user) or by the conversation's opening, and every answer says
what affinity did (``sizewise.session``: ``new``, ``same``, ``kept``...). Shared between keys, ``same`` told a
client that someone else had opened a conversation with exactly its words ("My test came back positive...").
A live gateway on 127.0.0.1 with two keys, the official openai client, a fake upstream for the models.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.gateway.auth import hash_key

KEYS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayServer]:
    with FakeUpstream() as upstream:
        catalog = {
            "models": [fake_model("small", "ok", 1, upstream.base_url), fake_model("big", "ok", 70, upstream.base_url)],
            "gateway": {
                "log_url": "none",
                "api_keys": [{"name": name, "sha256": hash_key(key)} for name, key in KEYS.items()],
            },
        }
        with GatewayServer(catalog) as gw:
            yield gw


def _session(gateway: GatewayServer, who: str, messages: list[dict[str, Any]], **options: Any) -> str:
    client = openai.OpenAI(base_url=gateway.url, api_key=KEYS[who], max_retries=0, timeout=10)
    answer = client.chat.completions.create(model="sizewise", messages=messages, **options)  # type: ignore[arg-type]
    return str(answer.model_extra["sizewise"]["session"])


def _turns(opening: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    first = [{"role": "user", "content": opening}]
    return first, [*first, {"role": "assistant", "content": "I see."}, {"role": "user", "content": "And now?"}]


def test_another_key_cannot_probe_a_conversation_opening(gateway: GatewayServer) -> None:
    first, later = _turns("My HIV test came back positive, what should I do?")
    assert _session(gateway, "alice", first) == "new"
    assert _session(gateway, "bob", later) == "new"  # shared, this was "same": alice's opening, seen by bob
    assert _session(gateway, "alice", later) == "same"  # alice's own conversation still keeps its model


def test_another_key_cannot_probe_a_session_id(gateway: GatewayServer) -> None:
    header = {"x-sizewise-session-id": "conversation-42"}
    first, later = _turns("Draft the layoff announcement.")
    assert _session(gateway, "alice", first, extra_headers=header) == "new"
    assert _session(gateway, "bob", later, extra_headers=header) == "new"
    assert _session(gateway, "alice", later, extra_headers=header) == "same"
