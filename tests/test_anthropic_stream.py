"""The Anthropic event stream ``/v1/messages`` writes for a backend's chunks (no gateway): text and tool
calls each become their own content block, in order, and the stop reason and usage close the message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from sizewise.core.chat import ChatChunk
from sizewise.core.decision import Decision
from sizewise.gateway.anthropic_stream import anthropic_events


async def _replay(chunks: list[ChatChunk]) -> AsyncIterator[ChatChunk]:
    for chunk in chunks:
        yield chunk


def _events(chunks: list[ChatChunk]) -> list[dict[str, Any]]:
    """The data of each event ``anthropic_events`` writes for ``chunks``."""
    stream = anthropic_events(_replay(chunks), Decision(policy="p", model="m"), "m", "r1", None, lambda *_: None)

    async def collect() -> bytes:
        return b"".join([piece async for piece in stream])

    raw = asyncio.run(collect()).decode()
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]


def test_stream_events_for_text_then_two_tool_calls() -> None:
    whole = [  # a backend that sends each call whole, both at index 0 (a new id is a new call)
        {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"index": 0, "id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    chunks = [
        ChatChunk(text="Let me check."),
        ChatChunk(tool_calls=whole[:1]),
        ChatChunk(tool_calls=whole[1:]),
        ChatChunk(finish_reason="stop", prompt_tokens=9, completion_tokens=4),
    ]
    events = _events(chunks)
    kinds = [(e["type"], e.get("index")) for e in events]
    assert kinds == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert [e["content_block"].get("id") for e in events if e["type"] == "content_block_start"] == [None, "a", "b"]
    final = events[-2]
    assert final["delta"]["stop_reason"] == "tool_use"  # "stop" with tool calls is a tool turn
    assert final["usage"] == {"input_tokens": 9, "output_tokens": 4}
