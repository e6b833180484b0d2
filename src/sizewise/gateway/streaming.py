"""Server-sent events in OpenAI's ``chat.completion.chunk`` format.

The first chunk has already arrived when streaming starts (see ``Engine.open_stream``), so the
routing headers are final. The last chunk carries ``finish_reason``, ``usage`` and the ``sizewise``
decision object. A fault after bytes reached the client cannot be undone: it ends the stream with
an OpenAI-style ``error`` event, and the log records status 502.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

from sizewise.core.chat import ChatChunk
from sizewise.core.decision import Decision
from sizewise.gateway.errors import error_body

DONE = b"data: [DONE]\n\n"

#: Called once when the stream ends: (status, prompt_tokens, completion_tokens).
OnDone = Callable[[int, int, int], None]


async def sse_events(
    chunks: AsyncIterator[ChatChunk],
    decision: Decision,
    model: str,
    request_id: str,
    on_done: OnDone,
) -> AsyncIterator[bytes]:
    """Encode backend chunks as SSE; report the outcome through ``on_done`` exactly once."""
    created = int(time.time())
    # The fixed part of every chunk, encoded once; only the delta changes per token.
    head = (
        '{"id":"chatcmpl-'
        + request_id
        + '","object":"chat.completion.chunk","created":'
        + str(created)
        + ',"model":'
        + json.dumps(model)
        + ',"choices":[{"index":0,"delta":'
    ).encode()
    tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
    prompt_tokens = completion_tokens = 0
    status = 499  # client went away, unless set below
    first = True
    try:
        async for chunk in chunks:
            if chunk.prompt_tokens is not None:
                prompt_tokens = chunk.prompt_tokens
            if chunk.completion_tokens is not None:
                completion_tokens = chunk.completion_tokens
            if chunk.text or first:
                delta = {"role": "assistant", "content": chunk.text} if first else {"content": chunk.text}
                first = False
                yield b"data: " + head + json.dumps(delta).encode() + tail
            if chunk.finish_reason is not None:
                final = {
                    "id": f"chatcmpl-{request_id}",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": chunk.finish_reason}],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                    "sizewise": decision.to_dict(),
                }
                yield b"data: " + json.dumps(final).encode() + b"\n\n" + DONE
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
