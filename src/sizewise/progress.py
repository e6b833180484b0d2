"""One progress display for every long job: embedding, ``collect``, ``eval``'s fits, model loading and
warm-up, ``models install``, ``data fetch``.

On a terminal it is a tqdm bar that appears once a job has run ``delay`` seconds (short jobs stay silent).
Anywhere else (a pipe, a log file, CI) redrawn bars are noise, so there is no bar: a job that ran at least
``delay`` seconds prints one final line, ``embedding: 650/650 texts in 73.2s (8.9 texts/s)``.
``$SIZEWISE_PROGRESS_DELAY`` sets ``delay`` for every job (seconds; 0 shows even the short ones).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

DELAY_S = 2.0  # a job shorter than this shows nothing
_SILENCED = [0]  # depth of silenced() blocks: a command's --no-progress reaches the jobs it runs (embedding, ...)


@contextmanager
def silenced() -> Iterator[None]:
    """No progress from any job started inside the block (``eval --no-progress`` embeds too)."""
    _SILENCED[0] += 1
    try:
        yield
    finally:
        _SILENCED[0] -= 1


class Progress:
    """``with Progress(total, "embedding", "texts") as bar: bar.update(n)``; ``enabled=False`` shows nothing."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        enabled: bool = True,
        delay: float | None = None,
        stream: TextIO | None = None,
        scale: bool = False,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.delay = delay if delay is not None else default_delay()
        self.count = 0
        self.start = time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and not _SILENCED[0]
        self.scale = scale  # bytes and the like: 33.2MB rather than 33190000
        self._bar: Any = None
        self._closed = False
        if self.enabled and _is_tty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=unit, file=self.stream, delay=delay, dynamic_ncols=True,
                unit_scale=scale, unit_divisor=1024 if scale else 1000,
            )  # fmt: skip

    def update(self, n: int = 1, note: str | None = None) -> None:
        """Count ``n`` more done; ``note`` (the item at hand) shows beside the bar on a terminal."""
        self.count += n
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note[:30], refresh=False)
            self._bar.update(n)

    def note(self, text: str) -> None:
        """Say what is being worked on now (beside the bar on a terminal; nothing elsewhere)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text[:30])

    def close(self) -> None:
        """Finish: close the bar, or print the final line when the job was long enough to deserve one."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        elapsed = time.monotonic() - self.start
        if self.enabled and elapsed >= self.delay:
            self.stream.write(self.summary(elapsed) + "\n")
            self.stream.flush()

    def summary(self, elapsed: float) -> str:
        """``desc: count/total unit in 12.3s (4.5 unit/s)``."""
        unit = self.unit if self.scale else f" {self.unit}"  # 33.2MB, but 650 texts
        done = _amount(self.count, self.scale) + (unit if self.scale else "")
        total = f"/{_amount(self.total, self.scale)}" if self.total is not None else ""
        rate = _amount(self.count / elapsed if elapsed > 0 else 0.0, self.scale)
        return f"{self.desc}: {done}{total}{unit} in {elapsed:.1f}s ({rate}{unit}/s)"

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def default_delay() -> float:
    """Seconds before a job shows progress: ``$SIZEWISE_PROGRESS_DELAY`` (0: every job, even a short one), else 2."""
    text = os.environ.get("SIZEWISE_PROGRESS_DELAY", "")
    try:
        value = float(text) if text else DELAY_S
    except ValueError:
        return DELAY_S
    return value if value >= 0 else DELAY_S


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False


def _amount(value: float, scale: bool) -> str:
    if not scale:
        return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
    for suffix in ("", "k", "M", "G"):
        if abs(value) < 1024 or suffix == "G":
            return f"{value:.1f}{suffix}" if suffix else f"{value:.0f}"
        value /= 1024
    return f"{value:.1f}G"
