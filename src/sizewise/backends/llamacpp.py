"""Local GGUF models through llama-cpp-python (``backend: llamacpp``).

* By default each model file runs in its own worker process (:mod:`llama_process`): a crash in native code
  (SIGILL, SIGSEGV, the out-of-memory killer) fails the calls in flight, which the engine answers from the next
  model, and the next call starts a new worker. ``isolate: false`` runs the model in a thread of this process
  instead (what bench/models.py compares).
* Either way a model file loads once, on first use, and its calls run one at a time, in order.
* A call the caller gives up on (request timeout, client gone) stops generating at the next token.
* ``n_threads`` defaults to ``os.cpu_count()``: llama.cpp's own default uses half the cores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sizewise.backends import llama_runtime, llama_tools
from sizewise.backends.base import Backend
from sizewise.backends.llama_process import model_process
from sizewise.catalog.schema import LlamaCppSettings, ModelSpec
from sizewise.core.chat import BackendError, ChatChunk, ChatRequest, ChatResult

_RUN_LOCKS: dict[str, threading.Lock] = {}
_ASYNC_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _choices_asked(request: ChatRequest) -> int:
    n = request.extra.get("n", 1)
    return n if isinstance(n, int) and n > 1 else 1


def _as_delta(index: int, choice: dict[str, Any]) -> dict[str, Any]:
    """A whole choice as one streamed chunk's choice (tool calls get their ``index``)."""
    delta = dict(choice["message"])
    if delta.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
    return {"index": index, "delta": delta, "logprobs": choice["logprobs"], "finish_reason": choice["finish_reason"]}


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

    def load(self) -> None:
        """Load the model now (blocking): start its worker, or load it in this process when not isolated."""
        if self.settings.isolate:
            self.process().start()
        else:
            llama_runtime.load_llama(self.path, self.settings, self.spec.context_window)

    def process(self) -> Any:
        """The model's worker process (:class:`~sizewise.backends.llama_process.ModelProcess`)."""
        return model_process(self.model, self.path, self.settings, self.spec.context_window)

    def state(self) -> dict[str, Any] | None:
        """The worker's pid, starts and crashes (``None`` when the model runs in this process)."""
        if not self.settings.isolate:
            return None
        if self._path is None:  # never called: nothing started (resolving the path could assemble the model)
            return {"pid": None, "starts": 0, "crashes": 0, "last_exit": None}
        return self.process().state()

    # -- calls -----------------------------------------------------------------------------------------------
    async def _run(self, op: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = {**payload, "request": dataclasses.asdict(payload["request"])}
        if self.settings.isolate:
            # Only the first call resolves the file (an embedded model may be assembled then): off the event loop.
            path = self._path if self._path is not None else await asyncio.to_thread(lambda: self.path)
            runner = model_process(self.model, path, self.settings, self.spec.context_window).run(op, payload)
        else:
            runner = self._run_in_thread(op, payload)
        async for message in runner:
            yield message

    async def _sample(self, request: ChatRequest, mode: llama_tools.ToolMode) -> tuple[ChatResult, dict[str, Any]]:
        """One answer, read for tool calls, and its choice in OpenAI's format."""
        start = time.perf_counter()
        done: dict[str, Any] = {}
        async for message in self._run("complete", {"request": request}):
            done = message.get("done", done)
        text, calls = llama_tools.parse_answer(mode, request, done["text"])
        result = ChatResult(
            model=self.model,
            text=text,
            finish_reason="tool_calls" if calls else done["finish_reason"],
            prompt_tokens=done["prompt_tokens"],
            completion_tokens=done["completion_tokens"],
            latency_s=time.perf_counter() - start,
            tokens=done.get("tokens") if request.logprobs else None,
            logprobs=done.get("logprobs") if request.logprobs else None,
            tool_calls=calls,
        )
        message = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        logprobs = {"content": done["entries"], "refusal": None} if "entries" in done else None
        if logprobs is not None:
            result.upstream["logprobs"] = logprobs
        choice = {"message": message, "logprobs": logprobs, "finish_reason": result.finish_reason}
        return result, choice

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Generate a whole answer (with per-token logprobs when ``request.logprobs``); ``n > 1`` answers are
        sampled one after another (seed, seed + 1, ... when a seed is given), every choice in
        ``upstream["choices"]``, the prompt counted once."""
        start = time.perf_counter()
        mode = llama_tools.tool_mode(request)  # a request the model cannot serve fails before it waits
        result, first = await self._sample(request, mode)
        n = _choices_asked(request)
        if n > 1:
            choices = [first]
            for index in range(1, n):
                seed = None if request.seed is None else request.seed + index
                more, choice = await self._sample(dataclasses.replace(request, seed=seed), mode)
                result.completion_tokens += more.completion_tokens
                choices.append(choice)
            result.upstream["choices"] = [{"index": i, **choice} for i, choice in enumerate(choices)]
        result.latency_s = time.perf_counter() - start
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the answer; the last chunk carries ``finish_reason`` and the usage counts.

        With tools the answer is held until it ends (a tool call is known only once whole), then sent as one
        chunk of text or of tool calls. Choices past the first (``n > 1``) follow whole, before the last chunk.
        """
        mode = llama_tools.tool_mode(request)
        held = mode.kind != "none"
        text: list[str] = []
        done: dict[str, Any] = {}
        async for message in self._run("stream", {"request": request}):
            if "chunk" in message:
                piece = message["chunk"]
                entries = piece.get("entries")
                if held:
                    text.append(piece["text"])
                elif piece["text"] or entries:
                    yield ChatChunk(text=piece["text"], upstream={"logprobs": {"content": entries}} if entries else {})
            else:
                done = message["done"]
        finish = done["finish_reason"]
        if held:
            content, calls = llama_tools.parse_answer(mode, request, "".join(text))
            finish = "tool_calls" if calls else finish
            tool_calls = [{"index": i, **call} for i, call in enumerate(calls or [])] or None
            yield ChatChunk(text=content, tool_calls=tool_calls)
        if done.get("entries"):  # the last token's entry (recorded after the last piece was sent)
            yield ChatChunk(upstream={"logprobs": {"content": done["entries"]}})
        completion_tokens = done["completion_tokens"]
        for index in range(1, _choices_asked(request)):
            seed = None if request.seed is None else request.seed + index
            more, choice = await self._sample(dataclasses.replace(request, seed=seed), mode)
            completion_tokens += more.completion_tokens
            yield ChatChunk(upstream={"choices": [_as_delta(index, choice)]})
        yield ChatChunk(finish_reason=finish, prompt_tokens=done["prompt_tokens"], completion_tokens=completion_tokens)

    async def choice_logprobs(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        """Log-probability of each choice's first token as the answer's first token (reads the prompt only)."""
        async for message in self._run("choices", {"request": request, "choices": choices}):
            if "done" in message:
                return dict(message["done"]["choices"])
        raise BackendError(f"{self.model}: no answer", retryable=False)  # pragma: no cover - run always ends

    # -- in this process (isolate: false) --------------------------------------------------------------------
    def _async_lock(self) -> asyncio.Lock:
        # Waiting callers queue here, not in the thread pool (a blocked pool thread would stall other work).
        locks = _ASYNC_LOCKS.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(str(self.path), asyncio.Lock())

    async def _run_in_thread(self, op: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        await asyncio.to_thread(self.load)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def post(message: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, message)

        def work() -> None:
            lock = _RUN_LOCKS.setdefault(str(self.path), threading.Lock())
            try:
                with lock:
                    if cancelled.is_set():  # given up while waiting for the model
                        raise BackendError(f"{self.model}: call cancelled", retryable=False)
                    llm = llama_runtime.load_llama(self.path, self.settings, self.spec.context_window)
                    post({"done": llama_runtime.execute(llm, self.model, op, payload, cancelled, post)})
            except BackendError as error:
                post({"error": error})
            except Exception as error:
                post({"error": BackendError(f"{self.model}: {type(error).__name__}: {error}", retryable=False)})

        finished = False
        async with self._async_lock():
            loop.run_in_executor(None, work)
            try:
                while "chunk" in (message := await queue.get()):
                    yield message
                finished = True
                if "error" in message:
                    raise message["error"]
                yield message
            finally:
                if not finished:
                    cancelled.set()
