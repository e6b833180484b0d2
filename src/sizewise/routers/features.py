"""Cheap text features a router can add to embeddings: length, digits, code, language, turns, and the
reasoning load of a word problem (how many quantities, sentences and ratio words it has to combine)."""

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
    # Reasoning load: every quantity, sentence and ratio word is one more step a weak model can get wrong.
    "number_count_log",
    "distinct_numbers_log",
    "sentences_log",
    "ratio_words",
    "number_words",
    "decimals",
]
#: The reasoning-load features (the answer-classifier reuses them for the prompt side).
REASONING_LOAD = FEATURE_NAMES[FEATURE_NAMES.index("number_count_log") :]

_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|#include|\bfunction\b|=>|;\s*$|\{\s*$|\bimport ", re.M)
_MATH = re.compile(r"[=+\-*/^<>%$\\]")
_OPTION = re.compile(r"^\s*\(?[A-J][.)]\s", re.M)
_TURN = re.compile(r"^(user|assistant):", re.M)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_QUANTITY = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
# Ratio and number words are counted on the lower-cased words (five times faster than case-blind regexes).
_WORD = re.compile(r"\w+")
_FRACTION = re.compile(r"\d/\d")
_RATIO_WORDS = frozenset(
    {"half", "third", "quarter", "twice", "thrice", "double", "triple", "ratio", "per", "each", "every"}
)
_RATIO_PREFIXES = ("percent", "fraction")
_NUMBER_WORDS = frozenset(
    [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "fifteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "hundred",
        "thousand",
        "dozen",
    ]
)
_DECIMAL = re.compile(r"\d\.\d")


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
        quantities = _QUANTITY.findall(text)
        words = _WORD.findall(text.lower())
        ratios = text.count("%") + len(_FRACTION.findall(text))
        ratios += sum(w in _RATIO_WORDS or w.startswith(_RATIO_PREFIXES) for w in words)
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
            np.log1p(len(quantities)),
            np.log1p(len(set(quantities))),
            np.log1p(len(_SENTENCE_END.findall(text))),
            ratios,
            sum(w in _NUMBER_WORDS for w in words),
            len(_DECIMAL.findall(text)),
        )
    return rows
