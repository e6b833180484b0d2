"""Speech on the request path: the local Whisper model hears first, an unsure transcript goes to a remote one.

One decision serves both ways audio arrives: ``POST /v1/audio/transcriptions`` (:mod:`sizewise.gateway.audio`)
and the ``input_audio`` parts of chat requests, which :func:`transcribe_parts` replaces by their transcripts
before the text decision, so routers, filters and text models see words, never audio. The local transcript's
mean token log-probability is the confidence: below the local model's ``escalate_below`` (a catalog setting,
calibrated in ``bench/modalities.py``), the audio goes to the catalog's remote speech model
(``backend: openai``, ``kind: speech``) through its ``/audio/transcriptions``; if that fails, the local
transcript stands, and the decision says so. A remote transcription is paid for: its cost (minutes x the
model's ``price_per_minute``) is reserved in the budget ledger before the call and settled after it
(:mod:`sizewise.serve.speech_budget`); when the budget cannot pay, an unsure local transcript answers (the
decision says why), and a request only a remote model can hear gets ``429 budget_exceeded``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from sizewise.backends.base import BackendError
from sizewise.backends.speech import AudioError, SpeechBackend, Transcript, sniff_format
from sizewise.catalog.schema import ModelSpec, OpenAISettings
from sizewise.core.decision import Decision, RequestRejected, Step
from sizewise.core.text import conversation_text, modalities
from sizewise.errors import ConfigError
from sizewise.policy.types import RequestContext
from sizewise.serve.speech_budget import SpeechHold, clip_seconds, reserve
from sizewise.serve.speech_privacy import personal, personal_request

#: ``model`` values that let the gateway decide (OpenAI's own transcription model name included).
DECIDE = frozenset({"sizewise", "whisper-1"})
#: The most bytes read of a remote speech model's answer (a transcript of 25 MB of audio, even as verbose_json
#: with every segment, is well under 1 MB).
MAX_ANSWER_BYTES = 8 * 1024 * 1024
#: Containers the chat API's ``input_audio.format`` may name (OpenAI's are wav and mp3).
CHAT_FORMATS = frozenset({"wav", "mp3", "flac", "ogg", "webm", "mp4", "m4a"})


@dataclass
class Heard:
    """A transcription and who made it: ``body`` is a remote model's JSON (or text) answer, kept verbatim."""

    text: str
    model: str
    local: Transcript | None = None
    body: bytes | None = None
    content_type: str | None = None


def speech_models(engine: Any) -> tuple[ModelSpec | None, list[ModelSpec]]:
    """The local Whisper model (the first ``backend: whisper`` entry) and the remote speech models."""
    models: list[ModelSpec] = [m for m in engine.models if m.kind == "speech"]
    local = next((m for m in models if m.backend == "whisper"), None)
    return local, [m for m in models if m.backend == "openai"]


def audio_stays_local(settings: Any) -> bool:
    """Whether the privacy setting keeps audio on this machine: ``local-only`` counts audio, which no scan
    reads, as personal unless ``privacy_opaque: allow`` (docs/constraints.md)."""
    return bool(settings.privacy == "local-only" and settings.privacy_opaque == "personal")


def _escalation_target(local: ModelSpec, remotes: list[ModelSpec]) -> ModelSpec | None:
    wanted = local.settings.get("escalate_to")
    return next((m for m in remotes if m.name == wanted), None) if wanted else (remotes[0] if remotes else None)


def audio_error(error: AudioError, param: str) -> RequestRejected:
    """The client error of bad audio, naming the field at fault."""
    return RequestRejected(error.status, str(error), error.code, param if error.param == "file" else error.param)


