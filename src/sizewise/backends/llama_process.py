"""A local model in its own worker process: start it, call it, cancel a call, notice a crash, restart.

Why a process: llama.cpp is native code. A wrong instruction (SIGILL), a bad pointer (SIGSEGV) or the
kernel's out-of-memory killer ends the process it runs in; in a worker that costs the calls in flight, which
fail with a :class:`BackendError` so the engine falls back to the next model, and the next call starts a fresh
worker. The parent side is thread-based (a reader thread per worker), so calls work from any event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sizewise.catalog.schema import LlamaCppSettings
from sizewise.core.chat import BackendError

_LOG = logging.getLogger("sizewise.llama")
_REGISTRY_LOCK = threading.Lock()
_PROCESSES: dict[str, ModelProcess] = {}
PORTABLE_HINT = (
    "llama.cpp was built for instructions this CPU or its kernel does not allow; "
    "rebuild it portable: rm -f .venv/.sizewise-installed && make setup (docs/models.md)"
)


def describe_exit(returncode: int) -> str:
    """``killed by SIGILL (Illegal instruction)`` or ``exited with code 3``."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"killed by signal {-returncode}"
        return f"killed by {sig.name} ({signal.strsignal(sig) or sig.name})"
    return f"exited with code {returncode}"


@dataclass
class _Worker:
    """One started child process and what its reader thread learned."""

    proc: subprocess.Popen[bytes]
    ready: threading.Event = field(default_factory=threading.Event)
    hello: dict[str, Any] = field(default_factory=dict)
    exit: str | None = None
    write_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        with self.write_lock:
            stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            stdin.flush()


