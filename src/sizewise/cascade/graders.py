"""Graders: is a model's answer right? Numeric final answer, choice letter, exact match.

Each grader is ``grade(answer_text, gold) -> bool``; ``final_answer(text, kind)`` extracts what the
grader compares, so the consistency scorer can compare samples with the same rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from sizewise.errors import UnknownNameError

_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?")
_MARKERS = (
    re.compile(r"####\s*([^\n]+)"),
    re.compile(r"answer is[:\s]*\$?\\?(?:boxed\{)?([^\n]+)", re.I),
    re.compile(r"\\boxed\{([^}]*)\}"),
    re.compile(r"answer[:\s]+([^\n]+)", re.I),
)
_CHOICE_PATTERNS = (
    re.compile(r"answer is \(?([A-J])\)?", re.I),
    re.compile(r"answer[:\s]*\(?([A-J])\)?\b", re.I),
    re.compile(r"^\(?([A-J])[).:\s]", re.M),
    re.compile(r"\(([A-J])\)"),
)


def _to_number(text: str) -> float | None:
    cleaned = text.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None  # a 400-digit "number" is no answer


def extract_number(text: str) -> float | None:
    """The final numeric answer: after ``####`` / "the answer is" when present, else the last number."""
    if not text:
        return None
    for marker in _MARKERS:
        matches = marker.findall(text)
        if matches:
            numbers = _NUMBER.findall(matches[-1])
            if numbers:
                return _to_number(numbers[0])
    numbers = _NUMBER.findall(text)
    return _to_number(numbers[-1]) if numbers else None


def extract_choice(text: str, letters: str = "ABCDEFGHIJ") -> str | None:
    """The chosen option letter ("the answer is (C)", "Answer: C", a bare leading "C)")."""
    if not text:
        return None
    for pattern in _CHOICE_PATTERNS:
        matches = [m.upper() for m in pattern.findall(text) if m.upper() in letters]
        if matches:
            return matches[-1] if pattern is not _CHOICE_PATTERNS[2] else matches[0]
    stripped = text.strip().upper()
    return stripped if len(stripped) == 1 and stripped in letters else None


def normalize_text(text: str) -> str:
    """Lower case, punctuation and extra spaces removed: what exact match compares."""
    return " ".join(re.sub(r"[^\w\s]", " ", (text or "").lower()).split())


def final_answer(text: str, kind: str) -> str | None:
    """The comparable final answer of ``text`` for grader ``kind`` (None when there is none)."""
    if kind == "numeric":
        number = extract_number(text)
        return None if number is None else f"{number:g}"
    if kind == "choice":
        return extract_choice(text)
    if kind == "exact":
        normalized = normalize_text(text)
        return normalized or None
    raise UnknownNameError(f"unknown grader {kind!r}; known: {', '.join(GRADERS)}")


def grade_numeric(answer: str, gold: str | float) -> bool:
    """True when the answer's final number equals the gold number (GSM8K: the part after ``####``)."""
    gold_number = extract_number(str(gold)) if not isinstance(gold, int | float) else float(gold)
    number = extract_number(answer)
    return number is not None and gold_number is not None and abs(number - gold_number) < 1e-6


def grade_choice(answer: str, gold: str) -> bool:
    """True when the answer picks the gold option letter."""
    return extract_choice(answer) == str(gold).strip().upper()


def grade_exact(answer: str, gold: str) -> bool:
    """True when the answers match after normalisation (case, punctuation, spaces)."""
    return normalize_text(answer) == normalize_text(str(gold))


GRADERS: dict[str, Callable[..., bool]] = {"numeric": grade_numeric, "choice": grade_choice, "exact": grade_exact}


def get_grader(kind: str) -> Callable[..., bool]:
    """The grader called ``kind``."""
    if kind not in GRADERS:
        raise UnknownNameError(f"unknown grader {kind!r}; known: {', '.join(GRADERS)}")
    return GRADERS[kind]
