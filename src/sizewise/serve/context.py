"""What filters and policies see of a request: a :class:`RequestContext` built from plain values.

The gateway parses HTTP (body, headers, API key) and passes the results here; nothing in the request
path reads a header.
"""

from __future__ import annotations

import math
import uuid

from sizewise.backends.base import ChatRequest
from sizewise.core.text import conversation_text, modalities
from sizewise.policy.types import RequestContext


def build_context(
    request: ChatRequest,
    *,
    model_field: str,
    stream: bool = False,
    user: str | None = None,
    api_key: str | None = None,
    request_id: str | None = None,
    max_latency_ms: float | None = None,
    session_id: str | None = None,
) -> RequestContext:
    """The context of a validated request: its text, modalities and a cheap prompt size."""
    text = conversation_text(request.messages)
    return RequestContext(
        request=request,
        messages=request.messages,
        text=text,
        modalities=modalities(request.messages),
        prompt_tokens=math.ceil(len(text) / 4),
        max_tokens=request.max_tokens,
        stream=stream,
        model_field=model_field,
        request_id=request_id or uuid.uuid4().hex,
        api_key=api_key,
        user=user,
        max_latency_ms=max_latency_ms,
        session_id=session_id,
    )
