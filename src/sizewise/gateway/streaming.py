"""Server-sent events in OpenAI's ``chat.completion.chunk`` format.

The first chunk has already arrived when streaming starts (see ``Engine.open_stream``), so the
routing headers are final. The last chunk carries ``finish_reason``, ``usage`` and the ``sizewise``
decision object; a client that asked for ``stream_options.include_usage`` also gets OpenAI's own usage
chunk (empty ``choices``) after it. Tool call deltas, the upstream's logprobs, its other delta fields and
the choices past the first (``n > 1``) are written as the upstream sent them; so are its ``id``,
``created`` and ``system_fingerprint``. A fault after bytes reached the client cannot be undone: it ends
the stream with an OpenAI-style ``error`` event, and the log records status 502.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sizewise.core.chat import ChatChunk
from sizewise.core.decision import Decision
from sizewise.gateway.errors import error_body

DONE = b"data: [DONE]\n\n"

#: Called once when the stream ends: (status, prompt_tokens, completion_tokens).
OnDone = Callable[[int, int, int], None]

#: Upstream chunk fields written once per stream (in every event's head), not per chunk.
_HEAD = {"id", "created", "system_fingerprint"}


def _choice(delta: dict[str, Any], logprobs: Any, finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


class _Encoder:
    """Encodes chunks of one stream; plain text chunks take a fast path (only the delta changes per token)."""

    def __init__(self, first: ChatChunk, model: str, request_id: str) -> None:
        upstream = first.upstream
        self.base: dict[str, Any] = {
            "id": upstream.get("id") or f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": upstream.get("created") or int(time.time()),
            "model": model,
        }
        if "system_fingerprint" in upstream:
            self.base["system_fingerprint"] = upstream["system_fingerprint"]
        self.head = (json.dumps(self.base)[:-1] + ',"choices":[{"index":0,"delta":').encode()
        self.tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self.first = True

    def event(self, chunk: ChatChunk) -> bytes | None:
        """The SSE event of a content chunk (None when it carries nothing for the client)."""
        first, self.first = self.first, False
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if chunk.text or (first and not chunk.tool_calls):
            delta["content"] = chunk.text
        elif first:
            delta["content"] = None  # OpenAI's first chunk of a tool call
        if chunk.tool_calls:
            delta["tool_calls"] = chunk.tool_calls
        upstream = chunk.upstream
        if not chunk.tool_calls and set(upstream) <= _HEAD:
            return b"data: " + self.head + json.dumps(delta).encode() + self.tail if delta else None
        delta.update(upstream.get("delta") or {})
        choices = [] if not delta and "logprobs" not in upstream else [_choice(delta, upstream.get("logprobs"))]
        choices += upstream.get("choices") or []
        return self.encode(choices) if choices else None

    def encode(self, choices: list[dict[str, Any]], **more: Any) -> bytes:
        """One event with these choices and the base fields."""
        return b"data: " + json.dumps({**self.base, "choices": choices, **more}).encode() + b"\n\n"


async def sse_events(
    chunks: AsyncIterator[ChatChunk],
    decision: Decision,
    model: str,
    request_id: str,
    on_done: OnDone,
    *,
    include_usage: bool = False,
) -> AsyncIterator[bytes]:
    """Encode backend chunks as SSE; report the outcome through ``on_done`` exactly once."""
    encoder: _Encoder | None = None
    prompt_tokens = completion_tokens = 0
    status = 499  # client went away, unless set below
    try:
        async for chunk in chunks:
            if encoder is None:
                encoder = _Encoder(chunk, model, request_id)
            if chunk.prompt_tokens is not None:
                prompt_tokens = chunk.prompt_tokens
            if chunk.completion_tokens is not None:
                completion_tokens = chunk.completion_tokens
            if chunk.finish_reason is None or chunk.text or chunk.tool_calls or encoder.first:
                event = encoder.event(chunk)
                if event is not None:
                    yield event
            if chunk.finish_reason is not None:
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                final = _choice({}, None, chunk.finish_reason)
                yield encoder.encode([final], usage=usage, sizewise=decision.to_dict())
                if include_usage:  # OpenAI's usage chunk, as the client asked
                    yield encoder.encode([], usage=usage)
                yield DONE
                status = 200
                return
        # The upstream ended without a finish chunk: treat it as a cut.
        raise ConnectionError("upstream stream ended without a finish_reason")
    except Exception as error:  # reported in-stream; bytes were already sent, so no fallback is possible
        status = 502
        decision.errors.append(f"{model}: stream cut after the first chunk: {error}")
        body = error_body(502, f"upstream stream failed: {error}", "upstream_stream_cut")
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
    finally:
        on_done(status, prompt_tokens, completion_tokens)