async def forward(
    engine: Any, spec: ModelSpec, data: bytes, filename: str, fields: dict[str, str]
) -> tuple[bytes, str, str]:
    """POST the audio to a remote speech model's ``/audio/transcriptions``: (body, content type, its text)."""
    backend = engine.backend(spec)
    settings = OpenAISettings.model_validate(spec.settings)
    headers = dict(settings.headers)
    if settings.api_key_env:
        headers["Authorization"] = f"Bearer {os.environ.get(settings.api_key_env, '')}"
    form = {**fields, "model": settings.model or spec.name}
    client = backend.client
    try:
        files = {"file": (filename, data)}
        request = client.build_request("POST", "audio/transcriptions", files=files, data=form, headers=headers)
        response = await client.send(request, stream=True)
        try:  # read up to a cap: a broken upstream's endless answer must not fill the gateway's memory
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise BackendError(f"{spec.name}: the answer is larger than {MAX_ANSWER_BYTES:,} bytes")
        finally:
            await response.aclose()
    except BackendError:
        raise
    except Exception as error:  # httpx's transport errors: the local transcript stands
        raise BackendError(f"{spec.name}: {type(error).__name__}: {error}") from None
    text = bytes(body).decode(response.encoding or "utf-8", errors="replace")
    if response.status_code >= 400:
        raise BackendError(f"{spec.name}: HTTP {response.status_code}: {text[:200]}")
    kind = response.headers.get("content-type", "application/json")
    if "json" in kind:
        try:
            text = json.loads(body).get("text")
        except (ValueError, AttributeError):
            raise BackendError(f"{spec.name}: the answer is not JSON") from None
        if not isinstance(text, str):  # {"text": null} would reach the chat model as the word "None"
            raise BackendError(f"{spec.name}: the answer has no text (a JSON string 'text')")
    return bytes(body), kind, text


async def hear(
    engine: Any,
    data: bytes,
    *,
    model_field: str = "sizewise",
    filename: str = "audio",
    language: str | None = None,
    prompt: str | None = None,
    temperature: float = 0.0,
    fields: dict[str, str] | None = None,
    personal_text: str = "",
    api_key: str | None = None,
    request_id: str = "",
) -> tuple[Heard, Decision]:
    """Transcribe ``data``: a named speech model, or the local model escalating to a remote one when unsure.
    ``personal_text``: the privacy rules that fired on the rest of the request (it then stays local);
    ``api_key``, ``request_id``: whose budget a remote transcription is reserved in (and whose recent
    transcripts the local model may reuse)."""
    local, remotes = _candidates(engine, engine.aliases.get(model_field, model_field))
    decision = Decision(policy="transcription")
    readable = [filename, *(fields or {}).values()]  # what leaves with the audio, judged (serve.speech_privacy)
    if local is None:  # a remote model named, or the only speech model there is
        check_audio(data)
        fired = personal_text or await personal(engine.settings, readable)
        if fired:
            named = model_field not in DECIDE
            message = f"this request contains personal data ({fired}) and speech model {remotes[0].name!r} is remote"
            code = "privacy_remote_model" if named else "privacy_no_local_model"
            raise RequestRejected(400, f"{message}; privacy 'local-only' allows only local models", code, "model")
        decision.model = remotes[0].name
        seconds = await _seconds(data) if remotes[0].price_per_minute else 0.0
        hold = await reserve(engine, remotes[0], seconds, api_key, request_id)  # 429: nothing else can hear it
        return await _remote(engine, remotes[0], data, filename, fields or {}, decision, None, hold), decision
    backend = engine.backend(local)
    assert isinstance(backend, SpeechBackend)
    started = time.perf_counter()
    try:
        transcript = await backend.transcribe(data, language, prompt, temperature, client=api_key)
    except AudioError as error:
        raise audio_error(error, "file") from None
    except ConfigError as error:  # the model's package is missing or its file corrupt: not the client's fault
        raise RequestRejected(503, str(error), "model_unavailable", "model") from None
    threshold = local.settings.get("escalate_below")
    decision.model, decision.score, decision.threshold = local.name, transcript.avg_logprob, threshold
    step = Step(local.name, transcript.avg_logprob, threshold, latency_s=time.perf_counter() - started)
    decision.steps.append(step)
    heard = Heard(transcript.text, local.name, transcript)
    why = _why_escalate(backend, transcript, language, threshold)
    target = _escalation_target(local, remotes) if why else None
    fired = (personal_text or await personal(engine.settings, [*readable, transcript.text])) if target else ""
    if fired:  # the transcript (or the form) holds personal data: the audio stays here, unsure or not
        decision.reason = step.reason = f"{why}; personal data ({fired}) keeps the audio local"
        step.accepted = True
        return heard, decision
    step.accepted = target is None
    step.reason = why or "confident"
    if target is None:
        decision.reason = f"{why}; no remote speech model to escalate to" if why else "local transcript"
        return heard, decision
    try:
        hold = await reserve(engine, target, transcript.duration, api_key, request_id)
    except RequestRejected as refused:  # the budget cannot pay the remote model: the local transcript answers
        decision.reason = step.reason = f"{why}; escalation to {target.name!r} skipped: {refused.message}"
        step.accepted = True
        decision.notes["budget"] = {"escalation_skipped": target.name, "reason": refused.message}
        return heard, decision
    decision.escalated, decision.reason = True, why
    try:
        return await _remote(engine, target, data, filename, fields or {}, decision, transcript, hold), decision
    except BackendError as error:  # the remote model failed: the local transcript is still an answer
        decision.errors.append(str(error))
        decision.model, decision.fallback_from, step.accepted = local.name, target.name, True
        return heard, decision


