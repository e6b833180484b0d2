"""A recording OpenAI-compatible upstream on 127.0.0.1 that answers every chat field the way OpenAI does.

It keeps each request body verbatim (:attr:`RecordingUpstream.bodies`) and answers in kind, so a gateway
in front of it shows both what it sent and what it brought back: ``tools`` get a ``tool_calls`` answer
(one call per tool, or one with ``parallel_tool_calls: false`` or a named ``tool_choice``), ``response_format``
a JSON document (one that fits a ``json_schema``), ``logprobs`` / ``top_logprobs`` a logprobs object,
``n`` that many choices, ``stream_options.include_usage`` a final usage chunk with no choices; every answer
has its own ``id`` (``chatcmpl-rec-N``) and ``system_fingerprint``. Streams split tool-call arguments over
two chunks, as OpenAI does.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fake_upstream import ThreadedServer, read_body

FINGERPRINT = "fp_recording"


def sample(schema: dict[str, Any]) -> Any:
    """A small value that fits a JSON schema (objects with their required properties, first enum value)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties", {})
        return {key: sample(props.get(key, {})) for key in schema.get("required", list(props))}
    if kind == "array":
        return [sample(schema.get("items", {}))]
    return {"string": "ok", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "ok")


def tool_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls an OpenAI model would make for ``body``'s tools and tool_choice (none without tools)."""
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return []
    if isinstance(choice, dict):
        tools = [t for t in tools if t["function"]["name"] == choice.get("function", {}).get("name")] or tools[:1]
    if body.get("parallel_tool_calls") is False or isinstance(choice, dict):
        tools = tools[:1]
    calls = []
    for index, tool in enumerate(tools[:2]):
        args = sample(tool["function"].get("parameters") or {"type": "object"})
        function = {"name": tool["function"]["name"], "arguments": json.dumps(args)}
        calls.append({"id": f"call_rec_{index}", "type": "function", "function": function})
    return calls


def content(body: dict[str, Any]) -> str:
    """The answer text: JSON for a response_format, else ``ok``."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(sample(fmt.get("json_schema", {}).get("schema") or {"type": "object"}))
    if fmt.get("type") == "json_object":
        return json.dumps({"answer": "ok"})
    return "ok"


def logprobs(body: dict[str, Any], text: str) -> dict[str, Any] | None:
    """OpenAI's choice logprobs object for ``text`` (one token) when the request asked for it."""
    if not body.get("logprobs"):
        return None
    top = [{"token": text, "logprob": -0.01, "bytes": list(text.encode())}] * int(body.get("top_logprobs") or 0)
    return {"content": [{"token": text, "logprob": -0.01, "bytes": list(text.encode()), "top_logprobs": top}]}


def usage(body: dict[str, Any]) -> dict[str, Any]:
    prompt = len(json.dumps(body.get("messages", []))) // 4
    # Never more than the request allows, as a real upstream.
    written = min(5, body.get("max_completion_tokens") or body.get("max_tokens") or 5)
    details = {"reasoning_tokens": 3 if body.get("reasoning_effort") else 0}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": written,
        "total_tokens": prompt + written,
        "completion_tokens_details": details,
    }


def completion(body: dict[str, Any], answer_id: str) -> dict[str, Any]:
    """The whole non-streamed answer."""
    calls, text = tool_calls(body), content(body)
    choices = []
    for index in range(int(body.get("n") or 1)):
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        finish = "tool_calls" if calls else "stop"
        choices.append({"index": index, "message": message, "logprobs": logprobs(body, text), "finish_reason": finish})
    return {
        "id": answer_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": usage(body),
    }


def chunks(body: dict[str, Any], answer_id: str) -> list[dict[str, Any]]:
    """The streamed answer's chunks, in order (without ``[DONE]``)."""
    base = {
        "id": answer_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model"),
        "system_fingerprint": FINGERPRINT,
    }
    calls, text = tool_calls(body), content(body)
    events: list[dict[str, Any]] = []
    for index in range(int(body.get("n") or 1)):

        def event(delta: dict[str, Any], finish: str | None = None, lp: Any = None, i: int = index) -> None:
            events.append({**base, "choices": [{"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}]})

        event({"role": "assistant", "content": None if calls else ""})
        for position, call in enumerate(calls):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            head = {**call, "function": {"name": call["function"]["name"], "arguments": arguments[:half]}}
            event({"tool_calls": [{"index": position, **head}]})
            event({"tool_calls": [{"index": position, "function": {"arguments": arguments[half:]}}]})
        if not calls:
            event({"content": text}, lp=logprobs(body, text))
        event({}, "tool_calls" if calls else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "choices": [], "usage": usage(body)})
    return events


class RecordingUpstream(ThreadedServer):
    """``with RecordingUpstream() as up: up.base_url``; ``up.bodies`` holds every chat request body received."""

    start_timeout_s = 20.0
    stop_timeout_s = 10.0

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        if scope["path"].endswith("/models"):
            await _send_json(send, {"object": "list", "data": [{"id": "rec", "object": "model"}]})
            return
        body = json.loads(raw or b"{}")
        self.bodies.append(body)
        answer_id = f"chatcmpl-rec-{len(self.bodies)}"
        if not body.get("stream"):
            await _send_json(send, completion(body, answer_id))
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks(body, answer_id):
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _send_json(send: Any, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})
