"""The answer normaliser: the forms teachers answer in, and the ones that must stay unparsed."""

from __future__ import annotations

import pytest

from sizewise.distill.normalise import AnswerNormaliser
from sizewise.errors import DataError

YES_NO = AnswerNormaliser(["Yes", "No"])
LETTERS = AnswerNormaliser(["A", "B", "C", "D"])
MOVES = AnswerNormaliser(["up", "down", "none", "neutral"], aliases={"up": ["rose", "higher"], "down": ["fell"]})


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Yes", "Yes"),
        ("Yes.", "Yes"),
        (" yes ", "Yes"),
        ("NO", "No"),
        ("**Yes**", "Yes"),
        ("`No`", "No"),
        ('"Yes"', "Yes"),
        ("The answer is No", "No"),
        ("The answer is: yes.", "Yes"),
        ("Answer: Yes", "Yes"),
        ("A: No", "No"),
        ("Final answer: the answer is yes", "Yes"),
        ("I think the answer is yes.", "Yes"),
        ("No, it does not overrule the earlier case.", "No"),
        ("Yes - the court expressly overrules it", "Yes"),
        ("It is not overruling, so no.", "No"),
        ("yes\n\nExplanation: the sentence disavows sandoval.", "Yes"),
    ],
)
def test_yes_no_forms(text: str, label: str) -> None:
    assert YES_NO.label_of(text) == label


@pytest.mark.parametrize(
    "text",
    [
        "not yes",  # says what it is not
        "It isn't yes",
        "Yes and no",  # two labels
        "yes or no?",
        "Incomplete context.",  # no label at all
        "Insufficient information",
        "Nope",  # an unknown synonym is not guessed
        "yesterday",  # a label inside a word is no label
        "",
        "   ",
        "**",
        None,
        42,
    ],
)
def test_yes_no_unparseable_or_ambiguous(text: object) -> None:
    assert YES_NO.label_of(text) is None


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("B", "B"),
        ("Answer: B", "B"),
        ("(c)", "C"),
        ("C)", "C"),
        ("The answer is (D).", "D"),
        ("Final answer: the answer is (B).", "B"),
        ("I choose b", "B"),
        ("B) because the others are wrong", "B"),
        ("a", "A"),
    ],
)
def test_letter_forms(text: str, label: str) -> None:
    assert LETTERS.label_of(text) == label


@pytest.mark.parametrize("text", ["a cat sat on the mat", "A or B", "not B", "The answer is E"])
def test_letters_inside_prose_are_no_choice(text: str) -> None:
    assert LETTERS.label_of(text) is None


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("**up**", "up"),
        ("Up.", "up"),
        ("The price went down", "down"),
        ("gold rose", "up"),  # an alias
        ("It fell sharply", "down"),
        ("neutral", "neutral"),
        ("None", "none"),
    ],
)
def test_labels_and_aliases(text: str, label: str) -> None:
    assert MOVES.label_of(text) == label


@pytest.mark.parametrize("text", ["neither up nor down", "not up", "it rose, then fell", "never down"])
def test_negated_or_mixed_moves(text: str) -> None:
    assert MOVES.label_of(text) is None


def test_multi_word_labels_win_over_their_parts() -> None:
    normaliser = AnswerNormaliser(["overruling", "not overruling"])
    assert normaliser.label_of("This is not overruling.") == "not overruling"
    assert normaliser.label_of("Overruling") == "overruling"
    assert normaliser.labels_of(["overruling", "?"]) == ["overruling", None]


@pytest.mark.parametrize(
    ("labels", "aliases", "message"),
    [
        ([], None, "non-empty list"),
        ("yes", None, "non-empty list"),
        (["yes", "YES"], None, "must differ"),
        (["yes", ""], None, "non-empty"),
        (["yes", "no"], {"maybe": ["perhaps"]}, "not a label"),
        (["yes", "no"], {"yes": ["no"]}, "both"),
    ],
)
def test_bad_label_sets_are_named(labels: object, aliases: dict[str, list[str]] | None, message: str) -> None:
    with pytest.raises(DataError, match=message):
        AnswerNormaliser(labels, aliases)  # type: ignore[arg-type]
