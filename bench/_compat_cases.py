"""The compatibility table's rows: one OpenAI chat-completions request field each, and how to tell it worked.

A :class:`Case` is a patch on a plain request, plus the effect to look for in the answer (``answer``: None
when the effect came back, else a few words on what is missing). Upstream-bound requests are also judged on
the body the recording upstream received (the patch must arrive verbatim). ``local`` marks the rows that are
also sent to a local GGUF model (its value: max_tokens there, short, as 2 cores generate slowly), where the
same ``answer`` check says whether the field was honoured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone.",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
SCHEMA = {
    "name": "city",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    },
}
JSON_ASK = {"role": "user", "content": "What is the weather in Paris? Answer in JSON with one key, weather."}
HISTORY = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
]


def merge(answer: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """One shape for a JSON answer or a stream's chunks: choices (content, tool_calls, logprobs, finish_reason),
    usage, id, system_fingerprint; a stream's tool-call deltas are joined as a client would join them."""
    if isinstance(answer, dict):
        choices = [
            {**c.get("message", {}), "logprobs": c.get("logprobs"), "finish_reason": c.get("finish_reason")}
            for c in answer.get("choices", [])
        ]
        return {**answer, "choices": choices}
    merged: dict[str, Any] = {"choices": {}, "usage": None, "ids": set(), "fingerprints": set()}
    for chunk in answer:
        merged["ids"].add(chunk.get("id"))
        merged["fingerprints"].add(chunk.get("system_fingerprint"))
        merged["usage"] = chunk.get("usage") or merged["usage"]
        for choice in chunk.get("choices") or []:
            _merge_delta(merged["choices"].setdefault(choice.get("index", 0), {"content": None}), choice)
    ids, fingerprints = merged.pop("ids") - {None}, merged.pop("fingerprints") - {None}
    merged["id"] = ids.pop() if len(ids) == 1 else sorted(ids)
    merged["system_fingerprint"] = fingerprints.pop() if len(fingerprints) == 1 else None
    merged["choices"] = [merged["choices"][i] for i in sorted(merged["choices"])]
    merged["chunks"] = len(answer)
    return merged


def _merge_delta(target: dict[str, Any], choice: dict[str, Any]) -> None:
    delta = choice.get("delta") or {}
    if delta.get("content"):
        target["content"] = (target["content"] or "") + delta["content"]
    for call in delta.get("tool_calls") or []:
        slot = target.setdefault("tool_calls", {}).setdefault(call.get("index", 0), {"function": {"arguments": ""}})
        slot.update({k: v for k, v in call.items() if k in ("id", "type")})
        function = call.get("function") or {}
        slot["function"]["name"] = function.get("name") or slot["function"].get("name")
        slot["function"]["arguments"] += function.get("arguments") or ""
    if isinstance(target.get("tool_calls"), dict) and choice.get("finish_reason"):
        target["tool_calls"] = [target["tool_calls"][i] for i in sorted(target["tool_calls"])]
    if (choice.get("logprobs") or {}).get("content"):
        target.setdefault("logprobs", {"content": []})["content"] += choice["logprobs"]["content"]
    if choice.get("finish_reason"):
        target["finish_reason"] = choice["finish_reason"]


Check = Callable[[dict[str, Any]], str | None]


