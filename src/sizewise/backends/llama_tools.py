"""Tool calls and structured output on local GGUF models: what a request asks for, and reading the answer.

* ``response_format`` (``json_object``, ``json_schema``), a named ``tool_choice`` and ``tool_choice: "required"``
  constrain generation with a llama.cpp grammar built from the JSON schema (:func:`grammar`). llama-cpp-python
  0.3.36 builds one itself only for its own ``{"type": "json_object", "schema": ...}`` spelling and for a named
  tool (not OpenAI's ``json_schema`` type, nor ``required``), and turns a named call into a legacy
  ``function_call`` as well; one path here serves all four.
* With ``tools`` and ``tool_choice`` ``auto`` (or absent) the model answers freely and the answer is read
  afterwards (:func:`parse_answer`): Qwen2.5's chat template renders ``tools`` and asks for
  ``<tool_call>{"name", "arguments"}</tool_call>``; small models also answer the same object bare or in a
  fenced JSON block. A template that does not render ``tools`` (SmolLM2) gets them in a system message of
  the same form (:func:`prompt_messages`).

The functions of the grammar side import llama_cpp lazily (they run where the model runs); the reading side
is plain Python (the parent process uses it).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from sizewise.core.chat import BackendError, ChatRequest

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True)
class ToolMode:
    """What a request asks of a local model beyond text."""

    #: ``none``: plain text; ``auto``: tools offered, the answer may call them; ``named``: the answer is the
    #: arguments of ``name``; ``required``: the answer is ``{"name", "arguments"}`` of one of the tools.
    kind: str
    name: str | None = None
    #: The JSON schema the answer must follow (``{}`` for any JSON object), or None for no grammar.
    schema: dict[str, Any] | None = None


def _bad(message: str) -> BackendError:
    return BackendError(message, retryable=False, status=400)


def _tools(request: ChatRequest) -> list[dict[str, Any]]:
    tools = request.extra.get("tools") or []
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("function"), dict) for t in tools
    ):
        raise _bad("tools must be a list of {type: function, function: {name, parameters}}")
    return tools


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    parameters = tool["function"].get("parameters")
    return parameters if isinstance(parameters, dict) and parameters else {"type": "object"}


def tool_mode(request: ChatRequest) -> ToolMode:
    """What ``request`` asks for (its tools, tool_choice and response_format); a 400 for what cannot be done."""
    tools, choice = _tools(request), request.extra.get("tool_choice")
    if tools and choice != "none":
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            tool = next((t for t in tools if t["function"].get("name") == name), None)
            if tool is None:
                raise _bad(f"tool_choice names {name!r}, which is not in tools")
            return ToolMode("named", name, _parameters(tool))
        if choice == "required":
            options = [
                {
                    "type": "object",
                    "properties": {"name": {"const": t["function"]["name"]}, "arguments": _parameters(t)},
                    "required": ["name", "arguments"],
                }
                for t in tools
            ]
            return ToolMode("required", schema=options[0] if len(options) == 1 else {"anyOf": options})
        return ToolMode("auto")
    form = request.extra.get("response_format") or {}
    kind = form.get("type") if isinstance(form, dict) else None
    if kind == "json_object":
        return ToolMode("none", schema={})
    if kind == "json_schema":
        schema = (form.get("json_schema") or {}).get("schema", {})  # OpenAI's schema is optional: any object
        if not isinstance(schema, dict):
            raise _bad("response_format json_schema.schema must be a JSON schema object")
        return ToolMode("none", schema=schema)
    if kind not in (None, "text"):
        raise _bad(f"response_format type {kind!r} is not one of text, json_object, json_schema")
    return ToolMode("none")


def grammar(mode: ToolMode, verbose: bool = False) -> Any:
    """The ``llama_cpp.LlamaGrammar`` of ``mode.schema`` (None when free text); a 400 for a schema it cannot take."""
    if mode.schema is None:
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if not mode.schema:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=verbose)
    try:
        return LlamaGrammar.from_json_schema(json.dumps(mode.schema), verbose=verbose)
    except Exception as error:  # the converter raises bare exceptions for schema features it lacks
        raise _bad(f"cannot turn the JSON schema into a grammar: {type(error).__name__}: {error}") from None


def _describe(tools: list[dict[str, Any]]) -> str:
    listed = "\n".join(json.dumps(tool["function"]) for tool in tools)
    return (
        "You may call one or more functions. Their signatures:\n"
        f"<tools>\n{listed}\n</tools>\n"
        "To call one, answer with a JSON object inside tags, one per call:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def prompt_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]], template: str) -> list[dict[str, Any]]:
    """The messages for a chat template: as sent when it renders ``tools`` itself; otherwise the tools
    described in a system message and earlier calls written as ``<tool_call>`` text (such templates drop
    ``tool_calls``)."""
    if "tools" in template:  # HF templates write arguments with tojson: an object, not OpenAI's string
        return [_with_argument_objects(message) for message in messages]
    if not tools:
        return messages
    plain = []
    for message in messages:
        calls = message.get("tool_calls") or []
        if message.get("role") == "assistant" and calls:
            written = [
                json.dumps({"name": c["function"]["name"], "arguments": _loads(c["function"].get("arguments"))})
                for c in calls
            ]
            text = "\n".join([message.get("content") or "", *(f"<tool_call>\n{w}\n</tool_call>" for w in written)])
            message = {"role": "assistant", "content": text.strip()}
        plain.append(message)
    if plain and plain[0].get("role") == "system":
        return [{"role": "system", "content": f"{plain[0].get('content') or ''}\n\n{_describe(tools)}"}, *plain[1:]]
    return [{"role": "system", "content": _describe(tools)}, *plain]


def _with_argument_objects(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls:
        return message
    parsed = [{**c, "function": {**c["function"], "arguments": _loads(c["function"].get("arguments"))}} for c in calls]
    return {**message, "tool_calls": parsed}


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def _call(name: str, arguments: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": f"call_{os.urandom(12).hex()}", "type": "function", "function": {"name": name, "arguments": text}}


def _as_call(text: str, names: set[str]) -> dict[str, Any] | None:
    fenced = _FENCED.match(text.strip())
    value = _loads(fenced.group(1) if fenced else text.strip())
    if isinstance(value, dict) and value.get("name") in names:
        arguments = value.get("arguments", value.get("parameters", {}))
        return _call(str(value["name"]), arguments)
    return None


def parse_answer(mode: ToolMode, request: ChatRequest, text: str) -> tuple[str, list[dict[str, Any]] | None]:
    """A local answer read as (content, tool calls): the calls found in it and the text outside them."""
    if mode.kind == "named":
        assert mode.name is not None
        return "", [_call(mode.name, text.strip())]
    if mode.kind not in ("required", "auto"):
        return text, None
    names = {str(t["function"].get("name")) for t in _tools(request)}
    calls = [call for block in _TAGGED.findall(text) if (call := _as_call(block, names))]
    if request.extra.get("parallel_tool_calls") is False:
        calls = calls[:1]
    if calls:
        return _TAGGED.sub("", text).strip(), calls
    whole = _as_call(text, names)
    return ("", [whole]) if whole else (text, None)
