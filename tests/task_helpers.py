"""Helpers for the task-model tests: a teacher upstream that answers a yes/no task by a rule, and its prompts.

The teacher is remote (an OpenAI-compatible server on 127.0.0.1), so a fake plays it; it answers in the
free text real teachers use ("Yes.", "The answer is no", "No, it does not") and counts its calls.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from fakes import ThreadedServer, read_body, send_answer

QUESTION = "Is the following sentence overruling? Answer yes or no.\nSentence: "
#: Phrases of overruling sentences, and of other holdings (what the rule below tells apart).
OVERRULING = ["we overrule", "is hereby overruled", "is expressly overruled", "we now overrule", "are overruled"]
OTHER = ["we affirm", "the motion is denied", "we remand the case", "the judgment is reversed", "we decline to reach"]
PARTIES = ["Smith", "Jones", "Garcia", "Chen", "Okafor", "Novak", "Haddad", "Silva", "Kowalski", "Tanaka"]
TOPICS = ["the contract claim", "the tax ruling", "the zoning dispute", "the patent case", "the custody order"]
YES = ["Yes.", "The answer is yes", "yes", "**Yes**"]
NO = ["No.", "No, it does not overrule anything.", "The answer is No", "no"]


def sentence(rng: random.Random, overruling: bool) -> str:
    """One on-task prompt: the shared question and a sentence that overrules or not."""
    a, b = rng.sample(PARTIES, 2)
    phrase = rng.choice(OVERRULING if overruling else OTHER)
    return f"{QUESTION}In {a} v. {b}, {rng.choice(TOPICS)}, {phrase}; see also case {rng.randint(1, 999)}."


def prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` on-task prompts, half of them overruling, shuffled."""
    rng = random.Random(seed)
    return [sentence(rng, rng.random() < 0.5) for _ in range(n)]


def truthful(text: str) -> bool:
    """The teacher's rule: a sentence overrules when it says so."""
    return "overrule" in text.split("Sentence:")[-1]


class Teacher(ThreadedServer):
    """``with Teacher() as t``: answers yes/no by ``rule`` (a prompt -> bool), in varied wording; ``calls``
    counts the requests, ``bodies`` keeps them."""

    start_timeout_s = 20.0
    stop_timeout_s = 10.0

    def __init__(self, rule: Callable[[str], bool] = truthful) -> None:
        self.rule = rule
        self.bodies: list[dict[str, Any]] = []
        self._rng = random.Random(7)
        super().__init__(self.app)

    @property
    def calls(self) -> int:
        return len(self.bodies)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive) or b"{}")
        self.bodies.append(body)
        last = str(body["messages"][-1].get("content", ""))
        text = self._rng.choice(YES if self.rule(last) else NO)
        usage = {"prompt_tokens": len(last) // 4, "completion_tokens": 3}
        await send_answer(send, str(body.get("model")), text, usage, stream=bool(body.get("stream")))


def teacher_entry(name: str, base_url: str, params_b: float, **extra: Any) -> dict[str, Any]:
    """A remote chat model of the test catalog, served by a :class:`Teacher`."""
    return {
        "name": name,
        "backend": "openai",
        "location": "remote",
        "context_window": 4096,
        "params_b": params_b,
        "price_in": params_b,
        "price_out": 2 * params_b,
        "settings": {"base_url": base_url, "model": f"up-{name}", "timeout_s": 5.0},
        **extra,
    }


def task_entry(name: str = "overruling", **settings: Any) -> dict[str, Any]:
    """A ``kind: task`` catalog entry taught by ``big``, labels yes/no."""
    return {
        "name": name,
        "kind": "task",
        "backend": "task",
        "context_window": 4096,
        "settings": {"labels": ["yes", "no"], "teacher": "big", **settings},
    }
