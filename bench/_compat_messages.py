"""The Anthropic Messages rows of the compatibility table: each field of ``POST /v1/messages`` as Claude Code
sends it, translated to an OpenAI-compatible upstream (the recording one) and back.

A row is judged on the OpenAI body the upstream received (``sent``: None when the field arrived as OpenAI
spells it, else a few words) and on the Anthropic answer the client got (``answer``), JSON or events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from _loadgen import MASTER_KEY

READ = {
    "name": "Read",
    "description": "Read a file.",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
}
BASH = {
    "name": "Bash",
    "description": "Run a command.",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
HISTORY = [
    {"role": "user", "content": "Read setup.py"},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "setup.py"}}],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "print('hi')"}]},
]

Check = Callable[[dict[str, Any]], str | None]


def _message(body: dict[str, Any], role: str) -> dict[str, Any]:
    return next((m for m in body.get("messages", []) if m.get("role") == role), {})


def sent_key(key: str, value: Any) -> Check:
    """The upstream body has ``key`` equal to ``value``."""

    def check(body: dict[str, Any]) -> str | None:
        if key not in body:
            return f"missing {key}"
        return None if body[key] == value else f"{key} = {json.dumps(body[key])[:40]}"

    return check


def sent_max_tokens(body: dict[str, Any]) -> str | None:
    """Anthropic's max_tokens as either OpenAI spelling."""
    values = {body.get("max_tokens"), body.get("max_completion_tokens")}
    return None if 77 in values else "missing max_tokens"


def sent_system(body: dict[str, Any]) -> str | None:
    return None if "You are Claude Code" in json.dumps(_message(body, "system")) else "missing system message"


def sent_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools") or []
    if not tools:
        return "missing tools"
    first = tools[0].get("function", {})
    ok = first.get("name") == "Read" and first.get("parameters") == READ["input_schema"]
    return None if ok else f"tools[0] = {json.dumps(tools[0])[:40]}"


def sent_history(body: dict[str, Any]) -> str | None:
    calls = _message(body, "assistant").get("tool_calls") or [{}]
    tool = _message(body, "tool")
    if calls[0].get("id") != "toolu_1" or json.loads(calls[0].get("function", {}).get("arguments") or "{}") != {
        "file_path": "setup.py"
    }:
        return "missing assistant tool_calls"
    return None if tool.get("tool_call_id") == "toolu_1" and "print" in json.dumps(tool) else "missing tool message"


def sent_image(body: dict[str, Any]) -> str | None:
    parts = _message(body, "user").get("content")
    urls = (
        [p.get("image_url", {}).get("url", "") for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []
    )
    return None if any(url.startswith("data:image/png;base64,") for url in urls) else "missing image_url part"


def tool_use(name: str | None = None) -> Check:
    def check(answer: dict[str, Any]) -> str | None:
        uses = [b for b in answer.get("content", []) if b.get("type") == "tool_use"]
        if not uses or not isinstance(uses[0].get("input"), dict):
            return "no tool_use block"
        if name and uses[0].get("name") != name:
            return f"used {uses[0].get('name')}, not {name}"
        return None if answer.get("stop_reason") == "tool_use" else f"stop_reason {answer.get('stop_reason')}"

    return check


def text(answer: dict[str, Any]) -> str | None:
    return None if any(b.get("type") == "text" and b.get("text") for b in answer.get("content", [])) else "no text"


@dataclass(frozen=True)
class MessagesCase:
    name: str
    patch: dict[str, Any]
    sent: Check
    answer: Check = text


TOOL = {"tools": [READ, BASH]}
USER = [{"role": "user", "content": "Read setup.py"}]
MESSAGES_CASES = [
    MessagesCase("system (text blocks with cache_control)", {}, sent_system),
    MessagesCase("max_tokens", {"max_tokens": 77}, sent_max_tokens),
    MessagesCase("tools", TOOL, sent_tools, tool_use()),
    MessagesCase("tools (stream)", {**TOOL, "stream": True}, sent_tools, tool_use()),
    MessagesCase(
        "tool_choice: any", {**TOOL, "tool_choice": {"type": "any"}}, sent_key("tool_choice", "required"), tool_use()
    ),
    MessagesCase(
        "tool_choice: tool",
        {**TOOL, "tool_choice": {"type": "tool", "name": "Bash"}},
        sent_key("tool_choice", {"type": "function", "function": {"name": "Bash"}}),
        tool_use("Bash"),
    ),
    MessagesCase("tool_choice: none", {**TOOL, "tool_choice": {"type": "none"}}, sent_key("tool_choice", "none")),
    MessagesCase("tool_use + tool_result history", {**TOOL, "messages": HISTORY}, sent_history, tool_use()),
    MessagesCase("stop_sequences", {"stop_sequences": ["END"]}, sent_key("stop", ["END"])),
    MessagesCase("temperature", {"temperature": 0.2}, sent_key("temperature", 0.2)),
    MessagesCase("top_p", {"top_p": 0.9}, sent_key("top_p", 0.9)),
    MessagesCase("metadata.user_id", {"metadata": {"user_id": "user_1"}}, sent_key("user", "user_1")),
    MessagesCase(
        "image block (base64)",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ]
        },
        sent_image,
    ),
    MessagesCase("stream (text)", {"stream": True}, lambda body: None),
    MessagesCase(
        "thinking (budget_tokens)",
        {"max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}},
        lambda body: None if body.get("reasoning_effort") else "missing reasoning_effort",
    ),
]


