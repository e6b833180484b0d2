"""What a router sees of a conversation, and which input modalities a request holds (stdlib only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def content_text(content: object) -> str:
    """A message content's text: a string as it is, a list's text parts joined by spaces (image/audio dropped)."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def conversation_text(messages: Sequence[dict[str, object]]) -> str:
    """The text a router sees for a conversation: every message's text content, in order.

    Image/audio parts are dropped; roles are kept as a prefix so a router can tell
    a follow-up turn from a first question.
    """
    lines = []
    for message in messages:
        content = message.get("content")
        if content and (text := content_text(content)):
            lines.append(f"{message.get('role', 'user')}: {text}")
    return "\n".join(lines)


def last_user_text(messages: Sequence[dict[str, object]]) -> str:
    """The text of the last user message (the question a domain, or an image's classifier, is judged on)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def modalities(messages: Sequence[dict[str, Any]]) -> frozenset[str]:
    """Input modalities present in ``messages``: always ``text``, plus ``image``, ``audio`` or ``file`` parts."""
    found = {"text"}
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in ("image_url", "image", "input_image"):
                    found.add("image")
                elif kind in ("input_audio", "audio"):
                    found.add("audio")
                elif kind == "file":  # a document part: only a model whose catalog entry takes files
                    found.add("file")
    return frozenset(found)
