"""The context-length filter: the prompt plus ``max_tokens`` must fit the model's context window.

The request context carries a cheap estimate (characters / 4). A model is decided on that estimate
when it is clearly inside or outside its window; only in the uncertain band (estimate within a factor
of :data:`MARGIN` of the window) is the prompt counted exactly, with the model's own tokenizer where
known: a local GGUF model's vocabulary (llama.cpp, loaded vocabulary-only, once per model), or a
Hugging Face ``tokenizer.json`` named by ``settings.tokenizer``; otherwise with the bundled offline
tokenizer (:func:`sizewise.evaluation.tokens.count_tokens`). Each message adds
:data:`PER_MESSAGE` tokens of chat-template framing. When no model fits, a 400 says how many tokens
the request needs and the largest window available.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from sizewise.catalog.schema import ModelSpec
from sizewise.core.decision import FilterReport, RequestRejected
from sizewise.policy.types import RequestContext

#: Estimates within this factor of a window are re-counted with a tokenizer.
MARGIN = 2.0
#: Chat-template tokens per message (role markers, separators).
PER_MESSAGE = 4


@lru_cache(maxsize=16)
def _tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@lru_cache(maxsize=8)
def _gguf_vocab(path: str) -> Any:
    import atexit

    import llama_cpp

    # Free the vocabularies before interpreter teardown (llama.cpp's finalizers fail once its module is gone).
    atexit.register(_gguf_vocab.cache_clear)
    return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)


def count_prompt_tokens(text: str, spec: ModelSpec, gguf: Path | None = None) -> int:
    """Tokens of ``text`` with ``spec``'s tokenizer when known (its GGUF file ``gguf``, or
    ``settings.tokenizer``), else the bundled offline one."""
    if gguf is not None:
        try:
            return len(_gguf_vocab(str(gguf)).tokenize(text.encode(), add_bos=False, special=False))
        except Exception:  # llama.cpp missing or the file unreadable: fall back to the generic count
            pass
    path = spec.settings.get("tokenizer") if isinstance(spec.settings, dict) else None
    if isinstance(path, str) and path:
        try:
            return len(_tokenizer(path).encode(text, add_special_tokens=False))
        except Exception:  # an unreadable tokenizer file must not fail the request: use the generic count
            pass
    from sizewise.core.tokens import count_tokens

    return int(count_tokens([text])[0])


class ContextFilter:
    """Drop models whose context window cannot hold the prompt plus ``max_tokens``."""

    name = "context"

    def __init__(self, gguf_path: Callable[[ModelSpec], Path | None] | None = None) -> None:
        #: Finds a local model's GGUF file (for its tokenizer); None where there is none.
        self.gguf_path = gguf_path

    def _gguf(self, spec: ModelSpec) -> Path | None:
        if self.gguf_path is None or spec.backend != "llamacpp":
            return None
        try:
            return self.gguf_path(spec)
        except Exception:  # an unresolvable file only costs precision
            return None

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        framing = PER_MESSAGE * max(len(ctx.messages), 1)
        out = ctx.max_tokens or 0
        kept = []
        needs: dict[str, int] = {}
        for spec in candidates:
            estimate = ctx.prompt_tokens + framing + out
            if estimate * MARGIN > spec.context_window and estimate < spec.context_window * MARGIN:
                counted = count_prompt_tokens(ctx.text, spec, self._gguf(spec))
                estimate = counted + framing + out
            needs[spec.name] = estimate
            if estimate <= spec.context_window:
                kept.append(spec)
            else:
                report.removed[spec.name] = f"context window {spec.context_window} < ~{estimate} tokens needed"
        if not kept:
            needed = min(needs.values(), default=ctx.prompt_tokens + out)
            largest = max((spec.context_window for spec in candidates), default=0)
            made_of, fix = (
                (f"prompt + max_tokens {out}", "shorten the prompt or lower max_tokens")
                if ctx.max_tokens
                else ("the prompt alone; no max_tokens set", "shorten the prompt")
            )
            raise RequestRejected(
                400,
                f"this request needs about {needed} tokens ({made_of}); the largest context window available "
                f"is {largest}: {fix}",
                "context_length_exceeded",
                param="messages",
            )
        return kept, report
