"""Shared builders for the constraint tests: catalog models and request contexts."""

from __future__ import annotations

import math
from typing import Any

from sizewise.backends.base import ChatRequest
from sizewise.catalog.schema import ModelSpec
from sizewise.core.text import modalities as _modalities
from sizewise.evaluation.table import conversation_text
from sizewise.policy.types import RequestContext


def model(name: str, **kw: Any) -> ModelSpec:
    """A catalog entry with test defaults (an OpenAI-style backend, 8k context)."""
    kw.setdefault("context_window", 8192)
    kw.setdefault("backend", "openai")
    return ModelSpec(name=name, **kw)


def ctx(
    content: str | list[dict[str, Any]] = "hello",
    *,
    max_tokens: int | None = None,
    api_key: str | None = None,
    max_latency_ms: float | None = None,
    model_field: str = "sizewise",
    request_id: str = "r1",
) -> RequestContext:
    """A request context as the engine builds it, for one user message."""
    messages = [{"role": "user", "content": content}]
    text = conversation_text(messages)
    return RequestContext(
        request=ChatRequest(messages=messages, max_tokens=max_tokens),
        messages=messages,
        text=text,
        modalities=_modalities(messages),
        prompt_tokens=math.ceil(len(text) / 4),
        max_tokens=max_tokens,
        model_field=model_field,
        request_id=request_id,
        api_key=api_key,
        max_latency_ms=max_latency_ms,
    )


IMAGE = [
    {"type": "text", "text": "what is in this picture?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
]