def _candidates(engine: Any, name: str) -> tuple[ModelSpec | None, list[ModelSpec]]:
    """Who hears a request whose ``model`` is ``name``: (the local model or None, remote models in order)."""
    local, remotes = speech_models(engine)
    if audio_stays_local(engine.settings):
        if any(m.name == name for m in remotes):
            message = f"model {name!r} is remote and privacy 'local-only' keeps audio on local models"
            raise RequestRejected(400, message, "privacy_local_only", "model")
        remotes = []
    if name not in DECIDE:
        spec = next((m for m in [*([local] if local else []), *remotes] if m.name == name), None)
        if spec is None:
            known = ", ".join(["sizewise", "whisper-1", *(m.name for m in [*([local] if local else []), *remotes])])
            message = f"model {name!r} does not transcribe audio; use one of {known}"
            raise RequestRejected(404, message, "model_not_found", "model")
        return (None, [spec]) if spec.backend == "openai" else (spec, [])
    if local is None and not remotes:
        raise RequestRejected(400, "no speech model in the catalog: add one of kind 'speech'", "no_model_available")
    return local, remotes


async def _seconds(data: bytes) -> float:
    """The clip's duration, for its price when no local model heard it (decoded in a thread)."""
    try:
        return await asyncio.to_thread(clip_seconds, data)
    except AudioError as error:
        raise audio_error(error, "file") from None


def check_audio(data: bytes) -> None:
    """The cheap checks for audio sent on unheard (to a remote model): not empty, a known container."""
    try:
        if not data:
            raise AudioError("the audio file is empty", "empty_audio")
        sniff_format(data)
    except AudioError as error:
        raise audio_error(error, "file") from None


def _why_escalate(backend: SpeechBackend, transcript: Transcript, language: str | None, threshold: Any) -> str:
    if language and backend.english_only and language.lower() not in ("en", "english"):
        return f"language {language!r}: {backend.model} knows English only"
    if threshold is not None and transcript.avg_logprob < float(threshold):
        return f"avg_logprob {transcript.avg_logprob:.3f} < {float(threshold):g}"
    return ""


async def _remote(
    engine: Any,
    spec: ModelSpec,
    data: bytes,
    filename: str,
    fields: dict[str, str],
    decision: Decision,
    local: Transcript | None,
    hold: SpeechHold,
) -> Heard:
    started = time.perf_counter()
    try:
        body, kind, text = await forward(engine, spec, data, filename, fields)
    except asyncio.CancelledError:  # the client left: the upstream may still bill the clip, so count it
        hold.settle_later(hold.cost)
        raise
    except BackendError as error:
        await hold.settle(0.0)  # a failed call costs nothing
        decision.steps.append(Step(spec.name, latency_s=time.perf_counter() - started, error=str(error)))
        if local is None:  # nothing else heard it
            raise RequestRejected(502, f"the speech model failed: {error}", "upstream_error") from None
        raise
    await hold.settle(hold.cost)
    latency = time.perf_counter() - started
    decision.steps.append(Step(spec.name, accepted=True, reason="remote", cost=hold.cost, latency_s=latency))
    decision.model, decision.cost = spec.name, decision.cost + hold.cost
    return Heard(text, spec.name, local, body, kind)


