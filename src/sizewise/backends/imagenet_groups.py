"""Answering "is this an X or a Y?" with an ImageNet classifier: each alternative becomes a set of classes.

ImageNet-1k is ordered by WordNet, so the common groups are index ranges (every dog breed is 151-268). An
alternative is a group word ("dog", "cats", "bird") or the name of a class ("tiger", "espresso"); its score is
the summed probability of its classes, so a cat the model splits between tabby, tiger cat and Egyptian cat is
still surely a cat.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "fish": ((0, 6), (389, 397)),
    "bird": ((7, 24), (80, 100), (127, 146)),
    "snake": ((52, 68),),
    "dog": ((151, 268),),
    "cat": ((281, 285),),  # house cats; lions and tigers are "big cat"
    "big cat": ((286, 293),),
    "bear": ((294, 297),),
    "insect": ((300, 326),),
    "butterfly": ((321, 326),),
    "monkey": ((365, 384),),
}
_WORDS = {
    "fishes": "fish",
    "birds": "bird",
    "snakes": "snake",
    "dogs": "dog",
    "puppy": "dog",
    "puppies": "dog",
    "cats": "cat",
    "kitten": "cat",
    "kitty": "cat",
    "big cats": "big cat",
    "bears": "bear",
    "insects": "insect",
    "bug": "insect",
    "butterflies": "butterfly",
    "monkeys": "monkey",
    "ape": "monkey",
    "primate": "monkey",
}
_ALTERNATIVES = re.compile(
    r"\b(?:is|are) (?:this|that|it|these|those|there) (?:an? |the |some )?(?P<a>[a-z][a-z' -]*?)"
    r",? or (?:an? |the |some )?(?P<b>[a-z][a-z' -]*?)[\s?.!]*$"
)


def alternatives(question: str) -> tuple[str, str] | None:
    """The two alternatives of an "is this an X or a Y?" question, or None."""
    match = _ALTERNATIVES.search(" ".join(question.lower().split()))
    return (match.group("a").strip(), match.group("b").strip()) if match else None


def classes_of(phrase: str, names: Sequence[str]) -> list[int]:
    """The class indices an alternative stands for: a group's range, else the classes with that exact name."""
    group = _WORDS.get(phrase, phrase)
    if group in _RANGES:
        return [i for start, end in _RANGES[group] for i in range(start, end + 1)]
    singular = phrase[:-1] if phrase.endswith("s") else phrase
    return [i for i, name in enumerate(names) if {phrase, singular} & {n.strip().lower() for n in name.split(",")}]
