"""The route that decides whether an image classifier can answer a question, measured on labelled questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sizewise.core.text import last_user_text
from sizewise.serve.vision_intent import classifiable

QUESTIONS = json.loads((Path(__file__).parent / "data" / "vision_questions.json").read_text())


def test_the_route_is_right_on_the_labelled_questions() -> None:
    cases = [(q, True) for q in QUESTIONS["name"]] + [(q, False) for q in QUESTIONS["open"]]
    right = sum(classifiable(question)[0] == named for question, named in cases)
    assert len(cases) >= 80 and right / len(cases) >= 0.95
    opens = QUESTIONS["open"]
    assert sum(classifiable(q)[0] for q in opens) <= 1  # an open question the classifier "answers" is a wrong answer


@pytest.mark.parametrize(
    ("question", "named"),
    [
        ("is this a cat or a dog?", True),
        ("What animal is this", True),
        ("what does the sign say", False),
        ("describe the mood", False),
        ("", True),
        ("Summarise the quarterly figures", False),
    ],
)
def test_examples(question: str, named: bool) -> None:
    verdict, why = classifiable(question)
    assert verdict is named and why


def test_the_question_is_the_last_user_turns_text() -> None:
    messages: list[dict[str, object]] = [
        {"role": "user", "content": "what does the sign say?"},
        {"role": "assistant", "content": "STOP"},
        {"role": "user", "content": [{"type": "text", "text": "and what is"}, {"type": "text", "text": "this?"}]},
    ]
    assert last_user_text(messages) == "and what is this?"
    assert classifiable(last_user_text(messages))[0]
