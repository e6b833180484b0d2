"""Server-sent events in Anthropic's Messages format, from the backends' chat chunks.

``message_start``, a ``ping``, then per content block ``content_block_start`` / ``content_block_delta``
(``text_delta`` for text, ``input_json_delta`` for a tool call's arguments) / ``content_block_stop``, then
``message_delta`` (``stop_reason``, cumulative ``usage`` and the ``sizewise`` decision) and
``message_stop``. As for chat completions, the first chunk has arrived before the first byte is sent; a
fault after that ends the stream with an ``error`` event and the log records status 502.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from sizewise.core.chat import ChatChunk
from sizewise.core.decision import Decision
from sizewise.gateway.anthropic import error_payload, stop_reason
from sizewise.gateway.streaming import OnDone


def event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event with Anthropic's ``event:`` line."""
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


@dataclass
class Blocks:
    """The content blocks opened so far: text runs and tool calls (by their OpenAI ``index``)."""

    index: int = -1
    kind: str | None = None
    #: OpenAI tool-call index -> (its block's index, its call id).
    tool_blocks: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    tool_calls: int = 0

    def text(self, text: str) -> Iterator[bytes]:
        """Events for a piece of text (a new text block unless one is open)."""
        if self.kind != "text":
            yield from self._open({"type": "text", "text": ""}, "text")
        yield event("content_block_delta", self._delta({"type": "text_delta", "text": text}))

    def tool(self, delta: dict[str, Any]) -> Iterator[bytes]:
        """Events for one OpenAI tool-call delta (a new ``tool_use`` block at its first piece)."""
        position = int(delta.get("index") or 0)
        function = delta.get("function") or {}
        known = self.tool_blocks.get(position)
        call_id = delta.get("id") or None
        # A new id at a known index is a new call (a backend that sends whole calls may leave index at 0).
        if known is None or (call_id is not None and call_id != known[1]):
            start: dict[str, Any] = {
                "type": "tool_use",
                "id": delta.get("id") or "",
                "name": function.get("name") or "",
                "input": {},
            }
            yield from self._open(start, "tool_use")
            self.tool_blocks[position] = (self.index, call_id)
            self.tool_calls += 1
        elif known[0] != self.index:  # interleaved calls: Anthropic blocks cannot reopen
            return
        arguments = function.get("arguments")
        if arguments:
            piece = arguments if isinstance(arguments, str) else json.dumps(arguments)
            yield event("content_block_delta", self._delta({"type": "input_json_delta", "partial_json": piece}))

    def close(self) -> Iterator[bytes]:
        """Stop the open block, if any."""
        if self.kind is not None:
            yield event("content_block_stop", {"type": "content_block_stop", "index": self.index})
            self.kind = None

    def _open(self, block: dict[str, Any], kind: str) -> Iterator[bytes]:
        yield from self.close()
        self.index += 1
        self.kind = kind
        yield event("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self.index, "delta": delta}


async def anthropic_events(
    chunks: AsyncIterator[ChatChunk],
    decision: Decision,
    model: str,
    request_id: str,
    stops: list[str] | None,
    on_done: OnDone,
) -> AsyncIterator[bytes]:
    """Encode backend chunks as Anthropic events; report the outcome through ``on_done`` exactly once."""
    prompt_tokens = completion_tokens = 0
    status = 499  # the client went away, unless set below
    start: dict[str, Any] = {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},  # known at the end: message_delta has the totals
    }
    blocks = Blocks()
    try:
        yield event("message_start", {"type": "message_start", "message": start}) + event("ping", {"type": "ping"})
        async for chunk in chunks:
            prompt_tokens = chunk.prompt_tokens if chunk.prompt_tokens is not None else prompt_tokens
            completion_tokens = chunk.completion_tokens if chunk.completion_tokens is not None else completion_tokens
            pieces = list(blocks.text(chunk.text)) if chunk.text else []
            for delta in chunk.tool_calls or []:
                pieces += blocks.tool(delta)
            if chunk.finish_reason is not None:
                pieces += blocks.close()
                finish = "tool_calls" if blocks.tool_calls and chunk.finish_reason == "stop" else chunk.finish_reason
                reason, sequence = stop_reason(finish, chunk.upstream, stops)
                usage = {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}
                delta = {"stop_reason": reason, "stop_sequence": sequence}
                final = {"type": "message_delta", "delta": delta, "usage": usage, "sizewise": decision.to_dict()}
                yield b"".join(pieces) + event("message_delta", final) + event("message_stop", {"type": "message_stop"})
                status = 200
                return
            if pieces:
                yield b"".join(pieces)
        raise ConnectionError("upstream stream ended without a finish_reason")
    except Exception as error:  # bytes were sent: no fallback is possible, so the stream says what happened
        status = 502
        decision.errors.append(f"{model}: stream cut after the first chunk: {error}")
        yield event("error", error_payload(502, f"upstream stream failed: {error}"))
    finally:
        on_done(status, prompt_tokens, completion_tokens)
