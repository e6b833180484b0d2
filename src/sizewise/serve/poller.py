"""A daemon thread that calls one function every few seconds: how a replica follows the shared database."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Poller:
    """Calls ``poll`` every ``poll_s`` seconds in a daemon thread named ``name``, from :meth:`start` to
    :meth:`stop`. ``poll`` handles its own errors: one that escapes ends the thread."""

    def __init__(self, name: str, poll: Callable[[], None], poll_s: float) -> None:
        self.name = name
        self.poll = poll
        self.poll_s = poll_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def start(self) -> None:
        """Start polling (the first call comes after ``poll_s``)."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            self.poll()

    def stop(self) -> None:
        """Stop, waiting for a poll under way (at most ``poll_s`` + 5 s)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.poll_s + 5)
