"""Judges of shadow judging: how good was each of two answers to one request, as a score in [0, 1].

Three kinds, tried in this order for a request (:func:`pick_judge`):

* ``grader``: the request says how its answer is checked (``sizewise.answer_format``: ``numeric``,
  ``choice`` or ``exact``, and ``sizewise.reference``): the graders of :mod:`sizewise.cascade.graders`
  score each answer 1 or 0;
* ``reference``: a reference answer without a format: a number or an option letter is compared as one,
  other text scores the share of its words the answer contains (1.0 when it contains them all);
* ``llm-judge``: a catalog model compares the two answers pairwise with the prompt in
  ``prompts/judge_pairwise.md``, in both orders; each order gives the winner 1, the loser 0 (a tie 0.5),
  and an answer's score is the mean of the two orders, so orders that disagree make a tie (0.5 each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from sizewise.backends.base import Backend, ChatRequest
from sizewise.cascade.graders import extract_choice, extract_number, get_grader, normalize_text
from sizewise.catalog.schema import ModelSpec

#: Longest question or answer (characters) put in a judge prompt: small judges have small contexts.
MAX_PART_CHARS = 4000
_VERDICT = re.compile(r"^\W*(tie|a|b)\b", re.IGNORECASE)
_LETTER = re.compile(r"\(?([A-J])\)?\.?")


@dataclass
class Verdict:
    """Scores per model (each in [0, 1]), who judged, and what a record needs to be checked later."""

    scores: dict[str, float]
    source: str
    detail: dict[str, Any] = field(default_factory=dict)
    cost_usd: float = 0.0


class JudgeError(Exception):
    """No verdict: the judge failed or answered something that is not A, B or tie."""


def reference_score(answer: str, reference: str) -> float:
    """How well ``answer`` matches a reference answer given without a format (see the module docstring)."""
    ref = reference.strip()
    if extract_number(ref) is not None and re.fullmatch(r"[-$\d.,\s]+", ref):
        return float(get_grader("numeric")(answer, ref))
    if _LETTER.fullmatch(ref.upper()):
        return float(extract_choice(answer) == ref.strip("(). ").upper())
    wanted = normalize_text(ref).split()
    if not wanted:
        return 0.0
    have = set(normalize_text(answer).split())
    return sum(word in have for word in wanted) / len(wanted)


def grade(answers: dict[str, str], reference: str, answer_format: str | None) -> Verdict:
    """``grader`` (a known ``answer_format``) or ``reference`` scores of every answer."""
    if answer_format is not None:
        check = get_grader(answer_format)
        scores = {model: float(check(text, reference)) for model, text in answers.items()}
        return Verdict(scores, "grader", {"answer_format": answer_format})
    return Verdict({model: reference_score(text, reference) for model, text in answers.items()}, "reference")


@cache
def judge_prompt() -> dict[str, str]:
    """The ``system`` and ``user`` templates of ``prompts/judge_pairwise.md`` (the text under each heading)."""
    text = files("sizewise.learn").joinpath("prompts/judge_pairwise.md").read_text(encoding="utf-8")
    parts = re.split(r"^## (\w+)\s*$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PART_CHARS else text[:MAX_PART_CHARS] + " [...]"


def pairwise_request(question: str, answer_a: str, answer_b: str) -> ChatRequest:
    """The judge's request for one order (A shown first)."""
    prompt = judge_prompt()
    user = prompt["user"].format(question=_cut(question), answer_a=_cut(answer_a), answer_b=_cut(answer_b))
    messages = [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": user}]
    return ChatRequest(messages=messages, max_tokens=4, temperature=0.0)


def parse_verdict(text: str) -> str:
    """``A``, ``B`` or ``tie`` from a judge's reply (its first word); :class:`JudgeError` otherwise."""
    found = _VERDICT.match(text or "")
    if found is None:
        raise JudgeError(f"judge answered {text[:40]!r}, not A, B or tie")
    word = found.group(1).lower()
    return "tie" if word == "tie" else word.upper()


class LLMJudge:
    """A catalog model judging two answers pairwise, in both orders."""

    source = "llm-judge"

    def __init__(self, spec: ModelSpec, backend: Backend) -> None:
        self.spec = spec
        self.backend = backend

    def requests(self, question: str, first: tuple[str, str], second: tuple[str, str]) -> list[ChatRequest]:
        """The two requests (``first`` shown as A, then as B); each pair is (model, answer)."""
        return [pairwise_request(question, first[1], second[1]), pairwise_request(question, second[1], first[1])]

    async def judge(self, requests: list[ChatRequest], first: str, second: str) -> Verdict:
        """Ask both orders (as built by :meth:`requests`) and average; ``first`` / ``second`` name the models."""
        verdicts: list[str] = []
        cost = 0.0
        for request in requests:
            result = await self.backend.complete(request)
            cost += self.spec.cost_usd(result.prompt_tokens, result.completion_tokens)
            verdicts.append(parse_verdict(result.text))
        # Order 1 shows ``first`` as A, order 2 as B: map each verdict back to a model.
        won = [_winner(verdicts[0], first, second), _winner(verdicts[1], second, first)]
        scores = {model: sum(_points(w, model) for w in won) / 2 for model in (first, second)}
        detail = {"judge": self.spec.name, "verdicts": verdicts, "orders": [[first, second], [second, first]]}
        return Verdict(scores, self.source, detail, cost)


def _winner(verdict: str, shown_a: str, shown_b: str) -> str | None:
    return shown_a if verdict == "A" else shown_b if verdict == "B" else None


def _points(winner: str | None, model: str) -> float:
    return 0.5 if winner is None else float(winner == model)
