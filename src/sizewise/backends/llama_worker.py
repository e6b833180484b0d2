"""The child process that holds one local model: ``python -m sizewise.backends.llama_worker``.

Protocol: JSON lines. The parent writes one set-up line ``{"path", "settings", "context_window", "model"}``;
the worker loads the model and answers ``{"ready": pid}`` (or ``{"error": {...}}`` and exits). Then each line
is a call ``{"id", "op", ...payload}`` or a cancellation ``{"cancel": id}``; the worker answers with lines
``{"id", "chunk" | "done" | "error": ...}`` (see :func:`sizewise.backends.llama_runtime.execute`). Calls run
one at a time, in order; a cancellation reaches the call in progress through a reader thread.

The protocol uses a private copy of the stdout descriptor, and fd 1 is pointed at stderr: native code that
prints cannot corrupt the protocol. When the parent goes away (stdin closes), the worker exits.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from pathlib import Path
from typing import IO, Any

from sizewise.backends.llama_runtime import execute, load_llama
from sizewise.catalog.schema import LlamaCppSettings
from sizewise.core.chat import BackendError


class _Channel:
    """Line-framed JSON out, one writer at a time."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()


def _error(error: BaseException) -> dict[str, Any]:
    if isinstance(error, BackendError):
        return {"message": str(error), "retryable": error.retryable, "status": error.status}
    return {"message": f"{type(error).__name__}: {error}", "retryable": False, "status": None}


def _read_calls(source: IO[bytes], calls: queue.Queue[dict[str, Any] | None], cancels: dict[str, Any]) -> None:
    """Reader thread: queue calls, set cancellation events at once; ``None`` when the parent is gone."""
    for line in source:
        message = json.loads(line)
        if "cancel" in message:
            event = cancels.get(str(message["cancel"]))  # None: the call already ended
            if event is not None:
                event.set()
        else:
            cancels.setdefault(str(message["id"]), threading.Event())
            calls.put(message)
    # The parent is gone (stdin closed: it exited or was killed): nobody will read the answers, so the call
    # being generated stops at its next token and the queued ones are not started.
    for event in list(cancels.values()):
        event.set()
    calls.put(None)


def serve(source: IO[bytes], channel: _Channel) -> None:
    """Load the model named by the first line, then answer calls until ``source`` closes."""
    setup = json.loads(source.readline() or b"{}")
    model = str(setup.get("model", "model"))
    try:
        settings = LlamaCppSettings.model_validate(setup["settings"])
        llm = load_llama(Path(setup["path"]), settings, int(setup["context_window"]))
    except BaseException as error:
        channel.send({"error": _error(error)})
        return
    channel.send({"ready": os.getpid()})
    calls: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancels: dict[str, threading.Event] = {}
    threading.Thread(target=_read_calls, args=(source, calls, cancels), daemon=True).start()
    while (call := calls.get()) is not None:
        call_id = str(call["id"])
        cancelled = cancels[call_id]
        try:
            if cancelled.is_set():  # given up while waiting for the model
                raise BackendError(f"{model}: call cancelled", retryable=False)

            def emit(message: dict[str, Any], call_id: str = call_id) -> None:
                channel.send({"id": call_id, **message})

            done = execute(llm, model, str(call["op"]), call, cancelled, emit)
            channel.send({"id": call_id, "done": done})
        except Exception as error:
            channel.send({"id": call_id, "error": _error(error)})
        finally:
            cancels.pop(call_id, None)


def main() -> None:
    """Entry point: protocol on a private copy of stdout, fd 1 redirected to stderr."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, _Channel(out))
    # Skip interpreter teardown: llama.cpp's destructors add nothing once the parent has gone.
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
