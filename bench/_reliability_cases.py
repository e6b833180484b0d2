"""Request cases for bench/reliability.py: hand-made hostile bodies and seeded random ones.

Each case is ``(body bytes, extra headers)`` for ``POST /v1/chat/completions``. The random generator
puts random JSON values (wrong types, huge and negative numbers, long and odd strings, deep nesting)
into the fields the gateway reads, so every validation path is tried; it is seeded, so a run repeats.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

Case = tuple[bytes, dict[str, str]]

OK = [{"role": "user", "content": "What is 2+2?"}]
MODELS = [
    "sizewise",
    "small",
    "big",
    "router-heuristic-0.5",
    "router-heuristic--1",
    "multi-none-0.5",
    "cascade-logprob",
    "cascade-bogus:x",
    "router-/etc/passwd-0.5",
    "router-../x.zip-0.5",
    "nope",
    "",
    "-",
]
FIELDS = [
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "seed",
    "user",
    "logprobs",
    "tools",
    "metadata",
    "response_format",
]


def hand_made() -> list[Case]:
    """Bodies a careless or hostile client sends."""
    big = "1" + "0" * 400
    raw = [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"text"',
        b"\xff\xfe not utf-8",
        b"[" * 100_000,
        b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + big.encode() + b"}",
        b'{"model": "small", "messages": [{"role": "user", "content": "hi"}], "seed": -' + big.encode() + b"}",
        b'{"model": "small", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}',
        b'{"model": "small", "messages": [{"role": "user", "content": "hi"}], "extra": ' + big.encode() + b"}",
        b'{"model": "small", "messages": [{"role": "user", "content": "hi\\u0000there"}], "user": "a\\u0000b"}',
        b'{"model": "small", "messages": [{"role": "user", "content": "\\ud800"}]}',
    ]
    cases: list[Case] = [(body, {}) for body in raw]
    cases += [(_dump({"model": m, "messages": OK}), {}) for m in MODELS]
    cases += [
        (_dump({"model": "small", "messages": OK * 3000}), {}),
        (_dump({"model": "small", "messages": [{"role": "user", "content": "x" * 9_000_000}]}), {}),
        (_dump({"model": "small", "messages": [{"role": "user", "content": "word " * 30_000}]}), {}),
        (_dump({"model": "small", "messages": OK, "stream": True}), {}),
        (_dump({"model": "small", "messages": OK, "user": "u" * 300}), {}),
        (_dump({"model": "p" * 300, "messages": OK}), {}),
        (_dump({"model": "small", "messages": OK}), {"x-sizewise-max-latency-ms": "nan"}),
        (_dump({"model": "small", "messages": OK}), {"x-sizewise-max-latency-ms": "-1"}),
        (_dump({"model": "small", "messages": OK}), {"content-type": "text/plain"}),
        (_dump({"model": "small", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}), {}),
        (_dump({"model": "small", "messages": [{"role": "tool", "content": None}]}), {}),
        (_dump({"model": "small", "messages": [{"role": "assistant"}]}), {}),
    ]
    return cases


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


def _value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, now and then nested, huge, negative or odd."""
    kind = rng.randrange(12 if depth < 3 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-5, 5)
    if kind == 3:
        return rng.choice([2**31, 2**63, -(2**63) - 1, 10**30, 10**300])
    if kind == 4:
        return rng.choice([0.5, -1.5, 1e308, -0.0, 3.0])
    if kind == 5:
        return rng.choice(["", " ", "yes", "1", "a" * 5000, "\u200b", "日本語", "\x00", "../../etc/passwd"])
    if kind in (6, 7, 8):
        return "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(1, 40)))
    if kind in (9, 10):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice([*FIELDS, "type", "text", "x"]): _value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _message(rng: random.Random) -> Any:
    if rng.random() < 0.1:
        return _value(rng)
    role = rng.choice(["user", "system", "assistant", "tool", "developer", "robot", None])
    if rng.random() < 0.3:
        content: Any = [{"type": rng.choice(["text", "image_url", "video", None]), "text": _value(rng)}]
    else:
        content = rng.choice([_value(rng), "Explain recursion.", "計算して"])
    return {"role": role, "content": content}


def generated(count: int, seed: int = 0) -> Iterator[Case]:
    """``count`` random requests: a valid skeleton with one to three fields replaced by random values."""
    rng = random.Random(seed)
    for _ in range(count):
        body: dict[str, Any] = {"model": rng.choice(MODELS + ["small"] * 6), "messages": OK, "max_tokens": 8}
        for _ in range(rng.randrange(1, 4)):
            field = rng.choice([*FIELDS, "model", "messages", "messages"])
            if field == "messages":
                body[field] = [_message(rng) for _ in range(rng.randrange(0, 4))]
            else:
                body[field] = _value(rng)
        if body.get("stream") is True and rng.random() < 0.7:
            body["stream"] = False  # keep most answers short
        yield _dump(body), {}
