"""What runs beside a loaded GGUF model: loading it, and one call (answer, stream or next-token choices).

The code here is synchronous and knows nothing of asyncio or processes: :mod:`llama_worker` runs it in a child
process (the default: a crash in native code costs a request, not the gateway), :mod:`llamacpp` in a thread when
``isolate: false``. A call's messages are plain dicts (see :func:`execute`), so they cross a pipe unchanged.

* Per-token logprobs come from a logits processor that keeps the log-softmax of the step and reads the chosen
  token at the next step, instead of ``logits_all=True`` (which computes logits for every prompt token too).
* A call stops at the next token once its ``cancelled`` event is set (the caller gave up), so the next call on
  the same model does not wait for an abandoned answer.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.catalog.schema import LlamaCppSettings
from sizewise.core.chat import BackendError, ChatRequest

_LOAD_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}

#: One message of a call: ``{"chunk": {...}}`` while streaming, then ``{"done": {...}}`` or ``{"error": {...}}``.
Message = dict[str, Any]


def load_llama(path: Path, settings: LlamaCppSettings, context_window: int) -> Any:
    """The ``llama_cpp.Llama`` for ``path``, loaded once per process (the first caller's settings win)."""
    key = str(path)
    with _LOAD_LOCK:
        if key not in _MODELS:
            try:
                from llama_cpp import Llama
            except ImportError as error:  # pragma: no cover - depends on the install
                raise BackendError(f"llama-cpp-python is not installed: {error}", retryable=False) from None
            try:
                _MODELS[key] = Llama(
                    model_path=key,
                    n_ctx=settings.n_ctx or context_window,
                    n_threads=settings.n_threads or os.cpu_count() or 1,
                    n_threads_batch=settings.n_threads or os.cpu_count() or 1,
                    n_gpu_layers=settings.n_gpu_layers,
                    chat_format=settings.chat_format,
                    seed=settings.seed if settings.seed is not None else 0xFFFFFFFF,
                    verbose=False,
                )
            except ValueError as error:
                raise BackendError(f"cannot load {path}: {error}", retryable=False) from None
        return _MODELS[key]


class _EndWhenSet:
    """A logits processor that leaves only end-of-sequence once ``event`` is set, so the generation stops at
    the next token (``create_chat_completion`` takes no stopping criteria)."""

    def __init__(self, event: threading.Event, eos: int) -> None:
        self.event = event
        self.eos = eos

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.event.is_set():
            scores[:] = -np.inf
            scores[self.eos] = 0.0
        return scores


class _Recorder:
    """A logits processor recording, per generated token, log p(chosen token) under the raw model distribution."""

    def __init__(self, llm: Any, keep_first: bool = False) -> None:
        self.llm = llm
        self.steps = 0
        self.prompt_tokens: int | None = None
        self.ids: list[int] = []
        self.logprobs: list[float] = []
        self.first: np.ndarray | None = None
        self._keep_first = keep_first
        self._last: np.ndarray | None = None
        self._last_lse = 0.0

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        n_tokens = int(self.llm.n_tokens)
        if self.prompt_tokens is None:
            self.prompt_tokens = n_tokens
        elif self._last is not None:  # the token chosen at the previous step was just evaluated
            self._record(int(self.llm.input_ids[n_tokens - 1]))
        self.steps += 1
        self._last = np.array(scores, dtype=np.float32, copy=True)
        top = float(self._last.max())
        self._last_lse = top + math.log(float(np.exp(self._last - top).sum()))
        if self._keep_first and self.first is None:
            self.first = self._last - self._last_lse
        return scores

    def _record(self, token: int) -> None:
        assert self._last is not None
        self.ids.append(token)
        self.logprobs.append(float(self._last[token]) - self._last_lse)

    def finish(self, text: str) -> None:
        """Recover the last chosen token (never evaluated) as the top candidate that completes ``text``."""
        if self._last is None or len(self.ids) >= self.steps:
            return
        prefix = self._detok(self.ids)
        rest = text[len(prefix) :] if text.startswith(prefix) else ""
        if not rest:
            return  # the last step chose end-of-text or a stop string: not part of the answer
        for candidate in np.argsort(self._last)[::-1][:40]:
            if self._detok([int(candidate)]) == rest:
                self._record(int(candidate))
                return

    def _detok(self, ids: list[int]) -> str:
        return bytes(self.llm.detokenize(ids)).decode("utf-8", errors="ignore")

    def tokens(self) -> list[str]:
        """The recorded tokens' text."""
        return [self._detok([token]) for token in self.ids]


def text_messages(model: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with string content, as GGUF chat templates expect: text parts joined, ``None`` as ""."""
    plain = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            other = sorted({str(part.get("type")) for part in content} - {"text"})
            if other:
                raise BackendError(
                    f"{model}: takes text only, not {', '.join(other)} parts", retryable=False, status=400
                )
            content = "\n".join(part["text"] for part in content)
        plain.append({**message, "content": content or ""})
    return plain


def _kwargs(request: ChatRequest, model: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "messages": text_messages(model, request.messages),
        "max_tokens": request.max_tokens or 512,
    }
    for name in ("temperature", "top_p", "seed"):
        if getattr(request, name) is not None:
            kwargs[name] = getattr(request, name)
    if request.stop:
        kwargs["stop"] = request.stop
    return kwargs


def _generate(llm: Any, model: str, kwargs: dict[str, Any], processors: list[Any]) -> Any:
    from llama_cpp import LogitsProcessorList

    try:
        return llm.create_chat_completion(**kwargs, logits_processor=LogitsProcessorList(processors))
    except ValueError as error:  # llama.cpp's "Requested tokens exceed context window" and the like
        raise BackendError(f"{model}: {error}", retryable=False, status=400) from None


def execute(
    llm: Any,
    model: str,
    op: str,
    payload: dict[str, Any],
    cancelled: threading.Event,
    emit: Callable[[Message], None],
) -> dict[str, Any]:
    """Run one call of ``op`` (``complete``, ``stream`` or ``choices``) and return its final message body.

    ``payload`` holds ``request`` (a :class:`ChatRequest` as a dict) and, for ``choices``, ``choices``. A stream
    sends each piece through ``emit`` as ``{"chunk": {"text": ...}}``.
    """
    request = ChatRequest(**payload["request"])
    if op == "choices":
        return {"choices": _choices(llm, model, request, list(payload["choices"]))}
    # The recorder costs a copy of the logits per token: only where logprobs are asked for, or a stream needs
    # its counts (llama-cpp-python's streams report no usage).
    recorder = _Recorder(llm) if request.logprobs or op == "stream" else None
    processors: list[Any] = [_EndWhenSet(cancelled, llm.token_eos())]
    if recorder is not None:
        processors.append(recorder)
    kwargs = _kwargs(request, model)
    if op == "stream":
        assert recorder is not None
        text, finish = _stream(llm, model, kwargs, processors, cancelled, emit)
        recorder.finish(text)  # idempotent: the last token counts in the usage
        usage = {"prompt_tokens": recorder.prompt_tokens or 0, "completion_tokens": len(recorder.ids)}
    else:
        response = _generate(llm, model, kwargs, processors)
        choice = response["choices"][0]
        text, finish = choice["message"].get("content") or "", choice.get("finish_reason") or "stop"
        usage = {key: int((response.get("usage") or {}).get(key, 0)) for key in ("prompt_tokens", "completion_tokens")}
    done: dict[str, Any] = {"text": text, "finish_reason": finish, **usage}
    if recorder is not None:
        recorder.finish(text)
        done.update(tokens=recorder.tokens(), logprobs=recorder.logprobs)
    return done


def _stream(
    llm: Any,
    model: str,
    kwargs: dict[str, Any],
    processors: list[Any],
    cancelled: threading.Event,
    emit: Callable[[Message], None],
) -> tuple[str, str]:
    chunks = _generate(llm, model, {**kwargs, "stream": True}, processors)
    text: list[str] = []
    finish = "stop"
    for chunk in chunks:
        if cancelled.is_set():
            chunks.close()  # stops llama.cpp generating for a caller that went away
            break
        choice = chunk["choices"][0]
        piece = choice["delta"].get("content") or ""
        if piece:
            text.append(piece)
            emit({"chunk": {"text": piece}})
        finish = choice.get("finish_reason") or finish
    return "".join(text), finish


def _choices(llm: Any, model: str, request: ChatRequest, choices: list[str]) -> dict[str, float]:
    """Log-probability of each choice's first token as the answer's first token (reads the prompt only)."""
    recorder = _Recorder(llm, keep_first=True)
    _generate(llm, model, {"messages": text_messages(model, request.messages), "max_tokens": 1}, [recorder])
    assert recorder.first is not None
    out: dict[str, float] = {}
    for choice in choices:
        ids = llm.tokenize(choice.encode("utf-8"), add_bos=False, special=False)
        if not ids:
            raise BackendError(f"choice {choice!r} has no tokens", retryable=False)
        out[choice] = float(recorder.first[ids[0]])
    return out
