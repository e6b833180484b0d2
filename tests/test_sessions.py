"""Session affinity (issue #18 item 4): an agent's turns stay on the model its first turn got.

Through the running gateway with the official ``openai`` client, the ``heuristic`` router (threshold
0.5, whose score grows with the conversation's length) and a recording upstream playing both models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes import GatewayServer, fake_model
from recording_upstream import RecordingUpstream
from sizewise.catalog.schema import GatewaySettings
from sizewise.core.chat import ChatRequest
from sizewise.core.text import conversation_text
from sizewise.policy.routing import HeuristicScorer
from sizewise.serve.session import MAX_ID_CHARS, MemorySessionStore, session_of, sources

SYSTEM = {"role": "system", "content": "You are a coding agent. Use the tools."}
TASK = {"role": "user", "content": "Rename the config loader and fix its tests."}
TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {}}}}]
HARD = (
    "Prove step by step that the integral of x^2 from 0 to 3 equals 9, then derive and solve the equation "
    "3x + 7 = 22, compute 12 * 34, analyze the algorithm's complexity and implement it: ```def f(x): ...```"
)


def agent_turn(turn: int) -> list[dict[str, Any]]:
    """One agent step: the assistant calls a tool, the tool answers (long output: the score climbs)."""
    call = {"id": f"call_{turn}", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}
    out = f"src/loader.py line {turn}: settings are read from the environment and merged into the defaults; " * 3
    return [
        {"role": "assistant", "content": "Reading the next file.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"call_{turn}", "content": out},
    ]


def score(messages: list[dict[str, Any]]) -> float:
    return HeuristicScorer().score([conversation_text(messages)])[0]


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


def serve(upstream: RecordingUpstream, tmp: Path, **settings: Any) -> GatewayServer:
    models = [
        fake_model("small", "up-small", 0.5, upstream.base_url),
        fake_model("big", "up-big", 1.5, upstream.base_url, context_window=16384),
    ]
    gateway = {"log_url": f"sqlite:///{tmp / 'log.sqlite'}", "router": "heuristic", **settings}
    return GatewayServer({"models": models, "gateway": gateway})


def ask(gw: GatewayServer, messages: list[dict[str, Any]], **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """(the model that answered, the ``sizewise`` decision object), streamed (from the last chunk) or not."""
    client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="sizewise", messages=messages, **kwargs)
    if not kwargs.get("stream"):
        decision = raw.parse().model_extra["sizewise"]
    else:
        decision = [c.model_extra["sizewise"] for c in raw.parse() if "sizewise" in (c.model_extra or {})][-1]
    assert raw.headers["x-sizewise-session"] == (decision["session"] or "")  # a header too, before the body
    return raw.headers["x-sizewise-model"], decision


def test_ten_agent_turns_stay_on_one_model_although_the_router_would_switch(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    conversation = [SYSTEM, TASK]
    turns = []
    for turn in range(10):
        turns.append(conversation)
        conversation = [*conversation, *agent_turn(turn)]
    scores = [score(messages) for messages in turns]
    assert scores[0] < 0.5 <= scores[-1] < 0.5 + GatewaySettings().session_margin  # type: ignore[operator]
    with serve(upstream, tmp_path) as gw:
        before = len(upstream.bodies)
        # Agents stream: every other turn is streamed (the session is pinned and kept either way).
        answers = [ask(gw, messages, tools=TOOLS, stream=turn % 2 == 1) for turn, messages in enumerate(turns)]
    assert [model for model, _ in answers] == ["small"] * 10
    assert upstream.models()[before:] == ["up-small"] * 10
    assert [bool(body.get("stream")) for body in upstream.bodies[before:]] == [turn % 2 == 1 for turn in range(10)]
    assert upstream.bodies[-1]["messages"][-1]["role"] == "tool"  # tool messages in history reached the model
    sessions = [decision["session"] for _, decision in answers]
    assert sessions[0] == "new" and set(sessions[1:]) == {"same", "kept"}
    kept = [decision for _, decision in answers if decision["session"] == "kept"]
    assert len(kept) == sum(s >= 0.5 for s in scores)  # affinity applied exactly where the router would switch
    assert kept[0]["reason"].startswith("sticky session: kept small over big (score ")
    # Without sessions the same gateway setup switches to the big model on the later turns.
    with serve(upstream, tmp_path, session_keys=[]) as gw:
        assert ask(gw, turns[-1], tools=TOOLS)[0] == "big"
        assert ask(gw, turns[-1], tools=TOOLS)[1]["session"] is None


def test_a_session_id_header_keeps_different_conversations_together_until_the_router_is_confident(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    hard = [{"role": "user", "content": HARD}]
    assert score(hard) - 0.5 > GatewaySettings().session_margin  # type: ignore[operator]
    with serve(upstream, tmp_path) as gw:
        header = {"x-sizewise-session-id": "agent-7"}
        first = ask(gw, [{"role": "user", "content": "hi"}], extra_headers=header)
        again = ask(gw, [{"role": "user", "content": "list the files, please"}], extra_headers=header)
        switched = ask(gw, hard, extra_headers=header)
        near = [{"role": "user", "content": "Explain why the loader fails and compare the two configs."}]
        kept = ask(gw, near, extra_headers=header)  # the router says small, but only just
        back = ask(gw, [{"role": "user", "content": "thanks"}], extra_headers=header)
        other = ask(gw, near, extra_headers={"x-sizewise-session-id": "agent-8"})
    assert (first[0], first[1]["session"]) == ("small", "new")
    assert (again[0], again[1]["session"]) == ("small", "same")
    assert (switched[0], switched[1]["session"]) == ("big", "switched")
    assert "session left small (beyond margin 0.2)" in switched[1]["reason"]
    assert 0.5 - GatewaySettings().session_margin < score(near) < 0.5  # type: ignore[operator]
    assert (kept[0], kept[1]["session"]) == ("big", "kept")  # the session now lives on the big model
    assert (back[0], back[1]["session"]) == ("small", "switched")  # confident the other way: it moves back
    assert (other[0], other[1]["session"]) == ("small", "new")


def test_a_session_moves_when_its_model_cannot_serve_the_request(upstream: RecordingUpstream, tmp_path: Path) -> None:
    with serve(upstream, tmp_path) as gw:
        meta = {"session_id": "s-1"}
        first = ask(gw, [{"role": "user", "content": "hi"}], metadata=meta)
        # Big enough for the big model's window only: the small model is filtered out, the session moves.
        long = [{"role": "user", "content": "word " * 5000}]
        moved = ask(gw, long, metadata=meta, max_tokens=10)
    assert first[0] == "small" and moved[0] == "big"
    assert moved[1]["session"] == "moved" and "session model small cannot serve this request" in moved[1]["reason"]


def test_a_named_model_is_never_steered_by_a_session(upstream: RecordingUpstream, tmp_path: Path) -> None:
    with serve(upstream, tmp_path) as gw:
        header = {"x-sizewise-session-id": "named"}
        ask(gw, [{"role": "user", "content": "hi"}], extra_headers=header)
        client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="big", messages=[TASK], extra_headers=header)
    assert raw.headers["x-sizewise-model"] == "big" and raw.parse().model_extra["sizewise"]["session"] is None


def request(messages: list[dict[str, Any]], **extra: Any) -> ChatRequest:
    return ChatRequest(messages=messages, extra=extra)


def test_session_ids_come_from_the_header_then_metadata_then_the_conversations_opening() -> None:
    keys = ["header", "metadata", "prefix"]
    convo = request([SYSTEM, TASK, *agent_turn(0)], metadata={"session_id": "m"})
    assert session_of(convo, keys, header="h") == ("header:h", True)
    assert session_of(convo, keys) == ("metadata:m", True)
    assert session_of(convo, ["user", "prefix"], user="alice") == ("user:alice", True)
    first, later = session_of(request([SYSTEM, TASK]), keys), session_of(request([SYSTEM, TASK, *agent_turn(0)]), keys)
    assert first is not None and later is not None
    assert first[0] == later[0] and (first[1], later[1]) == (False, True)  # a first turn is recorded, not looked up
    other = session_of(request([SYSTEM, {"role": "user", "content": "another task"}, *agent_turn(0)]), keys)
    assert other is not None and other[0] != later[0]
    assert session_of(request([SYSTEM, TASK]), []) is None
    long_id = session_of(convo, keys, header="x" * (MAX_ID_CHARS + 1))
    assert long_id is not None and len(long_id[0]) < 64
    assert sources(GatewaySettings(sticky_sessions=True)) == ["header", "metadata", "user", "prefix"]


def test_the_memory_store_forgets_the_least_recent_and_the_expired() -> None:
    now = [0.0]
    store = MemorySessionStore(max_entries=2, ttl_s=10, clock=lambda: now[0])
    store.put("a", "small")
    store.put("b", "big")
    assert store.get("a") == "small"  # a is now the most recent
    store.put("c", "big")
    assert (store.get("a"), store.get("b"), store.get("c")) == ("small", None, "big")
    now[0] = 10.5
    assert store.get("a") is None and len(store) == 1
