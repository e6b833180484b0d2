"""Attacks on speech under ``privacy: local-only`` with ``privacy_opaque: allow`` (audio may leave, its
readable parts are judged): personal data in what the gateway can read (the local transcript, the form's
``prompt``, the file name) must not reach a remote speech model, whether the client names it or the
local model is unsure and escalates. espeak-ng speaks, the embedded Whisper tiny.en hears, and a recording
transcription upstream on 127.0.0.1 shows what really left.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fakes import GatewayServer
from recording_upstream import RecordingUpstream
from speech_helpers import TranscriptionUpstream, needs_espeak, speak

pytestmark = [needs_espeak, pytest.mark.slow]

#: Whisper tiny.en writes this as "Call me on plus 4 4 2 0 7 9 4 6 0 9 5 8", a valid UK number.
PHONE = "Call me on plus 4 4, 2 0, 7 9 4 6, 0 9 5 8."
HARMLESS = "Please send the quarterly report to the finance team by Friday."


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, Any, Any, Any]]:
    with TranscriptionUpstream() as heard, RecordingUpstream() as chat, RecordingUpstream() as near:
        catalog = {
            "models": [
                {
                    "name": "whisper-tiny.en",
                    "kind": "speech",
                    "modalities": ["audio"],
                    "context_window": 448,
                    "backend": "whisper",
                    # above any real transcript's mean log-probability: every transcript is unsure
                    "settings": {"embedded": "whisper", "max_seconds": 30, "escalate_below": -0.0001},
                },
                {
                    "name": "cloud-whisper",
                    "kind": "speech",
                    "modalities": ["audio"],
                    "context_window": 448,
                    "location": "remote",
                    "backend": "openai",
                    "settings": {"base_url": heard.base_url, "model": "whisper-large", "timeout_s": 10},
                },
                {  # a local text model (what local-only needs) served by a recording upstream
                    "name": "near-text",
                    "context_window": 8192,
                    "params_b": 1,
                    "location": "local",
                    "backend": "openai",
                    "settings": {"base_url": near.base_url, "model": "text-1b", "timeout_s": 10},
                },
                {
                    "name": "cloud-text",
                    "context_window": 8192,
                    "params_b": 70,
                    "location": "remote",
                    "backend": "openai",
                    "settings": {"base_url": chat.base_url, "model": "text-70b", "timeout_s": 10},
                },
            ],
            "gateway": {
                "log_url": f"sqlite:///{tmp_path_factory.mktemp('log')}/log.sqlite",
                "privacy": "local-only",
                "privacy_opaque": "allow",
            },
        }
        with GatewayServer(catalog) as gateway:
            yield gateway, heard, chat, near


@pytest.fixture
def upstreams(servers: tuple[GatewayServer, Any, Any, Any]) -> Iterator[tuple[GatewayServer, Any, Any, Any]]:
    _, heard, chat, near = servers
    heard.calls.clear(), chat.bodies.clear(), near.bodies.clear()
    yield servers


def _client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)


def test_harmless_unsure_audio_still_escalates(upstreams: tuple[GatewayServer, Any, Any, Any]):
    """The twin: opaque audio is allowed out, so an unsure harmless transcript does go to the remote model."""
    gw, heard, *_ = upstreams
    raw = _client(gw).audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speak(HARMLESS)))
    assert raw.headers["x-sizewise-model"] == "cloud-whisper" and len(heard.calls) == 1


def test_a_spoken_phone_number_is_not_escalated(upstreams: tuple[GatewayServer, Any, Any, Any]):
    gw, heard, *_ = upstreams
    raw = _client(gw).audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speak(PHONE)))
    assert raw.headers["x-sizewise-model"] == "whisper-tiny.en"
    decision = raw.parse().model_extra["sizewise"]
    assert not decision["escalated"] and "phone" in decision["reason"]
    assert heard.calls == []  # neither the audio nor its transcript left


@pytest.mark.parametrize(
    ("model", "fields", "filename"),
    [
        ("whisper-1", {"prompt": "Names: alice.smith@example.com"}, "a.wav"),
        ("whisper-1", {}, "alice.smith@example.com.wav"),
        ("cloud-whisper", {"prompt": "Names: alice.smith@example.com"}, "a.wav"),
        ("cloud-whisper", {}, "alice.smith@example.com.wav"),
    ],
    ids=["prompt-escalated", "filename-escalated", "prompt-named", "filename-named"],
)
def test_personal_data_in_the_form_never_reaches_the_remote_model(
    upstreams: tuple[GatewayServer, Any, Any, Any], model: str, fields: dict[str, str], filename: str
):
    gw, heard, *_ = upstreams
    client = _client(gw)
    if model == "cloud-whisper":  # named: refused with the reason, as a named remote chat model is
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.transcriptions.create(model=model, file=(filename, speak(HARMLESS)), **fields)
        assert caught.value.code == "privacy_remote_model" and "email" in caught.value.message
    else:  # decided: the local transcript stands
        raw = client.audio.transcriptions.with_raw_response.create(
            model=model, file=(filename, speak(HARMLESS)), **fields
        )
        assert raw.headers["x-sizewise-model"] == "whisper-tiny.en"
    assert heard.calls == []


def test_a_chat_audio_part_with_a_phone_number_stays_local(upstreams: tuple[GatewayServer, Any, Any, Any]):
    gw, heard, chat, near = upstreams
    audio = {"data": base64.b64encode(speak(PHONE)).decode(), "format": "wav"}
    content = [{"type": "text", "text": "Note the number."}, {"type": "input_audio", "input_audio": audio}]
    answer = _client(gw).chat.completions.create(
        model="sizewise", messages=[{"role": "user", "content": content}], max_tokens=8
    )
    assert answer.model == "near-text" and len(near.bodies) == 1
    assert heard.calls == [] and chat.bodies == []


def test_audio_of_a_chat_request_with_personal_text_stays_local(upstreams: tuple[GatewayServer, Any, Any, Any]):
    """The request's text holds an e-mail address: nothing of it may reach a remote model, its audio included."""
    gw, heard, chat, near = upstreams
    audio = {"data": base64.b64encode(speak(HARMLESS)).decode(), "format": "wav"}
    text = {"type": "text", "text": "Send this to alice.smith@example.com:"}
    near.bodies.clear()
    content = [text, {"type": "input_audio", "input_audio": audio}]
    answer = _client(gw).chat.completions.create(
        model="sizewise", messages=[{"role": "user", "content": content}], max_tokens=8
    )
    assert answer.model == "near-text" and len(near.bodies) == 1 and heard.calls == [] and chat.bodies == []
    [note] = answer.model_extra["sizewise"]["transcribed"]
    assert note["model"] == "whisper-tiny.en" and not note["escalated"]
