"""An OpenAI-compatible upstream on 127.0.0.1 that bills as rudely as a real one may.

``usage(body)`` returns the (prompt_tokens, completion_tokens) it reports for a request body; the
default is the worst case a real tokenizer can reach: one token per UTF-8 byte of every message's
content, and ``max_tokens`` tokens written. :attr:`billed` keeps every reported pair, so a test can
price what the upstream really charged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fakes import ThreadedServer, read_body, send_answer

Usage = Callable[[dict[str, Any]], tuple[int, int]]


def byte_tokens(body: dict[str, Any]) -> tuple[int, int]:
    """One token per UTF-8 byte of the messages' content; every allowed token written."""
    prompt = sum(len(str(m.get("content", "")).encode()) for m in body.get("messages", []))
    return prompt, int(body.get("max_tokens") or 16)


class BillingUpstream(ThreadedServer):
    """``with BillingUpstream(usage, delay_s) as up: up.base_url``; answers after ``delay_s``."""

    def __init__(self, usage: Usage = byte_tokens, delay_s: float = 0.0) -> None:
        self.usage = usage
        self.delay_s = delay_s
        self.billed: list[tuple[str, int, int]] = []
        super().__init__(self.app)

    def cost(self, prices: dict[str, tuple[float, float]]) -> float:
        """USD billed, with ``prices`` per upstream model name (USD per 1M tokens in, out)."""
        return sum((p * prices[m][0] + c * prices[m][1]) / 1e6 for m, p, c in self.billed)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        body = json.loads(raw or b"{}")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        prompt, completion = self.usage(body)
        self.billed.append((str(body.get("model")), prompt, completion))
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        await send_answer(send, str(body.get("model")), "ok", usage, stream=bool(body.get("stream")))
