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

from sizewise.backends import llama_tools
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
    the next token (``create_chat_completion`` takes no stopping criteria). Under a grammar that may not allow
    end-of-sequence yet (no candidate would be left), it raises instead: nobody waits for the answer."""

    def __init__(self, event: threading.Event, eos: int, constrained: bool = False) -> None:
        self.event = event
        self.eos = eos
        self.constrained = constrained

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.event.is_set():
            if self.constrained:
                raise BackendError("call cancelled", retryable=False)
            scores[:] = -np.inf
            scores[self.eos] = 0.0
        return scores


class _Recorder:
    """A logits processor recording, per generated token, log p(chosen token) under the raw model distribution."""

    def __init__(self, llm: Any, keep_first: bool = False, top: int = 0) -> None:
        self.llm = llm
        self.top = top
        #: Per recorded token, its ``top`` most likely alternatives ``(id, logprob)`` (OpenAI's top_logprobs).
        self.alternatives: list[list[tuple[int, float]]] = []
        #: How many recorded tokens a stream already sent as logprobs entries.
        self.sent = 0
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
        if self.top:
            best = np.argpartition(self._last, -self.top)[-self.top :]
            best = best[np.argsort(self._last[best])[::-1]]
            self.alternatives.append([(int(i), float(self._last[i]) - self._last_lse) for i in best])

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

    def entries(self, start: int = 0) -> list[dict[str, Any]]:
        """OpenAI's ``logprobs.content`` entries of the tokens recorded from ``start`` on."""

        def entry(token: int, logprob: float) -> dict[str, Any]:
            raw = bytes(self.llm.detokenize([token]))
            return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}

        out = []
        for index in range(start, len(self.ids)):
            item = entry(self.ids[index], self.logprobs[index])
            top = self.alternatives[index] if index < len(self.alternatives) else []
            item["top_logprobs"] = [entry(token, logprob) for token, logprob in top]
            out.append(item)
        return out


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


def _kwargs(llm: Any, request: ChatRequest, model: str) -> dict[str, Any]:
    """``create_chat_completion``'s arguments: messages for the model's template, sampling, and the grammar
    of a JSON answer or a forced tool call (:mod:`llama_tools`)."""
    mode = llama_tools.tool_mode(request)
    tools = request.extra.get("tools") or [] if mode.kind != "none" else []
    template = str((getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template", ""))
    kwargs: dict[str, Any] = {
        "messages": llama_tools.prompt_messages(text_messages(model, request.messages), tools, template),
        "max_tokens": request.max_tokens or 512,
    }
    if tools and "tools" in template:
        kwargs["tools"] = tools
    for name in ("temperature", "top_p", "seed"):
        if getattr(request, name) is not None:
            kwargs[name] = getattr(request, name)
    if request.stop:
        kwargs["stop"] = request.stop
    if (grammar := llama_tools.grammar(mode)) is not None:
        kwargs["grammar"] = grammar
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
    kwargs = _kwargs(llm, request, model)
    # The recorder costs a copy of the logits per token: only where logprobs are asked for, or a stream needs
    # its counts (llama-cpp-python's streams report no usage).
    top = min(int(request.extra.get("top_logprobs") or 0), 20) if request.logprobs else 0
    recorder = _Recorder(llm, top=top) if request.logprobs or op == "stream" else None
    processors: list[Any] = [_EndWhenSet(cancelled, llm.token_eos(), constrained="grammar" in kwargs)]
    if recorder is not None:
        processors.append(recorder)
    if op == "stream":
        assert recorder is not None
        text, finish = _stream(llm, model, kwargs, processors, cancelled, emit, recorder if request.logprobs else None)
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
        if request.logprobs:  # OpenAI's object: a stream already sent the entries of its earlier chunks
            done["entries"] = recorder.entries(recorder.sent)
    return done


def _stream(
    llm: Any,
    model: str,
    kwargs: dict[str, Any],
    processors: list[Any],
    cancelled: threading.Event,
    emit: Callable[[Message], None],
    logged: _Recorder | None = None,
) -> tuple[str, str]:
    """Stream the pieces through ``emit``; with ``logged``, each piece carries the logprobs entries of the
    tokens recorded since the last (a token is recorded one step after it is chosen, so they trail by one)."""
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
            message: dict[str, Any] = {"text": piece}
            if logged is not None:
                message["entries"] = logged.entries(logged.sent)
                logged.sent = len(logged.ids)
            emit({"chunk": message})
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