def merge_events(raw: str) -> dict[str, Any]:
    """An Anthropic event stream joined into the message a client builds from it."""
    message: dict[str, Any] = {"content": []}
    for line in raw.splitlines():
        if not line.startswith("data:"):
            continue
        event = json.loads(line[5:])
        kind = event.get("type")
        if kind == "message_start":
            message.update({k: v for k, v in event["message"].items() if k != "content"})
        elif kind == "content_block_start":
            message["content"].append({**event["content_block"], "_json": ""})
        elif kind == "content_block_delta":
            block, delta = message["content"][-1], event["delta"]
            block["text"] = block.get("text", "") + delta.get("text", "")
            block["_json"] += delta.get("partial_json", "")
        elif kind == "message_delta":
            message.update(event.get("delta", {}))
    for block in message["content"]:
        partial = block.pop("_json")
        if block.get("type") == "tool_use" and partial:
            block["input"] = json.loads(partial)
    return message


def messages_column(url: str, model: str, up: Any) -> dict[str, dict[str, str]]:
    """Send every Messages row to ``url`` (the server root) and judge it."""
    cells = {}
    headers = {"x-api-key": MASTER_KEY, "authorization": f"Bearer {MASTER_KEY}", "anthropic-version": "2023-06-01"}
    with httpx.Client(timeout=60, headers=headers) as client:
        for case in MESSAGES_CASES:
            body = {"model": model, "max_tokens": 64, "system": SYSTEM, "messages": USER, **case.patch}
            seen = len(up.bodies)
            response = client.post(f"{url}/v1/messages", json=body)
            if response.status_code >= 400:
                kind = "rejected" if response.status_code < 500 else "error"
                cells[case.name] = {"kind": kind, "note": f"{response.status_code}: {_error(response)[:90]}"}
                continue
            sent = up.bodies[-1] if len(up.bodies) > seen else None
            answer = merge_events(response.text) if body.get("stream") else response.json()
            wrong = "never reached the upstream" if sent is None else case.sent(sent)
            if wrong:
                cells[case.name] = {"kind": "dropped" if wrong.startswith("missing") else "changed", "note": wrong}
            elif missing := case.answer(answer):
                cells[case.name] = {"kind": "lost", "note": missing}
            else:
                cells[case.name] = {"kind": "passed", "note": ""}
    return cells


SYSTEM = [{"type": "text", "text": "You are Claude Code, a coding agent.", "cache_control": {"type": "ephemeral"}}]


def _error(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        return " ".join(str(error.get("message") if isinstance(error, dict) else error).split())
    except ValueError:
        return response.text
