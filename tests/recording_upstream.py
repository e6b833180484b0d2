"""An OpenAI-compatible upstream on 127.0.0.1 that answers "ok" at once and records every request body.

One server plays every remote model of a test catalog (each entry's ``settings.model`` says which), so a
test checks what really reached which model, with which fields (tools, reasoning_effort, ...).
"""

from __future__ import annotations

import json
from typing import Any

from fakes import ThreadedServer, read_body, send_answer


class RecordingUpstream(ThreadedServer):
    """``with RecordingUpstream() as up: up.base_url``; ``up.bodies`` holds the JSON bodies received."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        super().__init__(self.app)

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
