"""``consistency``: sample the same prompt ``k`` more times at temperature > 0; agreement = confidence.

Agreement is the share of samples whose final answer equals the answer's (``numeric``, ``choice`` or
``exact`` comparison with the graders' extraction), or for free text (``embedding``) the mean cosine
similarity of the samples to the answer. Needs no training; costs ``k`` extra generations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sizewise.cascade.graders import final_answer
from sizewise.cascade.scorers.base import Answer, Scorer, check_answers, register
from sizewise.checks import check_number
from sizewise.errors import ConfigError

if TYPE_CHECKING:
    from sizewise.backends.base import Backend
    from sizewise.core.chat import ChatRequest

KINDS = ("numeric", "choice", "exact", "embedding")


@register
class ConsistencyScorer(Scorer):
    """Self-consistency of ``k`` extra samples with the answer."""

    name = "consistency"
    needs_fit = False
    calls_models = True

    def __init__(self, k: int = 3, temperature: float = 0.7, kind: str = "numeric", max_tokens: int | None = None):
        if kind not in KINDS:
            raise ConfigError(f"consistency: unknown kind {kind!r}; known: {', '.join(KINDS)}")
        check_number(self.name, "k", k, 1, integer=True)
        check_number(self.name, "temperature", temperature, 0)
        if max_tokens is not None:
            check_number(self.name, "max_tokens", max_tokens, 1, integer=True)
        self.k = k
        self.temperature = temperature
        self.kind = kind
        self.max_tokens = max_tokens

    def score(self, answers: Sequence[Answer]) -> np.ndarray:
        """Agreement of each answer with its samples (0 when it has none or no final answer)."""
        answers = check_answers(answers)
        if self.kind == "embedding":
            return self._embedding_agreement(answers)
        scores = np.zeros(len(answers))
        for i, answer in enumerate(answers):
            main = final_answer(answer.text, self.kind)
            samples = answer.samples or []
            if main is None or not samples:
                continue
            scores[i] = sum(final_answer(s, self.kind) == main for s in samples) / len(samples)
        return scores

    def _embedding_agreement(self, answers: Sequence[Answer]) -> np.ndarray:
        from sizewise.embedding import embed

        scores = np.zeros(len(answers))
        for i, answer in enumerate(answers):
            if not answer.samples:
                continue
            vectors = embed([answer.text, *answer.samples])
            scores[i] = float(np.clip((vectors[1:] @ vectors[0]).mean(), 0.0, 1.0))
        return scores

    async def enrich(self, answer: Answer, request: ChatRequest, own: Backend, next_up: Backend | None) -> Answer:
        """Draw ``k`` samples from the answering model (concurrently; the backend may serialise them)."""
        from dataclasses import replace

        base_seed = request.seed or 0
        sample_requests = [
            replace(
                request,
                temperature=self.temperature,
                seed=base_seed + 1 + i,
                logprobs=False,
                max_tokens=self.max_tokens or request.max_tokens,
            )
            for i in range(self.k)
        ]
        results = await asyncio.gather(*(own.complete(r) for r in sample_requests))
        return answer.with_(samples=[r.text for r in results])
