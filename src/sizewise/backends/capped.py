"""Reading an upstream's answer with a bound on memory: a broken or hostile upstream may send a body (or one
server-sent-events line) that never ends; the gateway reads up to a cap and fails the call instead of
holding gigabytes. The caps are far above any real answer (a 128k-token answer with 20 top logprobs per token
is about 40 MB of JSON)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from sizewise.core.chat import BackendError

#: The most bytes of one whole (non-streamed) answer or error body.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: The most bytes of one line of a stream (one event).
MAX_LINE_BYTES = 16 * 1024 * 1024


def _too_large(model: str, what: str, cap: int) -> BackendError:
    return BackendError(f"{model}: upstream sent {what} larger than {cap:,} bytes", retryable=True)


async def read_capped(response: httpx.Response, model: str, cap: int = MAX_ANSWER_BYTES) -> bytes:
    """The body of a streamed ``response``, or a retryable :class:`BackendError` once it passes ``cap``."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > cap:
            raise _too_large(model, "an answer", cap)
    return bytes(body)


async def capped_lines(response: httpx.Response, model: str, cap: int = MAX_LINE_BYTES) -> AsyncIterator[str]:
    """The lines of a streamed ``response`` (split as ``str.splitlines``, as httpx's ``aiter_lines``), or a
    retryable :class:`BackendError` once one line passes ``cap`` characters."""
    parts: list[str] = []  # the unfinished line, in pieces (joined once it ends: no quadratic re-scanning)
    size = 0
    async for text in response.aiter_text():
        lines = text.splitlines(keepends=True)
        if not lines:
            continue
        if not _ends(lines[-1]):
            tail = lines.pop()
            if not lines:  # no line ends in this piece: the current line goes on
                parts.append(tail)
                size += len(tail)
                if size > cap:
                    raise _too_large(model, "a stream line", cap)
                continue
        else:
            tail = ""
        lines[0] = "".join(parts) + lines[0]
        for line in lines:
            yield line.splitlines()[0]
        parts, size = ([tail], len(tail)) if tail else ([], 0)
    if parts:
        yield "".join(parts)


def _ends(line: str) -> bool:
    """Whether ``line`` (one piece of ``splitlines(keepends=True)``) ends with its line break."""
    return bool(line) and len(line.splitlines()[0]) < len(line)
