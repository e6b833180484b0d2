"""Ray (#21): what a client that does not read costs in memory, with the ``serve --ray`` front.

A replica streams ``--mb`` MB (64 KiB parts, as fast as it can) to a client that reads nothing for
``--hold`` seconds, then reads it all. Printed: the peak RSS growth of each process that holds the backlog.
``--ray``: a local Ray cluster (2 CPUs) with Serve's proxy, the real ``FrontIngress`` and a streaming
deployment that runs the app through ``run_asgi``, as a gateway replica does. Without: the ``Front`` in
uvicorn in this process, its "replica" an async generator over ``run_asgi``.

    python bench/slow_reader.py [--ray] [--mb 200] [--hold 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

PART = 65536


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def _pid_of(title: str) -> int:
    """The process whose command line names ``title`` (Ray titles its workers by actor)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline") as cmdline:
                    if title in cmdline.read():
                        return int(entry)
            except OSError:
                pass
    raise RuntimeError(f"no process named {title}")


def _app(total_mb: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(total_mb * 2**20 // PART):
            await send({"type": "http.response.body", "body": os.urandom(PART), "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _measure(port: int, pids: dict[str, int], total_mb: int, hold_s: float) -> None:
    base = {name: _rss_mb(pid) for name, pid in pids.items()}
    peak = dict(base)
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        started = time.monotonic()
        while time.monotonic() - started < hold_s:
            peak = {name: max(peak[name], _rss_mb(pid)) for name, pid in pids.items()}
            time.sleep(0.1)
        got, reading = 0, time.monotonic()
        while chunk := raw.recv(1 << 20):
            got += len(chunk)
    for name in pids:
        print(f"{name}: RSS {base[name]:.0f} MB, peak {peak[name]:.0f} MB (+{peak[name] - base[name]:.0f})")
    print(f"the client read nothing for {hold_s:g} s of a {total_mb} MB stream, then {got / 2**20:.0f} MB "
          f"in {time.monotonic() - reading:.1f} s")  # fmt: skip


def _one_process(total_mb: int, hold_s: float) -> None:
    import uvicorn

    from sizewise.distributed.forward import Forwarded, Front, Message, run_asgi

    async def call(request: Forwarded) -> AsyncIterator[list[Message]]:
        async for message in run_asgi(_app(total_mb), request):
            yield [message]

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(Front(call, 1 << 20), host="127.0.0.1", port=port, log_level="critical"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    _measure(port, {"front and replica (one process)": os.getpid()}, total_mb, hold_s)


def _on_ray(total_mb: int, hold_s: float) -> None:
    import ray
    from ray import serve

    from sizewise.distributed.deployments import FrontIngress
    from sizewise.distributed.forward import Forwarded, Message, batched, run_asgi

    class Streamer:
        async def handle(self, request: Forwarded) -> AsyncIterator[list[Message]]:
            async for batch in batched(run_asgi(_app(total_mb), request)):
                yield batch

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    streamer = serve.deployment(name="gateway", ray_actor_options={"num_cpus": 0.1})(Streamer)
    front = serve.deployment(name="front", ray_actor_options={"num_cpus": 0.1})(FrontIngress)
    serve.run(front.bind(streamer.bind(), 1 << 20, 30.0), name="slow", route_prefix="/")
    titles = {"Serve's proxy": "ProxyActor", "front": "ServeReplica:slow:front", "replica": "ServeReplica:slow:gateway"}
    try:
        _measure(port, {name: _pid_of(title) for name, title in titles.items()}, total_mb, hold_s)
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray", action="store_true", help="on a local Ray cluster (Serve's proxy, the front)")
    parser.add_argument("--mb", type=int, default=200, help="size of the streamed answer")
    parser.add_argument("--hold", type=float, default=8.0, help="seconds the client reads nothing")
    args = parser.parse_args()
    (_on_ray if args.ray else _one_process)(args.mb, args.hold)


if __name__ == "__main__":
    main()
