"""Can an image classifier answer this question? A small keyword route over the question's text.

An ImageNet classifier names the main object of a photo, and nothing else. So a question it can answer asks
what the thing is ("what is in this picture?", "what animal is this", "is this a cat or a dog?", "identify
this"), and a question it cannot asks about anything else: text in the image, counts, colours, people,
actions, places, mood, a description. The open cues win over the naming cues ("what does the sign say"
asks "what" but about text). An image with no question at all gets a name. Measured on the labelled
questions in ``tests/data/vision_questions.json`` (``bench/modalities.py``; docs/modalities.md).
"""

from __future__ import annotations

import re

#: Questions about something other than the object's name.
_OPEN = re.compile(
    r"\b(read|says?|said|written|writing|text|sign|words?|letters?|numbers?|digits?|count|how (many|much|old|big|far)"
    r"|colou?rs?|mood|feel(ing)?s?|emotions?|atmosphere|describe|description|explain|why|where|who|whom|whose|when"
    r"|happening|doing|wearing|left|right|behind|front|above|below|caption|story|poem|joke|translate|compare"
    r"|difference|price|cost|safe|healthy|calories|recipe|summari[sz]e|diagnos\w*|age|style|weather|time|date"
    r"|brand|logo|model|year|ocr|transcribe|detail(s|ed)?|background|plot|chart|graph|table|diagram|code|math"
    r"|equation|solve|meaning|means|symboli[sz]e|think|opinion|can i|how (do|does|to|can))\b"
)
#: Questions that ask for the name of what is shown.
_NAME = re.compile(
    r"\b(what('s| is| are)? (this|that|it|these|those|in|on|shown|pictured|depicted|here)"
    r"|what (animal|object|thing|kind|type|sort|breed|species|bird|dog|cat|fish|insect|food|dish|plant|flower"
    r"|fruit|vegetable|vehicle|car|instrument|tool|item)s?"
    r"|which (animal|object|thing|breed|species|kind|type)|identify|classify|recogni[sz]e|label|name (this|that|the|it)"
    r"|(is|are) (this|that|it|these|those) (an?|the|some)\b|looking at|tell me what|is there an?\b)"
)


def classifiable(question: str) -> tuple[bool, str]:
    """(whether a classifier's label answers ``question``, why) for the text asked about an image."""
    text = " ".join(question.lower().split())
    if not text.strip(" ?.!"):
        return True, "no question: the image is named"
    if (found := _OPEN.search(text)) is not None:
        return False, f"asks about more than the name ({found.group(0)!r})"
    if (found := _NAME.search(text)) is not None:
        return True, f"asks what it is ({found.group(0)!r})"
    return False, "not a naming question"