@dataclass
class _Call:
    worker: _Worker
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def post(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's event loop already closed
            self.loop.call_soon_threadsafe(self.queue.put_nowait, message)


class ModelProcess:
    """The worker of one GGUF file; shared by every backend and request that uses the file."""

    def __init__(self, model: str, path: Path, settings: LlamaCppSettings, context_window: int) -> None:
        self.model = model
        self.path = path
        self.settings = settings
        self.context_window = context_window
        self.starts = 0
        self.crashes = 0
        self.last_exit: str | None = None
        self._worker: _Worker | None = None
        self._calls: dict[str, _Call] = {}
        self._start_lock = threading.Lock()
        self._ids = itertools.count()

    # -- life cycle ------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The running worker's process id, if one runs."""
        worker = self._worker
        return worker.proc.pid if worker is not None and worker.proc.poll() is None else None

    def state(self) -> dict[str, Any]:
        """What ``/healthz`` shows: pid, starts, crashes, how the last worker ended."""
        return {"pid": self.pid, "starts": self.starts, "crashes": self.crashes, "last_exit": self.last_exit}

    def start(self) -> _Worker:
        """The running worker, started (and the model loaded) if none runs. Blocking."""
        with self._start_lock:
            worker = self._worker
            if worker is not None and worker.proc.poll() is None and worker.exit is None:
                return worker
            worker = _Worker(
                subprocess.Popen(
                    [sys.executable, "-m", "sizewise.backends.llama_worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
            self.starts += 1
            threading.Thread(target=self._read, args=(worker,), daemon=True, name=f"llama-{self.model}").start()
            setup = {
                "model": self.model,
                "path": str(self.path),
                "settings": self.settings.model_dump(),
                "context_window": self.context_window,
            }
            with contextlib.suppress(OSError):  # a worker that died at once is reported below
                worker.send(setup)
            if not worker.ready.wait(self.settings.load_timeout_s):
                worker.proc.kill()
                raise BackendError(f"{self.model}: model did not load in {self.settings.load_timeout_s:g}s")
            if "ready" not in worker.hello:
                error = worker.hello.get("error") or {}
                message = error.get("message") or f"worker {worker.exit} while loading {self.path.name}"
                hint = f"; {PORTABLE_HINT}" if "SIGILL" in message else ""
                raise BackendError(f"{self.model}: {message}{hint}", retryable=False)
            self._worker = worker
            return worker

    def _read(self, worker: _Worker) -> None:
        """Reader thread: hand each message to its call; when the output ends, fail the calls of this worker."""
        try:
            self._dispatch(worker)
        except Exception:  # a reader that stops must not leave calls waiting: end the worker too
            _LOG.exception("%s: reading the worker's answers failed; stopping the worker", self.model)
            worker.proc.kill()
        worker.exit = describe_exit(worker.proc.wait())
        if worker.ready.is_set() and "ready" in worker.hello:
            self.crashes += 1
            self.last_exit = worker.exit
        worker.ready.set()
        for call in list(self._calls.values()):
            if call.worker is worker:
                call.post({"died": worker.exit})

    def _dispatch(self, worker: _Worker) -> None:
        stdout: IO[bytes] | None = worker.proc.stdout
        assert stdout is not None
        for line in stdout:
            message = json.loads(line)
            if not worker.ready.is_set():
                worker.hello = message
                worker.ready.set()
                continue
            call = self._calls.get(str(message.get("id")))
            if call is not None:
                call.post(message)

    def close(self) -> None:
        """Stop the worker: close its input (it exits), kill it if it lingers."""
        with self._start_lock:
            worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(OSError):
            assert worker.proc.stdin is not None
            worker.proc.stdin.close()
        try:
            worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()

    # -- calls -----------------------------------------------------------------------------------------------
    async def run(self, op: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The messages of one call (``chunk``s, then ``done``); failures raise :class:`BackendError`."""
        worker = self._worker
        if worker is None or worker.exit is not None or worker.proc.poll() is not None:
            worker = await asyncio.to_thread(self.start)
        call_id = str(next(self._ids))
        loop = asyncio.get_running_loop()
        call = self._calls[call_id] = _Call(worker, loop)
        finished = False
        # The call is written in a thread (a long prompt can fill the pipe); a cancellation must follow it on the
        # pipe, never overtake it, or the worker would run the whole abandoned call.
        sent: asyncio.Future[None] = loop.run_in_executor(
            None, _send_quietly, worker, {"id": call_id, "op": op, **payload}
        )
        try:
            if worker.exit is not None:  # died between start and registration: the reader has gone
                call.post({"died": worker.exit})
            await asyncio.shield(sent)
            while True:
                message = await call.queue.get()
                if "chunk" in message:
                    yield message
                    continue
                finished = True
                if "done" in message:
                    yield message
                    return
                if "died" in message:
                    hint = f"; {PORTABLE_HINT}" if "SIGILL" in message["died"] else ""
                    raise BackendError(
                        f"{self.model}: local model worker {message['died']} during the call "
                        f"(a new worker starts on the next call){hint}",
                        retryable=False,
                    )
                error = message["error"]
                raise BackendError(error["message"], retryable=bool(error["retryable"]), status=error["status"])
        finally:
            self._calls.pop(call_id, None)
            if not finished:  # the caller gave up (timeout, client gone): stop generating at the next token
                sent.add_done_callback(lambda _: _send_quietly(worker, {"cancel": call_id}))


def _send_quietly(worker: _Worker, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError, ValueError):  # the worker is gone: its reader reports how it ended
        worker.send(message)


def model_process(model: str, path: Path, settings: LlamaCppSettings, context_window: int) -> ModelProcess:
    """The process-wide worker of ``path`` (the first caller's settings win, as for an in-process load)."""
    with _REGISTRY_LOCK:
        process = _PROCESSES.get(str(path))
        if process is None:
            process = _PROCESSES[str(path)] = ModelProcess(model, path, settings, context_window)
        return process


def close_all() -> None:
    """Stop every worker this process started (shutdown, tests)."""
    with _REGISTRY_LOCK:
        processes = list(_PROCESSES.values())
        _PROCESSES.clear()
    for process in processes:
        process.close()
