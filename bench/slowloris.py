"""Slowloris against ``sizewise serve``: how long trickling connections are held, and what others see meanwhile.

Starts the real CLI (``gateway.header_timeout_s`` and ``body_timeout_s`` set short, so the run takes seconds) with a
fake upstream on 127.0.0.1, opens ``--connections`` sockets (half trickle their headers, half send headers and then
trickle the body, one byte every 0.5 s each), times ordinary chat requests while they trickle, and reports when
the gateway closed the last one, what each got back, and the server's open file descriptors before, at the peak
and after.

Usage: ``.venv/bin/python bench/slowloris.py [--connections 400] [--header-timeout 2] [--body-timeout 3]``
(``--header-timeout 1000 --body-timeout 1000 --watch 10`` shows what happens without the deadlines.)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_upstream import FakeUpstream, free_port

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"


def _start(folder: Path, upstream: str, header_s: float, body_s: float) -> tuple[subprocess.Popen[str], int]:
    catalog = folder / "sizewise.yaml"
    catalog.write_text(
        "models:\n  - {name: fast, context_window: 4096, params_b: 1, price_in: 1, price_out: 2, location: remote,\n"
        f"     backend: openai, settings: {{base_url: '{upstream}', model: ok}}}}\n"
        f"gateway: {{log_url: none, access_log: false, header_timeout_s: {header_s}, body_timeout_s: {body_s}}}\n"
    )
    port = free_port()
    command = [sys.executable, "-m", "sizewise.cli.main", "serve", "-c", str(catalog), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=folder)
    assert process.stdout is not None
    while "sizewise gateway on" not in (line := process.stdout.readline()):
        if not line:
            raise SystemExit("sizewise serve exited before it listened")
    return process, port


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _attack(port: int, count: int, pid: int, give_up_s: float) -> dict[str, object]:
    """Open ``count`` trickling sockets; time normal requests meanwhile; wait for the gateway to close them all."""
    socks: dict[socket.socket, bytes] = {}
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        if i % 2:  # headers complete, then a body that never ends
            sock.sendall(HEAD + b"content-length: 100000\r\n\r\n")
            socks[sock] = b"{" * 10_000
        else:  # headers a byte at a time
            socks[sock] = HEAD + b"x" * 10_000
    started, sent, answers, latencies, peak = time.monotonic(), 0, collections.Counter[str](), [], 0
    chat = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=30) as client:
        while socks and time.monotonic() - started < give_up_s:
            readable = select.select(list(socks), [], [], 0.5)[0]
            for sock in readable:  # the gateway answered or closed: what did it send?
                try:
                    data = sock.recv(64)
                except ConnectionResetError:
                    data = b""
                answers[data.split(b"\r\n")[0].decode("latin-1") or "closed without an answer"] += 1
                sock.close()
                del socks[sock]
            for sock, rest in socks.items():
                with contextlib.suppress(OSError):  # closed under us: seen on the next select
                    sock.sendall(rest[sent : sent + 1])
            sent += 1
            peak = max(peak, _fds(pid))
            if len(latencies) < 20:
                began = time.perf_counter()
                assert client.post("/chat/completions", json=chat).status_code == 200
                latencies.append((time.perf_counter() - began) * 1000)
    held = len(socks)
    for sock in socks:
        sock.close()
    return {
        "closed_after_s": time.monotonic() - started,
        "still_held": held,
        "answers": dict(answers),
        "chat_p50_ms": statistics.median(latencies),
        "peak_fds": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--header-timeout", type=float, default=2.0)
    parser.add_argument("--body-timeout", type=float, default=3.0)
    parser.add_argument("--watch", type=float, help="seconds to wait for the closes (default both timeouts + 5)")
    args = parser.parse_args()
    with FakeUpstream() as upstream, tempfile.TemporaryDirectory() as folder:
        process, port = _start(Path(folder), upstream.base_url, args.header_timeout, args.body_timeout)
        try:
            with httpx.Client(timeout=30) as client:
                idle = []
                for _ in range(20):
                    began = time.perf_counter()
                    client.post(
                        f"http://127.0.0.1:{port}/v1/chat/completions",
                        json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
                    )
                    idle.append((time.perf_counter() - began) * 1000)
            before = _fds(process.pid)
            result = _attack(
                port, args.connections, process.pid, args.watch or args.header_timeout + args.body_timeout + 5
            )
            time.sleep(0.5)
            after = _fds(process.pid)
        finally:
            process.terminate()
            process.wait(15)
    print(
        f"{args.connections} trickling connections (header_timeout_s {args.header_timeout:g}, "
        f"body_timeout_s {args.body_timeout:g}):"
    )
    if result["still_held"]:
        print(f"  after {result['closed_after_s']:.1f} s the gateway still held {result['still_held']} of them")
    else:
        print(f"  the gateway closed them all within {result['closed_after_s']:.1f} s")
    print(f"  what they got: {result['answers']}")
    print(f"  chat p50 while they trickled: {result['chat_p50_ms']:.1f} ms (idle: {statistics.median(idle):.1f} ms)")
    print(f"  server file descriptors: {before} before, {result['peak_fds']} at the peak, {after} after")


if __name__ == "__main__":
    main()
