"""An OpenAI-compatible upstream on 127.0.0.1 that answers "ok" at once and records every request body.

One server plays every remote model of a test catalog (each entry's ``settings.model`` says which), so a
test checks what really reached which model, with which fields (tools, reasoning_effort, ...).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import uvicorn

from fakes import free_port, read_body, send_answer


class RecordingUpstream:
    """``with RecordingUpstream() as up: up.base_url``; ``up.bodies`` holds the JSON bodies received."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical", interface="asgi3")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def models(self) -> list[str]:
        """The upstream model of each request received, in order."""
        return [str(body.get("model")) for body in self.bodies]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive) or b"{}")
        self.bodies.append(body)
        usage = {"prompt_tokens": len(json.dumps(body.get("messages", []))) // 4, "completion_tokens": 1}
        await send_answer(send, str(body.get("model")), "ok", usage, stream=bool(body.get("stream")))

    def __enter__(self) -> RecordingUpstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("recording upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
