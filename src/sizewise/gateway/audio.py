"""``POST /v1/audio/transcriptions``: OpenAI's multipart transcription API, heard by the local Whisper model.

Form fields as OpenAI's: ``file`` (required), ``model`` (``whisper-1`` or ``sizewise``: the gateway decides;
a catalog speech model: that one), ``language``, ``prompt``, ``response_format`` (json, text, verbose_json,
srt, vtt) and ``temperature``. The decision (local, or escalated to a remote speech model when the local
transcript is unsure: :mod:`sizewise.serve.speech`) comes back in ``x-sizewise-*`` headers, in a ``sizewise``
object of JSON answers, and in the request log like a chat request (without text or tokens).
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from sizewise.catalog.schema import ModelSpec
from sizewise.core.decision import Decision
from sizewise.gateway.errors import GatewayError, error_response
from sizewise.gateway.responses import JSON, decision_headers
from sizewise.gateway.schemas import read_body
from sizewise.serve.speech import Heard, hear, speech_models

FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
#: Room for the multipart envelope and the other fields around the file.
_ENVELOPE = 1 << 20
_DEFAULT_MAX_BYTES = 25 * 1024 * 1024


def largest_upload(models: list[ModelSpec]) -> int:
    """The largest body the transcription route reads for these models (a proxy in front buffers this much)."""
    caps = [int(m.settings.get("max_bytes", _DEFAULT_MAX_BYTES)) for m in models if m.kind == "speech"]
    return max(caps, default=_DEFAULT_MAX_BYTES) + _ENVELOPE


async def transcriptions(request: Request) -> Response:
    """Read the form within the speech model's byte cap, transcribe, answer in the asked format, log."""
    state = request.app.state.gateway
    started = time.perf_counter()
    request_id = state.next_id()
    api_key: str | None = None
    decision: Decision | None = None
    try:
        record = state.keys.check(request.headers)
        api_key = record.name if record else None
        local, _ = speech_models(state.engine)
        limit = int(local.settings.get("max_bytes", _DEFAULT_MAX_BYTES)) if local else _DEFAULT_MAX_BYTES
        fields, data, filename = await _read_form(request, limit)
        if not re.fullmatch(r"[A-Za-z]{2,3}", fields.get("language") or "en"):
            raise GatewayError(400, "language must be an ISO-639-1 code such as 'en'", "invalid_value", "language")
        response_format = fields.pop("response_format", "json")
        if response_format not in FORMATS:
            raise GatewayError(
                400, f"response_format must be one of {', '.join(FORMATS)}", "invalid_value", "response_format"
            )
        heard, decision = await hear(
            state.engine,
            data,
            model_field=fields.pop("model"),
            filename=filename,
            language=(fields.get("language") or "").lower() or None,
            prompt=fields.get("prompt") or None,
            temperature=_temperature(fields.get("temperature")),
            fields={**fields, "response_format": response_format},
            api_key=api_key,
            request_id=request_id,
        )
    except Exception as error:  # one JSON line to the client, never a traceback; the log keeps the row
        failure, headers = state.refuse(error, None, decision, started, request_id=request_id, api_key=api_key)
        return error_response(failure.status, failure.message, failure.code, failure.param, headers)
    state.finish(None, decision, 200, started, request_id=request_id, api_key=api_key)
    headers = {**decision_headers(decision, request_id), "x-content-type-options": "nosniff"}
    if heard.body is not None:  # a remote model answered: its body as it sent it (JSON gains the decision)
        # ...but only as JSON or plain text: HTML, SVG or a script from a broken upstream would run in a browser
        # on this origin (the dashboard's), and any web page can post this form.
        kind = JSON if "json" in (heard.content_type or "") else "text/plain; charset=utf-8"
        return Response(_with_decision(heard.body, heard.content_type, decision), headers=headers, media_type=kind)
    body, media_type = render(heard, decision, response_format)
    return Response(body, headers=headers, media_type=media_type)


async def _read_form(request: Request, limit: int) -> tuple[dict[str, str], bytes, str]:
    """The form's text fields, the file's bytes and name; 413 past ``limit`` + the envelope, 400 when malformed."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise GatewayError(400, "send the audio as multipart/form-data with a 'file' field", "invalid_request")
    raw = await read_body(request, limit + _ENVELOPE)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=32)
    except Exception as error:  # python-multipart's parse errors and starlette's limits
        raise GatewayError(400, f"malformed multipart body: {error}", "invalid_request") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise GatewayError(400, "missing required field 'file' (the audio file)", "missing_field", "file")
    data = await upload.read()
    await form.close()
    if len(data) > limit:
        raise GatewayError(
            413, f"the audio file is {len(data):,} bytes; the limit is {limit:,}", "audio_too_large", "file"
        )
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    if not fields.get("model"):
        raise GatewayError(400, "missing required field 'model'", "missing_field", "model")
    return fields, data, upload.filename or "audio"


def _temperature(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise GatewayError(400, "temperature must be a number from 0 to 1", "invalid_value", "temperature")
    return value


def _with_decision(body: bytes, content_type: str | None, decision: Decision) -> bytes:
    if "json" not in (content_type or ""):
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    return json.dumps({**payload, "sizewise": decision.to_dict()}).encode() if isinstance(payload, dict) else body


def render(heard: Heard, decision: Decision, response_format: str) -> tuple[bytes, str]:
    """A local transcript in OpenAI's ``response_format``: (body, media type)."""
    local = heard.local
    assert local is not None
    if response_format == "text":
        return (heard.text + "\n").encode(), "text/plain; charset=utf-8"
    if response_format in ("srt", "vtt"):
        return _subtitles(local.segments, response_format).encode(), "text/plain; charset=utf-8"
    payload: dict[str, Any] = {"text": heard.text}
    if response_format == "verbose_json":
        segments = [
            {
                **{k: s[k] for k in ("id", "start", "end", "text", "avg_logprob", "no_speech_prob")},
                "seek": 0,
                "tokens": [],
            }
            for s in local.segments
        ]
        payload = {
            "task": "transcribe",
            "language": local.language,
            "duration": local.duration,
            **payload,
            "segments": segments,
        }
    payload["usage"] = {"type": "duration", "seconds": math.ceil(local.duration)}
    payload["sizewise"] = decision.to_dict()
    return json.dumps(payload).encode(), JSON


def _subtitles(segments: list[dict[str, Any]], kind: str) -> str:
    sep = "," if kind == "srt" else "."

    def stamp(seconds: float) -> str:
        ms = round(seconds * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"

    cues = [f"{stamp(s['start'])} --> {stamp(s['end'])}\n{s['text'].strip()}\n" for s in segments]
    if kind == "vtt":
        return "WEBVTT\n\n" + "\n".join(cues)
    return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(cues, 1))
