"""What a forwarded request carries, as the privacy filter reads it: every string, normalised.

A remote upstream receives the whole message list (every field of every message, at any depth:
``name``, ``tool_calls``, ``refusal``, extra keys on content parts...), every top-level field the
gateway does not read itself (``ChatRequest.extra``: ``tools``, ``metadata``, ``prediction``...)
and ``stop``. :func:`collect` walks all of it and returns :class:`Outbound`:

* ``texts``: every string, normalised (NFKC, so full-width digits become ASCII; format
  characters such as zero-width spaces removed; other scripts' decimal digits mapped to 0-9), plus
  decoded variants where that is cheap: percent-encoding (URL query strings), HTML character
  references, ``data:`` URLs of a text type, and base64 runs that decode to UTF-8 text;
* seams (in ``texts`` too): the joined text around each boundary between consecutive free-text
  strings, so an address split across two messages or two fields is seen whole;
* ``numbers``: JSON integers long enough to be a card number (checked as cards only);
* ``opaque``: what cannot be read: image, audio and file parts, binary ``data:`` URLs and base64
  blobs (their payload is not scanned, it is not text), text beyond :data:`MAX_SCAN_CHARS`.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from sizewise.core.chat import ChatRequest

#: Past this many characters the text is not scanned (it would cost seconds of CPU) but counted opaque.
MAX_SCAN_CHARS = 1_000_000
#: Characters on each side of a boundary between two strings that the seam scan sees.
SEAM = 64
#: A base64 run this long that does not decode to text counts as binary data (a file), not a token.
MIN_BLOB = 256
#: At most this many base64 runs (8+ characters) are decoded per request: a few microseconds each,
#: so that long identifiers in a code prompt cannot use up the budget before the real base64 comes.
MAX_DECODED_RUNS = 20_000

#: Content part types whose payload is not text, and what they are.
OPAQUE_PARTS = {
    "image_url": "image",
    "input_image": "image",
    "image": "image",
    "input_audio": "audio",
    "audio": "audio",
    "file": "file",
}
#: Keys whose values are identifiers or enums, not free text: scanned, but left out of the seams.
_STRUCTURAL = {"role", "type", "detail", "format", "id", "tool_call_id", "object", "mime_type"}
#: Keys that hold a binary payload inside an opaque part (base64 audio, a file's bytes).
_PAYLOAD = {"data", "file_data"}

# Format characters (Unicode category Cf) that hide data from a pattern yet render as nothing:
# soft hyphen, zero-width space/joiners, bidi controls, word joiner, BOM, variation selectors, tags.
_FORMAT = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufe00-\ufe0f\ufeff\U000e0000-\U000e007f]"
)
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{8,}={0,2}")
_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"[0-9]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")
_DATA_URL = re.compile(r"data:([\w.+-]*/[\w.+-]*)?((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,", re.IGNORECASE)
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


@dataclass
class Outbound:
    """The readable text of a request (``texts``) and what could not be read (``opaque``)."""

    texts: list[str] = field(default_factory=list)
    opaque: set[str] = field(default_factory=set)
    #: JSON integers of 13+ digits, checked as card numbers only.
    numbers: list[str] = field(default_factory=list)
    chars: int = 0
    decoded_runs: int = 0
    #: Free-text strings in order, for the seams.
    _sequence: list[str] = field(default_factory=list)
    _keys: set[str] = field(default_factory=set)

    def add(self, text: str, free: bool = True) -> None:
        """Add one string (normalised) with its decoded variants."""
        self.chars += len(text)
        if self.chars > MAX_SCAN_CHARS:
            self.opaque.add(f"text over {MAX_SCAN_CHARS:,} characters")
            return
        text = normalise(text)
        self.texts.append(text)
        if free:
            self._sequence.append(text)
        for variant in self._decoded(text):
            self.add(variant, free=False)

    def _decoded(self, text: str) -> Iterator[str]:
        if "%" in text and _PERCENT.search(text):
            yield unquote_plus(text)
        if "&" in text and (unescaped := html.unescape(text)) != text:
            yield unescaped
        for match in _BASE64.finditer(text):
            if self.decoded_runs >= MAX_DECODED_RUNS:
                return
            self.decoded_runs += 1
            run = match.group()
            decoded = _base64_text(run)
            if decoded:
                yield decoded
            elif len(run) >= MIN_BLOB and _LETTER.search(run) and _DIGIT.search(run):
                self.opaque.add("binary data")  # base64 of something that is not text: a file

    def seams(self) -> list[str]:
        """The joined text around each boundary between consecutive free-text strings."""
        joined = "".join(self._sequence)
        windows: list[list[int]] = []
        position = 0
        for text in self._sequence[:-1]:
            position += len(text)
            start, end = max(0, position - SEAM), position + SEAM
            if windows and start <= windows[-1][1]:
                windows[-1][1] = end
            else:
                windows.append([start, end])
        return [joined[start:end] for start, end in windows]


def normalise(text: str) -> str:
    """NFKC, format characters removed, every script's decimal digits as ASCII digits."""
    if text.isascii():
        return text  # nothing to do, and the common case
    text = unicodedata.normalize("NFKC", _FORMAT.sub("", text))
    return _OTHER_DIGIT.sub(lambda m: str(unicodedata.decimal(m.group(), 0)), text)


def _base64_text(run: str) -> str | None:
    """The UTF-8 text a base64 (or base64url) run encodes, or None when it is not text."""
    run = run.rstrip("=").translate(str.maketrans("-_", "+/"))
    try:
        raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return None if _CONTROL.search(text) else text


def _data_url(value: str, out: Outbound) -> bool:
    """Handle a ``data:`` URL: decode a text payload into ``out``, count a binary one opaque.

    Returns False when ``value`` is not a data URL.
    """
    match = _DATA_URL.match(value)
    if match is None:
        return False
    mime = (match.group(1) or "text/plain").lower()
    payload = value[match.end() :]
    if not mime.startswith(_TEXT_TYPES):
        out.opaque.add(mime.split("/")[0] if mime.startswith(("image/", "audio/")) else "file")
        return True
    if match.group(3):
        decoded = _base64_text(payload)
        if decoded is None:
            out.opaque.add("file")
            return True
        payload = decoded
    out.add(unquote_plus(payload))
    return True


def _walk(value: Any, out: Outbound, key: str | None = None, in_opaque: bool = False) -> None:
    if isinstance(value, str):
        if value[:5].lower() == "data:" and _data_url(value, out):
            return
        if in_opaque and key in _PAYLOAD:
            out.opaque.add("file" if key == "file_data" else "audio")  # base64 bytes: not text
            return
        out.add(value, free=key not in _STRUCTURAL)
    elif isinstance(value, dict):
        part_type = value.get("type")
        kind = OPAQUE_PARTS.get(part_type) if isinstance(part_type, str) else None
        if kind:
            out.opaque.add(kind)
        for name, item in value.items():
            if name not in out._keys:  # a key can carry data too (metadata: {"jane@x.io": 1})
                out._keys.add(name)
                out.add(str(name), free=False)
            _walk(item, out, str(name), in_opaque or kind is not None)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, out, key, in_opaque)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 10**12:
        # A bare number is only checked as a card: as a phone, ids, limits and timestamps would fire
        # (2147483647 is a valid Dallas number).
        out.numbers.append(str(value))


def collect(request: ChatRequest) -> Outbound:
    """Everything of ``request`` that a backend forwards: messages, pass-through fields, ``stop``."""
    out = Outbound()
    _walk(request.messages, out)
    _walk(request.stop, out)
    _walk(request.extra, out)
    seams = out.seams()
    out.texts.extend(seams)
    return out
