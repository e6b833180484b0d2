"""Placements of personal data in a chat request, for the privacy tests and the reliability benchmark.

Each :class:`Case` builds a request body (without ``model``) from a value: :attr:`Case.body` holds
the personal value, :attr:`Case.twin` the same placement with a harmless value (None where the
placement itself is the point: an image, an audio clip, a file the filter cannot read). Under
``gateway.privacy: local-only`` no body may reach a remote model; every twin may.

``readable`` is False for the cases that are personal only because the filter cannot read them
(they may go remote when ``gateway.privacy_opaque`` is ``allow``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EMAIL = "jane.doe@example.org"
PHONE = "+44 20 7946 0958"
IBAN = "DE89 3704 0044 0532 0130 00"
CARD = "4111 1111 1111 1111"
SSN = "123-45-6789"
CLEAN = "the blue notebook"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _b64(text: str, alphabet: str = "standard") -> str:
    raw = text.encode()
    return (base64.urlsafe_b64encode(raw) if alphabet == "url" else base64.b64encode(raw)).decode()


def _user(content: Any, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content, **extra}]}


def _ask(**top: Any) -> dict[str, Any]:
    """A harmless question with ``top`` as top-level (pass-through) fields."""
    return {"messages": [{"role": "user", "content": "What is the capital of France?"}], **top}


def _turns(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"messages": list(messages)}


def _tool(description: str = "Look up an order", default: str = "A-17") -> list[dict[str, Any]]:
    parameters = {"type": "object", "properties": {"who": {"type": "string", "default": default}}}
    return [{"type": "function", "function": {"name": "lookup", "description": description, "parameters": parameters}}]


def _call(arguments: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def _image(url: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": url}}]


def _split(value: str) -> tuple[str, str]:
    middle = len(value) // 2
    return value[:middle], value[middle:]


@dataclass(frozen=True)
class Case:
    """One placement: ``build(value)`` is a request body carrying ``value`` there."""

    name: str
    kind: str
    value: str
    build: Callable[[str], dict[str, Any]]
    readable: bool = True
    clean: str | None = CLEAN

    @property
    def body(self) -> dict[str, Any]:
        """The request with the personal value in place."""
        return self.build(self.value)

    @property
    def twin(self) -> dict[str, Any] | None:
        """The same request with a harmless value (None: the placement alone is personal)."""
        return None if self.clean is None else self.build(self.clean)


CASES: list[Case] = [
    # -- text the old filter already read ---------------------------------------------------------
    Case("user content", "email", EMAIL, lambda v: _user(f"Please write to {v} today.")),
    Case("text part", "card", CARD, lambda v: _user([{"type": "text", "text": f"Refund {v} please"}])),
    Case(
        "system content",
        "phone",
        PHONE,
        lambda v: _turns({"role": "system", "content": f"Call {v}."}, {"role": "user", "content": "Hi"}),
    ),
    # -- message fields other than content --------------------------------------------------------
    Case("message name", "email", EMAIL, lambda v: _user("Hello there", name=v)),
    Case(
        "tool message name",
        "email",
        EMAIL,
        lambda v: _turns(_call("{}"), {"role": "tool", "tool_call_id": "call_1", "name": v, "content": "done"}),
    ),
    Case("extra message key", "iban", IBAN, lambda v: _user("Hello there", account=v)),
    Case(
        "tool_calls arguments",
        "phone",
        PHONE,
        lambda v: _turns(
            {"role": "user", "content": "Find my order"},
            _call(json.dumps({"phone": v})),
            {"role": "tool", "tool_call_id": "call_1", "content": "found"},
        ),
    ),
    Case(
        "tool_calls arguments, card",
        "card",
        CARD,
        lambda v: _turns(
            {"role": "user", "content": "Pay"},
            _call(json.dumps({"card": v.replace(" ", "")})),
            {"role": "tool", "tool_call_id": "call_1", "content": "paid"},
        ),
    ),
    Case(
        "legacy function_call",
        "email",
        EMAIL,
        lambda v: _turns(
            {"role": "user", "content": "Mail it"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "mail", "arguments": json.dumps({"to": v})},
            },
            {"role": "function", "name": "mail", "content": "sent"},
        ),
    ),
    Case(
        "tool result content",
        "iban",
        IBAN,
        lambda v: _turns(_call("{}"), {"role": "tool", "tool_call_id": "call_1", "content": f"account {v}"}),
    ),
    Case(
        "assistant turn",
        "email",
        EMAIL,
        lambda v: _turns(
            {"role": "user", "content": "Who do I write to?"},
            {"role": "assistant", "content": f"Write to {v}."},
            {"role": "user", "content": "Thanks"},
        ),
    ),
    Case(
        "developer message",
        "iban",
        IBAN,
        lambda v: _turns({"role": "developer", "content": f"Account {v}"}, {"role": "user", "content": "Hi"}),
    ),
    Case(
        "refusal part",
        "card",
        CARD,
        lambda v: _turns(
            {"role": "user", "content": "Repeat it"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": f"I will not repeat {v}"}]},
            {"role": "user", "content": "OK"},
        ),
    ),
    Case("extra key on a text part", "email", EMAIL, lambda v: _user([{"type": "text", "text": "Hi", "note": v}])),
    Case(
        "extra key on an image part",
        "phone",
        PHONE,
        lambda v: _user(
            [
                {"type": "text", "text": "Hi"},
                {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}, "caption": v},
            ]
        ),
    ),
    # -- pass-through top-level fields --------------------------------------------------------------
    Case("metadata value", "email", EMAIL, lambda v: _ask(metadata={"customer": v})),
    Case("metadata key", "email", EMAIL, lambda v: _ask(metadata={v: "vip"})),
    Case("metadata nested", "phone", PHONE, lambda v: _ask(metadata={"a": {"b": [{"c": v}]}})),
    Case(
        "card as a JSON number", "card", "4111111111111111", lambda v: _ask(metadata={"n": int(v)}), clean="2147483647"
    ),
    Case("prediction content", "card", CARD, lambda v: _ask(prediction={"type": "content", "content": v})),
    Case("tools description", "phone", PHONE, lambda v: _ask(tools=_tool(description=f"Calls {v}"))),
    Case("tools parameter default", "email", EMAIL, lambda v: _ask(tools=_tool(default=v))),
    Case("tools description, ssn", "ssn_us", SSN, lambda v: _ask(tools=_tool(description=f"Looks up {v}"))),
    Case(
        "response_format schema",
        "email",
        EMAIL,
        lambda v: _ask(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "r", "description": f"for {v}", "schema": {"type": "object"}},
            }
        ),
    ),
    Case("stop list", "email", EMAIL, lambda v: _ask(stop=[v])),
    Case("stop string", "iban", IBAN, lambda v: _ask(stop=v)),
    Case("unknown top-level field", "email", EMAIL, lambda v: _ask(safety_identifier=v)),
    Case("prompt_cache_key", "phone", PHONE, lambda v: _ask(prompt_cache_key=v)),
    Case("user field (forwarded upstream)", "email", EMAIL, lambda v: _ask(user=v)),
    # -- URLs and encodings -----------------------------------------------------------------------
    Case(
        "image_url query string",
        "email",
        EMAIL,
        lambda v: _user(_image(f"https://img.example/p.png?owner={v.replace('@', '%40')}")),
        clean="A-17",
    ),
    Case("text data URL in image_url", "email", EMAIL, lambda v: _user(_image(f"data:text/plain;base64,{_b64(v)}"))),
    Case(
        "file part, text data",
        "iban",
        IBAN,
        lambda v: _user(
            [{"type": "file", "file": {"filename": "a.txt", "file_data": f"data:text/plain;base64,{_b64(v)}"}}]
        ),
    ),
    Case(
        "file part filename",
        "email",
        EMAIL,
        lambda v: _user(
            [
                {"type": "text", "text": "Summarise"},
                {"type": "file", "file": {"file_id": "file-1", "filename": f"{v}.pdf"}},
            ]
        ),
    ),
    Case("base64 text", "email", EMAIL, lambda v: _user(f"Decode this: {_b64(v)}")),
    Case("short base64 email", "email", "jo@x.io", lambda v: _user(f"decode {_b64(v)}")),
    Case(
        "base64 after 2,000 long identifiers",
        "email",
        EMAIL,
        lambda v: _user(" ".join(f"computeQuarterlyRevenue{i}" for i in range(2000)) + f" then decode {_b64(v)}"),
    ),
    Case("base64url text", "card", CARD, lambda v: _user(f"token {_b64(v, 'url')}")),
    Case("base64 in metadata", "phone", PHONE, lambda v: _ask(metadata={"blob": _b64(v)})),
    Case("percent-encoded email", "email", EMAIL, lambda v: _ask(metadata={"link": f"mailto:{v.replace('@', '%40')}"})),
    Case("HTML character reference", "email", EMAIL, lambda v: _user(f"mail {v.replace('@', '&#64;')}")),
    # -- normalisation ----------------------------------------------------------------------------
    Case("lower-case IBAN", "iban", IBAN, lambda v: _user(f"iban {v.replace(' ', '').lower()}")),
    Case("lower-case IBAN with spaces", "iban", IBAN, lambda v: _user(f"pay to {v.lower()}")),
    Case("zero-width space in email", "email", EMAIL, lambda v: _user(f"mail {v.replace('@', chr(0x200B) + '@')}")),
    Case("zero-width joiner in card", "card", CARD, lambda v: _user(f"card {v.replace(' ', chr(0x200D))}")),
    Case("soft hyphen in IBAN", "iban", IBAN, lambda v: _user(f"IBAN {v.replace(' ', chr(0xAD))}")),
    Case(
        "full-width card digits",
        "card",
        CARD,
        lambda v: _user("card " + v.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})),
    ),
    Case("full-width at sign", "email", EMAIL, lambda v: _user(f"mail {v.replace('@', chr(0xFF20))}")),
    Case(
        "Arabic-Indic phone digits",
        "phone",
        PHONE,
        lambda v: _user("call " + v.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})),
    ),
    # -- split across strings ---------------------------------------------------------------------
    Case(
        "email split across messages",
        "email",
        EMAIL,
        lambda v: _turns(
            {"role": "user", "content": f"my address is {_split(v)[0]}"}, {"role": "user", "content": _split(v)[1]}
        ),
    ),
    Case(
        "card split across messages",
        "card",
        CARD,
        lambda v: _turns({"role": "user", "content": f"card {v[:9]}"}, {"role": "user", "content": v[9:]}),
    ),
    Case(
        "IBAN split across text parts",
        "iban",
        IBAN,
        lambda v: _user([{"type": "text", "text": f"iban {v[:12]}"}, {"type": "text", "text": v[12:]}]),
    ),
    # -- what the filter cannot read --------------------------------------------------------------
    Case(
        "image data URL",
        "unreadable",
        PNG,
        lambda v: _user(_image(f"data:image/png;base64,{v}")),
        readable=False,
        clean=None,
    ),
    Case(
        "image by URL",
        "unreadable",
        "https://img.example/scan-of-passport.png",
        lambda v: _user(_image(v)),
        readable=False,
        clean=None,
    ),
    Case(
        "audio part",
        "unreadable",
        PNG,
        lambda v: _user([{"type": "input_audio", "input_audio": {"data": v, "format": "wav"}}]),
        readable=False,
        clean=None,
    ),
    Case(
        "PDF file part",
        "unreadable",
        PNG,
        lambda v: _user(
            [{"type": "file", "file": {"filename": "cv.pdf", "file_data": f"data:application/pdf;base64,{v}"}}]
        ),
        readable=False,
        clean=None,
    ),
    Case(
        "binary base64 blob",
        "unreadable",
        base64.b64encode(bytes(range(256)) * 2).decode(),
        lambda v: _ask(metadata={"attachment": v}),
        readable=False,
        clean=None,
    ),
]
