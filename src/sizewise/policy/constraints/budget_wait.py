"""Waiting for the budget: a request that fits only once reservations in flight settle waits for them.

The budget filter refuses such a request with :class:`BudgetBusy`, a 429 that carries ``wait()``: the
engine awaits it and, when it returns True, runs the filter chain again (a fresh, atomic reservation
attempt). ``wait()`` never blocks the event loop: it sleeps until a reservation of this process settles
(:class:`SettleSignal`) or a short poll interval passes (reservations of other gateways sharing the
database are only seen by polling), then peeks at the ledger without its write lock. It returns True
as soon as the request may fit (or nothing is in flight any more: the next attempt then answers for
good) and False when its deadline passes, so the 429 stands. An engine that knows nothing of ``wait``
simply returns the 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable

from sizewise.policy.types import RequestRejected

#: First and longest pause between two peeks at the ledger (seconds); each pause grows by half.
POLL_FIRST_S = 0.02
POLL_MAX_S = 0.25


class BudgetBusy(RequestRejected):
    """429 for now: the request fits once reservations in flight settle. ``await wait()`` -> try again?"""

    def __init__(self, message: str, wait: Callable[[], Awaitable[bool]]) -> None:
        super().__init__(429, message, "budget_exceeded")
        self.wait = wait


class SettleSignal:
    """Wakes this process's waiters (on any event loop) when a reservation settles or shrinks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        """Wake every waiter; safe from any thread."""
        with self._lock:
            waiters, self._waiters = self._waiters, set()
        for future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop already closed: nobody waits there
                future.get_loop().call_soon_threadsafe(_wake, future)

    async def wait(self, timeout_s: float) -> None:
        """Return after the next :meth:`notify` or after ``timeout_s``, whichever comes first."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters.add(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout_s)
        finally:
            with self._lock:
                self._waiters.discard(future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_for_room(
    signal: SettleSignal, may_fit: Callable[[], bool], deadline: float, *, poll_first_s: float = POLL_FIRST_S
) -> bool:
    """Sleep (notified or polling with a growing, jittered pause) until ``may_fit()`` (run in a worker
    thread: it reads the database) is True, or until ``deadline`` (``time.monotonic()``): False."""
    pause = poll_first_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        # Jitter: waiters of several gateways that woke together should not peek in lockstep.
        await signal.wait(min(left, pause * random.uniform(0.5, 1.0)))
        if time.monotonic() >= deadline:
            return False
        if await asyncio.to_thread(may_fit):
            return True
        pause = min(pause * 1.5, POLL_MAX_S)
