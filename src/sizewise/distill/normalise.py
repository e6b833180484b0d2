"""Map a teacher's free-text answer to one label of a task, or to None.

Teachers answer in prose: "Yes.", "The answer is No", "**up**", "Answer: B", "No, it does not overrule".
:class:`AnswerNormaliser` turns such text into one of the task's labels with these rules, in order:

1. Clean: lower-case; markdown emphasis, code ticks, quotes and brackets become spaces; whitespace squeezed.
2. Drop a leading preamble ("answer:", "the answer is", "final answer:", "label:", "a:", "i think",
   "it is", ...), repeatedly, so "Final answer: the answer is (B)." reads "b".
3. The whole remainder (trailing punctuation dropped) is a label or one of its aliases: that label.
4. Otherwise every whole-word mention of a label or alias is found (longest first, so "not overruling"
   wins over "overruling"); exactly one label mentioned ("no, because ...", "the price went down"),
   and no mention negated ("not yes", "isn't up", "never down"): that label. "Yes and no" is two.
5. Anything else (no label, two labels, a negated one, empty text) is None: unparseable or ambiguous,
   and kept out of training.

Single-letter labels (multiple choice "A".."E") count in rule 4 only where punctuation or the end follows
them ("(b)", "b)", "b.", "a or b" but not the article in "a cat"); a preamble "a:" needs its colon for the same reason.
Nothing here knows a dataset; aliases are the caller's (e.g. ``{"yes": ["true"]}``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sizewise.errors import DataError

#: Phrases a teacher puts before its answer; removed from the start, longest first, repeatedly.
PREAMBLES = (
    "the final answer is",
    "the correct answer is",
    "the answer would be",
    "the answer is",
    "my answer is",
    "final answer",
    "correct answer",
    "the label is",
    "i would say",
    "i think",
    "i believe",
    "answer",
    "label",
    "output",
    "prediction",
    "it is",
    "it's",
    "a:",
)
#: Words that negate the label right after them ("not yes", "isn't up").
NEGATIONS = ("not", "no", "never", "isn't", "isnt", "aren't", "wasn't", "neither", "nor", "without")
_CLEAN = re.compile(r"[*_`\"“”‘’(\[\]{}<>|#~]+")
_SPACES = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.,;:!?'\-]+$")
_LEADING = re.compile(r"^[\s.,;:!?'\-]+")


def _clean(text: str) -> str:
    text = _CLEAN.sub(" ", text.lower()).replace(")", ".")  # "b)" reads like "b."
    return _SPACES.sub(" ", text).strip()


class AnswerNormaliser:
    """Free-text answers to ``labels`` (see the module docstring for the rules); ``aliases`` maps a label
    to other words meaning it (matched like the label itself)."""

    def __init__(self, labels: Sequence[str], aliases: dict[str, list[str]] | None = None) -> None:
        if isinstance(labels, str) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise DataError("labels must be a non-empty list of non-empty strings")
        if len({_clean(x) for x in labels}) != len(labels):
            raise DataError(f"labels must differ after lower-casing: {list(labels)}")
        self.labels = list(labels)
        self.aliases = dict(aliases or {})
        unknown = [k for k in self.aliases if k not in self.labels]
        if unknown:
            raise DataError(f"aliases name {unknown[0]!r}, which is not a label ({', '.join(self.labels)})")
        forms: dict[str, str] = {}
        for label in self.labels:
            for form in [label, *self.aliases.get(label, [])]:
                key = _clean(form)
                if key in forms and forms[key] != label:
                    raise DataError(f"{form!r} would mean both {forms[key]!r} and {label!r}")
                if key:
                    forms[key] = label
        self._forms = forms
        ordered = sorted(forms, key=len, reverse=True)
        self._mention = re.compile(r"(?<![\w'])(" + "|".join(re.escape(f) for f in ordered) + r")(?![\w'])")
        self._preamble = re.compile(r"^(?:" + "|".join(re.escape(p) for p in PREAMBLES) + r")(?![\w'])[\s:=\-,]*")

    def label_of(self, text: object) -> str | None:
        """The label ``text`` answers, or None when it names none, several, or a negated one."""
        if not isinstance(text, str):
            return None
        body = _clean(text)
        for _ in range(4):  # "final answer: the answer is b" has two preambles
            stripped = _LEADING.sub("", self._preamble.sub("", body, count=1))
            if stripped == body:
                break
            body = stripped
        whole = _TRAILING.sub("", body)
        if whole in self._forms:
            return self._forms[whole]
        if not whole:
            return None
        found: set[str] = set()
        for match in self._mention.finditer(whole):
            form = match.group(1)
            rest = whole[match.end() :]
            if len(form) == 1 and rest[:1] not in ("", ".", ",", ";", ":") and not rest.startswith((" or ", " and ")):
                continue  # a lone letter inside prose ("a cat") is no choice; "a or b" still names two
            before = whole[: match.start()].split()
            if before and before[-1] in NEGATIONS:
                return None  # "it is not yes": saying what it is not names no label
            found.add(self._forms[form])
        return found.pop() if len(found) == 1 else None

    def labels_of(self, texts: Sequence[object]) -> list[str | None]:
        """:meth:`label_of` for each text."""
        return [self.label_of(t) for t in texts]
