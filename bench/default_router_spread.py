"""How far the shipped default router's scores sit from its threshold on prompts a user types first (#23).

Usage: ``python bench/default_router_spread.py [PROMPT ...]``. Prints each prompt's score, the side of the
threshold it falls on, and the spread. Each prompt is scored as the gateway scores a one-message request (its
role-prefixed ``conversation_text``), so the numbers match the ``x-sizewise-score`` header. Scores that bunch
around the threshold mean the threshold, not the prompt, picks the model (docs/gateway.md, "Where the shipped
default router knows nothing").
"""

from __future__ import annotations

import sys
from importlib.resources import files

import numpy as np

from sizewise.core.text import conversation_text
from sizewise.routers.base import load_router

#: Short first prompts of the kind a newcomer types, easy and hard mixed; not tuned to any result.
FIRST_PROMPTS = [
    "What is 2+2?",
    "Hello!",
    "Tell me a joke.",
    "What is 17*23?",
    "Write a haiku about autumn.",
    "Translate 'good morning' into French.",
    "Explain quantum entanglement.",
    "Write a Python function to reverse a string.",
    "Solve step by step: 3x + 7 = 22.",
    "Prove that there are infinitely many primes.",
    "Summarise the causes of the First World War in three sentences.",
    "What is the capital of Australia?",
]


def main(prompts: list[str]) -> None:
    """Score ``prompts`` with the packaged ``default.zip`` and print them against its threshold."""
    router = load_router(str(files("sizewise.routers.pretrained") / "default.zip"))
    threshold = float(getattr(router, "threshold_", float("nan")))
    texts = [conversation_text([{"role": "user", "content": prompt}]) for prompt in prompts]
    scores = np.asarray(router.score(texts), dtype=float)
    for prompt, score in sorted(zip(prompts, scores, strict=True), key=lambda pair: pair[1]):
        side = "big  " if score >= threshold else "small"
        print(f"{score:.3f}  {side}  {prompt}")
    print(f"threshold {threshold:.3f}; scores {scores.min():.3f} to {scores.max():.3f}, ", end="")
    print(f"median distance to the threshold {np.median(np.abs(scores - threshold)):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:] or FIRST_PROMPTS)