def _audio_parts(messages: list[dict[str, Any]]) -> list[tuple[int, int, dict[str, Any]]]:
    return [
        (m, p, part)
        for m, message in enumerate(messages)
        if isinstance(message.get("content"), list)
        for p, part in enumerate(message["content"])
        if isinstance(part, dict) and part.get("type") == "input_audio"
    ]


def _part_bytes(part: dict[str, Any], where: str) -> bytes:
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        raise RequestRejected(400, f"{where} needs input_audio.data (base64 audio)", "invalid_audio", where)
    fmt = audio.get("format")
    if fmt is not None and fmt not in CHAT_FORMATS:
        message = f"{where}: unsupported audio format {fmt!r}; use one of {', '.join(sorted(CHAT_FORMATS))}"
        raise RequestRejected(400, message, "unsupported_audio", where)
    try:
        return base64.b64decode(audio["data"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestRejected(400, f"{where}: input_audio.data is not valid base64", "invalid_audio", where) from None


async def transcribe_parts(engine: Any, ctx: RequestContext, decision: Decision, keep_audio: bool = False) -> None:
    """Replace the audio parts of ``ctx``'s messages by their transcripts (in place), noting it in ``decision``.

    Nothing happens without a speech model in the catalog, or when ``keep_audio`` (the request names a model
    that takes audio itself): then the modality filter decides who may hear it.
    """
    parts = _audio_parts(ctx.messages)
    local, remotes = speech_models(engine)
    remotes = [] if audio_stays_local(engine.settings) else remotes
    if not parts or keep_audio or (local is None and not remotes):
        return
    messages = [dict(m) for m in ctx.messages]
    for m in {m for m, _, _ in parts}:  # copies: the client's parts are never edited in place
        messages[m]["content"] = list(messages[m]["content"])
    notes = []
    fired = await personal_request(engine.settings, ctx.request) if remotes else ""  # judged once, before any part
    for m, p, part in parts:
        where = f"messages[{m}].content[{p}]"
        data = _part_bytes(part, where)
        try:
            heard, said = await hear(
                engine,
                data,
                filename=f"audio.{_extension(part)}",
                personal_text=fired,
                api_key=ctx.api_key,
                request_id=ctx.request_id,
            )
        except RequestRejected as error:
            raise RequestRejected(error.status, f"{where}: {error.message}", error.code, where) from None
        messages[m]["content"][p] = {"type": "text", "text": heard.text}
        notes.append(
            {
                "part": where,
                "model": heard.model,
                "escalated": said.escalated,
                "avg_logprob": heard.local.avg_logprob if heard.local else None,
                "threshold": said.threshold,
                "duration_s": heard.local.duration if heard.local else None,
                "chars": len(heard.text),
                "cost": said.cost,
                **({"budget": said.notes["budget"]} if "budget" in said.notes else {}),
            }
        )
    ctx.messages[:] = messages  # the request's own list: the model call sends the transcripts
    ctx.request.messages = ctx.messages
    ctx.text = conversation_text(ctx.messages)
    ctx.modalities = modalities(ctx.messages)
    ctx.prompt_tokens = math.ceil(len(ctx.text) / 4)
    decision.notes["transcribed"] = notes


def _extension(part: dict[str, Any]) -> str:
    audio = part.get("input_audio") or {}
    fmt = audio.get("format") if isinstance(audio, dict) else None
    return str(fmt) if fmt in CHAT_FORMATS else "wav"
