"""What a router sees of a conversation, and which input modalities a request holds (stdlib only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def conversation_text(messages: Sequence[dict[str, object]]) -> str:
    """The text a router sees for a conversation: every message's text content, in order.

    Image/audio parts are dropped; roles are kept as a prefix so a router can tell
    a follow-up turn from a first question.
    """
    lines = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(
                str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
            )
        if content:
            lines.append(f"{message.get('role', 'user')}: {content}")
    return "\n".join(lines)


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
