"""``verifier``: ask a model (by default the next one up the ladder) whether the answer is right.

The score is P("yes") / (P("yes") + P("no")) for the next token after a yes/no question, read with
:meth:`Backend.choice_logprobs`. Reading a prompt is much cheaper than generating on CPU (one
forward pass over the prompt, no decoding loop), so verifying costs a fraction of an answer.
An optional fit calibrates the raw probability (Platt scaling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from sizewise.cascade.scorers.base import Answer, LinearHead, Scorer, check_answers, check_labels, register
from sizewise.checks import check_number
from sizewise.errors import DataError

if TYPE_CHECKING:
    from sizewise.backends.base import Backend
    from sizewise.core.chat import ChatRequest

TEMPLATE = (
    "Here is a question and a proposed answer.\n\nQuestion:\n{prompt}\n\nProposed answer:\n{answer}\n\n"
    "Is the proposed answer correct? Reply with one word: Yes or No."
)
YES = ("Yes", "yes", " Yes", " yes")
NO = ("No", "no", " No", " no")


def verifier_messages(prompt: str, answer: str, max_answer_chars: int = 3000) -> list[dict[str, Any]]:
    """The chat messages sent to the verifier model."""
    return [{"role": "user", "content": TEMPLATE.format(prompt=prompt, answer=answer[-max_answer_chars:])}]


def p_yes(logprobs: dict[str, float]) -> float:
    """Normalised probability of yes against no from the choices' logprobs."""
    yes = sum(math.exp(logprobs[t]) for t in YES if t in logprobs and math.isfinite(logprobs[t]))
    no = sum(math.exp(logprobs[t]) for t in NO if t in logprobs and math.isfinite(logprobs[t]))
    return yes / (yes + no) if yes + no > 0 else 0.5


@register
class VerifierScorer(Scorer):
    """P(yes) from a verifier model; Platt-calibrated when fitted."""

    name = "verifier"
    needs_fit = False
    calls_models = True

    def __init__(self, c: float = 1.0) -> None:
        check_number(self.name, "c", c, 0, strict=True)
        self.c = c

    @staticmethod
    def _verdicts(answers: Sequence[Answer]) -> np.ndarray:
        """Each answer's verdict; 0.5 where none (or NaN) is known, a :class:`DataError` outside [0, 1]."""
        p = np.array([np.nan if a.verdict is None else a.verdict for a in check_answers(answers)], dtype=float)
        if ((p < 0) | (p > 1)).any():
            raise DataError("a verifier verdict must be a probability in [0, 1]")
        return np.where(np.isnan(p), 0.5, p)

    @classmethod
    def _logit(cls, answers: Sequence[Answer]) -> np.ndarray:
        p = np.clip(cls._verdicts(answers), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p)).reshape(-1, 1)

    def fit(self, answers: Sequence[Answer], correct: Sequence[float] | np.ndarray) -> Self:
        """Calibrate the verifier's probability on labelled answers."""
        answers, labels = check_labels(answers, correct)
        self.head_: LinearHead | None = LinearHead.fit(self._logit(answers), labels, self.c)
        self.fitted_ = True
        return self

    def score(self, answers: Sequence[Answer]) -> np.ndarray:
        """The (calibrated) verdict of each answer; 0.5 where none is known."""
        head: LinearHead | None = getattr(self, "head_", None)
        if head is None:
            return self._verdicts(answers)
        return head.predict(self._logit(answers))

    async def enrich(self, answer: Answer, request: ChatRequest, own: Backend, next_up: Backend | None) -> Answer:
        """One prompt-only pass of the verifier model (``next_up``, else the answering model)."""
        from sizewise.core.chat import ChatRequest

        verifier = next_up or own
        ask = ChatRequest(messages=verifier_messages(answer.prompt, answer.text), max_tokens=1, temperature=0.0)
        logprobs = await verifier.choice_logprobs(ask, list(YES + NO))
        return answer.with_(verdict=p_yes(logprobs))

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        head = getattr(self, "head_", None)
        return {"fitted_head": head is not None}, ({} if head is None else head.arrays())

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.head_ = LinearHead.from_arrays(arrays, 1) if meta.get("fitted_head") else None
