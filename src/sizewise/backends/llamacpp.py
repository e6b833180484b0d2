"""Local GGUF models through llama-cpp-python (imported lazily: it is heavy and optional at import time).

* Each model file loads once, on first use, into a process-wide cache shared by every backend and request.
* Calls to one model are serialised (an asyncio lock per model and event loop, plus a thread lock around the
  C call); the blocking llama.cpp call runs in a worker thread so the event loop stays free.
* ``n_threads`` defaults to ``os.cpu_count()``: llama.cpp's own default uses half the cores.
* Per-token logprobs come from a logits processor that keeps the log-softmax of the step and reads the chosen
  token at the next step, instead of ``logits_all=True`` (which computes logits for every prompt token too).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.catalog.schema import LlamaCppSettings, ModelSpec

_LOAD_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}
_RUN_LOCKS: dict[str, threading.Lock] = {}
_ASYNC_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_DONE = object()


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
            _RUN_LOCKS[key] = threading.Lock()
        return _MODELS[key]


def unload_all() -> None:
    """Drop every cached model (tests, memory pressure)."""
    with _LOAD_LOCK:
        for llm in _MODELS.values():
            llm.close()
        _MODELS.clear()


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


def _text_messages(model: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
    messages = _text_messages(model, request.messages)
    kwargs: dict[str, Any] = {"messages": messages, "max_tokens": request.max_tokens or 512}
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.top_p is not None:
        kwargs["top_p"] = request.top_p
    if request.stop:
        kwargs["stop"] = request.stop
    if request.seed is not None:
        kwargs["seed"] = request.seed
    return kwargs


class LlamaCppBackend(Backend):
    """A local GGUF model (``backend: llamacpp``)."""

    def __init__(self, spec: ModelSpec, settings: LlamaCppSettings, *, path: Path | None = None) -> None:
        self.model = spec.name
        self.spec = spec
        self.settings = settings
        self._path = path

    @property
    def path(self) -> Path:
        """The GGUF file (embedded ones are located, assembled and verified on first access)."""
        if self._path is None:
            from sizewise.catalog import embedded

            assert self.settings.embedded is not None
            self._path = embedded.model_path(self.settings.embedded)
        return self._path

    def llama(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (blocking: loads on first call)."""
        return load_llama(self.path, self.settings, self.spec.context_window)

    def _async_lock(self) -> asyncio.Lock:
        locks = _ASYNC_LOCKS.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(str(self.path), asyncio.Lock())

    def _call(
        self, recorder_wanted: bool, kwargs: dict[str, Any], cancelled: threading.Event | None = None
    ) -> tuple[Any, _Recorder | None, Any]:
        from llama_cpp import LogitsProcessorList

        llm = self.llama()
        recorder = _Recorder(llm) if recorder_wanted else None
        processors: list[Any] = [recorder] if recorder is not None else []
        if cancelled is not None:
            processors.append(_EndWhenSet(cancelled, llm.token_eos()))
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        try:
            return llm, recorder, llm.create_chat_completion(**kwargs)
        except ValueError as error:  # llama.cpp's "Requested tokens exceed context window" and the like
            raise BackendError(f"{self.model}: {error}", retryable=False, status=400) from None

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Generate a whole answer (with per-token logprobs when ``request.logprobs``)."""
        await asyncio.to_thread(self.llama)  # load outside the lock's critical path of other models
        start = time.perf_counter()
        cancelled = threading.Event()
        async with self._async_lock():
            try:
                _llm, recorder, response = await asyncio.to_thread(self._locked_complete, request, cancelled)
            except asyncio.CancelledError:
                # The caller gave up (request timeout, client gone). The worker thread cannot be killed: stop
                # its generation at the next token, or a retry on this model would wait for it to finish.
                cancelled.set()
                raise
        choice = response["choices"][0]
        text = choice["message"].get("content") or ""
        usage = response.get("usage") or {}
        result = ChatResult(
            model=self.model,
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=time.perf_counter() - start,
        )
        if recorder is not None:
            result.tokens, result.logprobs = recorder.tokens(), recorder.logprobs
        return result

    def _locked_complete(self, request: ChatRequest, cancelled: threading.Event) -> tuple[Any, _Recorder | None, Any]:
        with _RUN_LOCKS[str(self.path)]:
            if cancelled.is_set():  # given up while waiting for the model
                raise BackendError(f"{self.model}: call cancelled", retryable=False)
            llm, recorder, response = self._call(request.logprobs, _kwargs(request, self.model), cancelled)
            if recorder is not None:
                recorder.finish(response["choices"][0]["message"].get("content") or "")
            return llm, recorder, response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the answer; the last chunk carries ``finish_reason`` and the usage counts."""
        await asyncio.to_thread(self.llama)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                with _RUN_LOCKS[str(self.path)]:
                    if stop.is_set():  # the client left while waiting for the model
                        return
                    _llm, recorder, chunks = self._call(True, {**_kwargs(request, self.model), "stream": True})
                    assert recorder is not None
                    text: list[str] = []
                    finish = "stop"
                    for chunk in chunks:
                        if stop.is_set():
                            chunks.close()  # stops llama.cpp generating for a client that went away
                            return
                        choice = chunk["choices"][0]
                        piece = choice["delta"].get("content") or ""
                        if piece:
                            text.append(piece)
                            loop.call_soon_threadsafe(queue.put_nowait, ChatChunk(text=piece))
                        finish = choice.get("finish_reason") or finish
                    recorder.finish("".join(text))
                    done = ChatChunk(
                        finish_reason=finish,
                        prompt_tokens=recorder.prompt_tokens or 0,
                        completion_tokens=len(recorder.ids),
                    )
                    loop.call_soon_threadsafe(queue.put_nowait, (done, recorder.logprobs))
            except BaseException as error:
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        async with self._async_lock():
            worker = loop.run_in_executor(None, produce)
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, tuple):
                        yield item[0]
                    else:
                        yield item
            finally:
                stop.set()
                await worker

    async def choice_logprobs(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        """Log-probability of each choice's first token as the answer's first token (reads the prompt only)."""
        await asyncio.to_thread(self.llama)
        async with self._async_lock():
            return await asyncio.to_thread(self._locked_choices, request, choices)

    def _locked_choices(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        from llama_cpp import LogitsProcessorList

        with _RUN_LOCKS[str(self.path)]:
            llm = self.llama()
            recorder = _Recorder(llm, keep_first=True)
            try:
                llm.create_chat_completion(
                    messages=_text_messages(self.model, request.messages),
                    max_tokens=1,
                    logits_processor=LogitsProcessorList([recorder]),
                )
            except ValueError as error:
                raise BackendError(f"{self.model}: {error}", retryable=False, status=400) from None
            assert recorder.first is not None
            out: dict[str, float] = {}
            for choice in choices:
                ids = llm.tokenize(choice.encode("utf-8"), add_bos=False, special=False)
                if not ids:
                    raise BackendError(f"choice {choice!r} has no tokens", retryable=False)
                out[choice] = float(recorder.first[ids[0]])
            return out
