"""Cheap text features a router can add to embeddings: length, digits, code, language, turns."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

FEATURE_NAMES = [
    "log_chars",
    "log_words",
    "digit_share",
    "math_share",
    "upper_share",
    "non_ascii_share",
    "newlines",
    "code_markers",
    "question_marks",
    "options",
    "turns",
    "max_number_log",
]

_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|#include|\bfunction\b|=>|;\s*$|\{\s*$|\bimport ", re.M)
_MATH = re.compile(r"[=+\-*/^<>%$\\]")
_OPTION = re.compile(r"^\s*\(?[A-J][.)]\s", re.M)
_TURN = re.compile(r"^(user|assistant):", re.M)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def text_features(texts: Sequence[str]) -> np.ndarray:
    """A ``(len(texts), len(FEATURE_NAMES))`` float32 matrix of the features above.

    Turns count ``user:``/``assistant:`` line prefixes, which is how
    :func:`sizewise.evaluation.table.conversation_text` joins a conversation.
    """
    rows = np.zeros((len(texts), len(FEATURE_NAMES)), dtype=np.float32)
    for i, text in enumerate(texts):
        n = max(len(text), 1)
        numbers = _NUMBER.findall(text)
        largest = max((float(x) for x in numbers), default=0.0)
        rows[i] = (
            np.log1p(len(text)),
            np.log1p(len(text.split())),
            sum(c.isdigit() for c in text) / n,
            len(_MATH.findall(text)) / n,
            sum(c.isupper() for c in text) / n,
            sum(ord(c) > 127 for c in text) / n,
            text.count("\n"),
            len(_CODE.findall(text)),
            text.count("?"),
            len(_OPTION.findall(text)),
            max(len(_TURN.findall(text)), 1),
            np.log1p(min(largest, 1e12)),
        )
    return rows