def _first(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["choices"][0] if answer.get("choices") else {}


def _calls(answer: dict[str, Any]) -> list[dict[str, Any]]:
    calls = _first(answer).get("tool_calls") or []
    return list(calls.values()) if isinstance(calls, dict) else calls


def has_tool_call(name: str | None = None, count: int | None = None) -> Check:
    """The first choice calls a tool (``name`` if given; exactly ``count`` calls if given) with JSON arguments."""

    def check(answer: dict[str, Any]) -> str | None:
        calls = _calls(answer)
        if not calls:
            return f"no tool_calls (content {str(_first(answer).get('content'))[:30]!r})"
        try:
            [json.loads(c["function"]["arguments"]) for c in calls]
        except (KeyError, TypeError, ValueError):
            return "tool_calls arguments are not JSON"
        if name and calls[0]["function"].get("name") != name:
            return f"called {calls[0]['function'].get('name')}, not {name}"
        if count is not None and len(calls) != count:
            return f"{len(calls)} tool calls, not {count}"
        return None

    return check


def json_content(required: tuple[str, ...] = ()) -> Check:
    """The first choice's content is a JSON object with the ``required`` keys."""

    def check(answer: dict[str, Any]) -> str | None:
        text = _first(answer).get("content") or ""
        try:
            value = json.loads(text)
        except ValueError:
            return f"content is not JSON: {text[:30]!r}"
        missing = [key for key in required if not isinstance(value, dict) or key not in value]
        return f"JSON lacks {missing}" if missing or not isinstance(value, dict) else None

    return check


def has_logprobs(top: int = 0) -> Check:
    def check(answer: dict[str, Any]) -> str | None:
        content = (_first(answer).get("logprobs") or {}).get("content") or []
        if not content:
            return "no logprobs"
        if top and len(content[0].get("top_logprobs") or []) != top:
            return f"{len(content[0].get('top_logprobs') or [])} top_logprobs, not {top}"
        return None

    return check


def choices(count: int) -> Check:
    def check(answer: dict[str, Any]) -> str | None:
        got = len(answer.get("choices") or [])
        return None if got == count else f"{got} choices"

    return check


def usage_reported(answer: dict[str, Any]) -> str | None:
    return None if (answer.get("usage") or {}).get("completion_tokens") else "no usage"


def at_most_tokens(limit: int) -> Check:
    def check(answer: dict[str, Any]) -> str | None:
        used = (answer.get("usage") or {}).get("completion_tokens")
        return None if used is not None and used <= limit else f"{used} completion tokens"

    return check


def no_text(stop: str) -> Check:
    def check(answer: dict[str, Any]) -> str | None:
        return f"{stop!r} in the answer" if stop in (_first(answer).get("content") or "") else None

    return check


def streamed(answer: dict[str, Any]) -> str | None:
    """The answer came as several events (a stream, not one buffered event: the upstream sends three)."""
    return None if answer.get("chunks", 0) >= 2 else f"{answer.get('chunks', 0)} events"


def upstream_ids(answer: dict[str, Any]) -> str | None:
    """The upstream's own ``id`` and ``system_fingerprint`` reach the client (remote rows only)."""
    lost = [
        k for k, prefix in (("id", "chatcmpl-rec-"), ("system_fingerprint", "fp_")) if not _starts(answer, k, prefix)
    ]
    return f"{', '.join(lost)} replaced" if lost else None


def _starts(answer: dict[str, Any], key: str, prefix: str) -> bool:
    value = answer.get(key)
    return isinstance(value, str) and value.startswith(prefix)


@dataclass(frozen=True)
class Case:
    """One row: ``patch`` goes on the base request; ``answer`` judges the reply (None: the effect is there)."""

    name: str
    patch: dict[str, Any]
    answer: Check | None = None
    #: Also sent to a local model, with this max_tokens (0: not sent to one).
    local: int = 0
    #: Upstream-bound: keys of the patch not expected verbatim upstream (stream is the gateway's own business).
    not_sent: tuple[str, ...] = ()

    @property
    def stream(self) -> bool:
        return bool(self.patch.get("stream"))


TOOLS = {"tools": [WEATHER, CLOCK]}
CASES = [
    Case("model (a catalog name) + upstream id, system_fingerprint", {}, upstream_ids),
    Case("messages: assistant tool_calls + tool results", {"messages": HISTORY}),
    Case("tools", TOOLS, has_tool_call()),
    Case("tools (stream)", {**TOOLS, "stream": True}, has_tool_call()),
    Case("tool_choice: required", {"tools": [WEATHER], "tool_choice": "required"}, has_tool_call(), local=40),
    Case(
        "tool_choice: required (stream)",
        {"tools": [WEATHER], "tool_choice": "required", "stream": True},
        has_tool_call(),
        local=40,
    ),
    Case(
        "tool_choice: a named function",
        {**TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        has_tool_call("get_time"),
        local=40,
    ),
    Case("tool_choice: none", {**TOOLS, "tool_choice": "none"}),
    Case("parallel_tool_calls: false", {**TOOLS, "parallel_tool_calls": False}, has_tool_call(count=1)),
    # OpenAI refuses json_object unless a message asks for JSON, so this request does.
    Case(
        "response_format: json_object",
        {"messages": [JSON_ASK], "response_format": {"type": "json_object"}},
        json_content(),
        local=64,
    ),
    Case(
        "response_format: json_schema",
        {"response_format": {"type": "json_schema", "json_schema": SCHEMA}},
        json_content(("city", "country")),
        local=40,
    ),
    Case(
        "response_format: json_schema (stream)",
        {"response_format": {"type": "json_schema", "json_schema": SCHEMA}, "stream": True},
        json_content(("city", "country")),
    ),
    Case("logprobs", {"logprobs": True}, has_logprobs(), local=8),
    Case("logprobs (stream)", {"logprobs": True, "stream": True}, has_logprobs(), local=8),
    Case("top_logprobs", {"logprobs": True, "top_logprobs": 2}, has_logprobs(2), local=8),
    Case("n: 2", {"n": 2}, choices(2), local=8),
    Case("max_tokens", {"max_tokens": 3}, at_most_tokens(3), local=8),
    Case("max_completion_tokens", {"max_completion_tokens": 3}, at_most_tokens(3), local=8),
    Case("temperature", {"temperature": 0.3}, local=8),
    Case("top_p", {"top_p": 0.9}, local=8),
    Case("stop", {"stop": ["Paris"]}, no_text("Paris"), local=8),
    Case("seed", {"seed": 7}, local=8),
    Case("frequency_penalty", {"frequency_penalty": 0.5}, local=8),
    Case("presence_penalty", {"presence_penalty": 0.5}, local=8),
    Case("logit_bias", {"logit_bias": {"1234": -100}}, local=8),
    Case("stream", {"stream": True}, streamed, local=8),
    Case(
        "stream_options: include_usage",
        {"stream": True, "stream_options": {"include_usage": True}},
        usage_reported,
        local=8,
    ),
    Case("user", {"user": "user-42"}),
    Case("metadata", {"metadata": {"session": "s-1"}, "store": True}),
    Case("store", {"store": False}),
    Case("reasoning_effort", {"reasoning_effort": "low"}),
    Case("service_tier", {"service_tier": "default"}),
    Case("modalities: [text]", {"modalities": ["text"]}),
    Case("audio (with modalities)", {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}),
    Case("prediction", {"prediction": {"type": "content", "content": "It is sunny."}}),
    Case("web_search_options", {"web_search_options": {"search_context_size": "low"}}),
    Case("verbosity", {"verbosity": "low"}),
    Case("prompt_cache_key", {"prompt_cache_key": "agent-7"}),
    Case("safety_identifier", {"safety_identifier": "hash-42"}),
    Case("functions + function_call (deprecated)", {"functions": [WEATHER["function"]], "function_call": "auto"}),
]
