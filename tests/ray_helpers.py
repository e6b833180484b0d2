"""``sizewise serve --ray`` as a user runs it, in a subprocess on its own local Ray cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BANNER = "sizewise gateway on Ray Serve"


@contextmanager
def serving_on_ray(port: int, args: list[str], out: Path, wait_s: float = 180) -> Iterator[subprocess.Popen[bytes]]:
    """``sizewise serve --ray --port PORT *args``, printing to ``out``, once its banner says it is deployed;
    Ctrl-C at exit (Serve shuts down, and the driver's local cluster with it)."""
    command = [sys.executable, "-m", "sizewise.cli.main", "serve", "--ray", "--port", str(port), *args]
    with out.open("w") as sink:
        server = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        )
    try:
        deadline = time.monotonic() + wait_s
        while BANNER not in out.read_text():
            assert server.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.5)
        yield server
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
