"""``logprob``: confidence from the answer's own per-token log-probabilities.

Features: mean, min, mean of the last ``tail`` tokens, 10th percentile and log length. Fitted, a
logistic regression combines them; unfitted, the score is ``exp(mean logprob)`` (the geometric mean
token probability), which already ranks answers usefully.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from sizewise.cascade.scorers.base import Answer, LinearHead, Scorer, check_answers, check_labels, register
from sizewise.checks import check_number

FEATURES = ("mean", "min", "tail_mean", "p10", "log_length")


def logprob_features(logprobs: Sequence[float] | None, tail: int = 16) -> np.ndarray:
    """The five summary features of one answer's token logprobs (zeros/-20 when none are known)."""
    values = np.asarray([v for v in (logprobs or []) if np.isfinite(v)], dtype=float)
    if values.size == 0:
        return np.array([-20.0, -20.0, -20.0, -20.0, 0.0])
    return np.array(
        [
            values.mean(),
            values.min(),
            values[-tail:].mean(),
            np.percentile(values, 10),
            np.log1p(values.size),
        ]
    )


@register
class LogprobScorer(Scorer):
    """Scores an answer from its token logprobs (mean, min, tail mean; learned combination)."""

    name = "logprob"
    needs_fit = False

    def __init__(self, tail: int = 16, c: float = 1.0) -> None:
        check_number(self.name, "tail", tail, 1, integer=True)
        check_number(self.name, "c", c, 0, strict=True)
        self.tail = tail
        self.c = c

    def features(self, answers: Sequence[Answer]) -> np.ndarray:
        """``(n, 5)`` feature matrix."""
        items = check_answers(answers)
        return np.stack([logprob_features(a.logprobs, self.tail) for a in items]) if items else np.zeros((0, 5))

    def fit(self, answers: Sequence[Answer], correct: Sequence[float] | np.ndarray) -> Self:
        """Learn the combination of the features."""
        answers, labels = check_labels(answers, correct)
        self.head_: LinearHead | None = LinearHead.fit(self.features(answers), labels, self.c)
        self.fitted_ = True
        return self

    def score(self, answers: Sequence[Answer]) -> np.ndarray:
        """P(answer is right)."""
        features = self.features(answers)
        head: LinearHead | None = getattr(self, "head_", None)
        if head is None:
            return np.exp(np.clip(features[:, 0], -50, 0)) if len(features) else np.zeros(0)
        return head.predict(features)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        head = getattr(self, "head_", None)
        return {"fitted_head": head is not None}, ({} if head is None else head.arrays())

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.head_ = LinearHead.from_arrays(arrays, len(FEATURES)) if meta.get("fitted_head") else None
