"""Speech through the live gateway with the official openai client: espeak-ng speech, the embedded Whisper tiny.en.

One gateway serves the module: the local Whisper model (loaded once), a remote speech model (a recording
transcription upstream) it escalates to when unsure, and a remote text model (a recording chat upstream).
The threshold is set per test on the live catalog entry, which each transcription reads afresh.
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

SENTENCE = "Please send the quarterly report to the finance team by Friday."


@pytest.fixture(scope="module")
def speech() -> bytes:
    return speak(SENTENCE)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, Any, Any]]:
    with TranscriptionUpstream() as heard, RecordingUpstream() as chat:
        catalog = {
            "models": [
                {
                    "name": "whisper-tiny.en",
                    "kind": "speech",
                    "modalities": ["audio"],
                    "context_window": 448,
                    "backend": "whisper",
                    "settings": {"embedded": "whisper", "max_seconds": 30, "max_bytes": 3_000_000},
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
                {
                    "name": "cloud-text",
                    "context_window": 8192,
                    "params_b": 70,
                    "location": "remote",
                    "backend": "openai",
                    "settings": {"base_url": chat.base_url, "model": "text-70b", "timeout_s": 10},
                },
            ],
            "gateway": {"log_url": f"sqlite:///{tmp_path_factory.mktemp('log')}/log.sqlite"},
        }
        with GatewayServer(catalog) as gateway:
            yield gateway, heard, chat


@pytest.fixture
def gateway(servers: tuple[GatewayServer, Any, Any]) -> Iterator[GatewayServer]:
    gw, heard, chat = servers
    heard.calls.clear(), chat.bodies.clear()
    heard.fail = False
    yield gw
    _threshold(gw, None)


def _threshold(gw: GatewayServer, value: float | None) -> None:
    gw.app.state.gateway.engine.by_name["whisper-tiny.en"].settings["escalate_below"] = value


def _client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)


def test_a_transcription_is_answered_locally_with_the_right_words(gateway: GatewayServer, speech: bytes, servers):
    _threshold(gateway, -5.0)  # espeak-ng's clean speech is far above this
    raw = _client(gateway).audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speech))
    text = raw.parse().text.lower()
    assert raw.headers["x-sizewise-model"] == "whisper-tiny.en"
    for word in ("send", "report", "finance", "friday"):
        assert word in text, text
    assert servers[1].calls == []  # the remote speech model heard nothing
    row = gateway.rows()[-1]
    assert row["model"] == "whisper-tiny.en" and row["status"] == 200


def test_verbose_json_and_subtitles_come_in_openais_shape(gateway: GatewayServer, speech: bytes):
    client = _client(gateway)
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", speech), response_format="verbose_json"
    )
    assert verbose.duration > 3 and verbose.segments and verbose.segments[0].end > verbose.segments[0].start
    srt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", speech), response_format="srt")
    assert str(srt).startswith("1\n00:00:00,000 --> ") and "report" in str(srt).lower()
    text = client.audio.transcriptions.create(model="whisper-tiny.en", file=("a.wav", speech), response_format="text")
    assert "friday" in str(text).lower()


def test_an_unsure_transcript_escalates_to_the_remote_speech_model(gateway: GatewayServer, speech: bytes, servers):
    heard = servers[1]
    _threshold(gateway, -0.0001)  # above any real transcript's mean log-probability: always unsure
    raw = _client(gateway).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("talk.wav", speech), language="en"
    )
    assert raw.parse().text == "words from the remote model"
    assert raw.headers["x-sizewise-model"] == "cloud-whisper"
    [call] = heard.calls
    assert call["path"] == "/v1/audio/transcriptions" and call["file"] == speech
    assert call["fields"]["model"] == "whisper-large" and call["fields"]["language"] == "en"
    decision = raw.parse().model_extra["sizewise"]
    assert decision["escalated"] and decision["score"] < decision["threshold"]


def test_a_failing_remote_model_leaves_the_local_transcript(gateway: GatewayServer, speech: bytes, servers):
    servers[1].fail = True
    _threshold(gateway, -0.0001)
    raw = _client(gateway).audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speech))
    assert raw.headers["x-sizewise-model"] == "whisper-tiny.en" and "report" in raw.parse().text.lower()
    decision = raw.parse().model_extra["sizewise"]
    assert decision["fallback_from"] == "cloud-whisper" and "HTTP 500" in decision["errors"][0]


def test_privacy_local_only_keeps_audio_off_the_remote_model(gateway: GatewayServer, speech: bytes, servers):
    settings = gateway.app.state.gateway.engine.settings
    _threshold(gateway, -0.0001)
    settings.privacy = "local-only"
    try:
        client = _client(gateway)
        raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speech))
        assert (
            raw.headers["x-sizewise-model"] == "whisper-tiny.en"
            and not raw.parse().model_extra["sizewise"]["escalated"]
        )
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.transcriptions.create(model="cloud-whisper", file=("a.wav", speech))
        assert caught.value.code == "privacy_local_only"
    finally:
        settings.privacy = "off"
    assert servers[1].calls == []


def test_a_chat_audio_part_reaches_the_text_model_as_its_transcript(gateway: GatewayServer, speech: bytes, servers):
    chat = servers[2]
    audio = {"data": base64.b64encode(speech).decode(), "format": "wav"}
    content = [{"type": "text", "text": "Do what the recording asks."}, {"type": "input_audio", "input_audio": audio}]
    answer = _client(gateway).chat.completions.create(
        model="sizewise", messages=[{"role": "user", "content": content}], max_tokens=8
    )
    [body] = chat.bodies
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "text"]  # the text model never receives audio
    assert "report" in parts[1]["text"].lower() and "input_audio" not in str(body)
    [note] = answer.model_extra["sizewise"]["transcribed"]
    assert note["model"] == "whisper-tiny.en" and note["part"] == "messages[0].content[1]"


def test_a_streamed_chat_hears_its_audio_first(gateway: GatewayServer, speech: bytes, servers):
    audio = {"data": base64.b64encode(speech).decode(), "format": "wav"}
    stream = _client(gateway).chat.completions.create(
        model="cloud-text",
        messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": audio}]}],
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "ok"
    [body] = servers[2].bodies
    assert body["stream"] and "friday" in body["messages"][0]["content"][0]["text"].lower()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_audio"),
        (b"%PDF-1.4 not audio at all", "unsupported_audio"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is no wave", "invalid_audio"),
    ],
    ids=["empty", "unsupported", "corrupt"],
)
def test_bad_audio_is_a_400_naming_the_problem(gateway: GatewayServer, data: bytes, code: str):
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gateway).audio.transcriptions.create(model="whisper-1", file=("a.wav", data))
    assert caught.value.code == code and caught.value.body["param"] == "file"


def test_audio_over_the_caps_is_refused(gateway: GatewayServer, speech: bytes):
    client = _client(gateway)
    with pytest.raises(openai.APIStatusError) as big:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", speech + b"\0" * 3_000_000))
    assert big.value.status_code == 413
    long = speak(" ".join([SENTENCE] * 8))  # about 40 s > max_seconds 30
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", long))
    assert caught.value.code == "audio_too_long"


def test_bad_chat_audio_and_unknown_models_are_4xx(gateway: GatewayServer, speech: bytes):
    client = _client(gateway)
    bad = [{"type": "input_audio", "input_audio": {"data": "%%%not base64", "format": "wav"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sizewise", messages=[{"role": "user", "content": bad}])
    assert caught.value.code == "invalid_audio" and "messages[0].content[0]" in caught.value.message
    odd = [{"type": "input_audio", "input_audio": {"data": base64.b64encode(speech).decode(), "format": "aiff"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sizewise", messages=[{"role": "user", "content": odd}])
    assert caught.value.code == "unsupported_audio"
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="cloud-text", file=("a.wav", speech))


def test_a_malformed_transcription_request_is_a_400(gateway: GatewayServer, speech: bytes):
    import httpx

    url = gateway.url + "/audio/transcriptions"
    as_json = httpx.post(url, json={"model": "whisper-1", "file": "x"})
    no_file = httpx.post(url, data={"model": "whisper-1"}, files={"other": ("a.txt", b"x")})
    no_model = httpx.post(url, files={"file": ("a.wav", speech)})
    bad_format = httpx.post(
        url, data={"model": "whisper-1", "response_format": "mp3"}, files={"file": ("a.wav", speech)}
    )
    bad_language = httpx.post(url, data={"model": "whisper-1", "language": "en; rm"}, files={"file": ("a.wav", speech)})
    bad_temp = httpx.post(url, data={"model": "whisper-1", "temperature": "hot"}, files={"file": ("a.wav", speech)})
    for response, param in [
        (as_json, None),
        (no_file, "file"),
        (no_model, "model"),
        (bad_format, "response_format"),
        (bad_temp, "temperature"),
        (bad_language, "language"),
    ]:
        assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text


def test_a_named_remote_speech_model_hears_alone(gateway: GatewayServer, speech: bytes, servers):
    client = _client(gateway)
    raw = client.audio.transcriptions.with_raw_response.create(model="cloud-whisper", file=("a.wav", speech))
    assert raw.headers["x-sizewise-model"] == "cloud-whisper" and raw.parse().text == "words from the remote model"
    with pytest.raises(openai.BadRequestError) as caught:  # checked here, never sent on
        client.audio.transcriptions.create(model="cloud-whisper", file=("a.txt", b"just text"))
    assert caught.value.code == "unsupported_audio"
    assert len(servers[1].calls) == 1


def test_audio_heard_again_is_not_transcribed_again(gateway: GatewayServer, speech: bytes):
    def cached() -> int:  # transcripts served from the cache (no longer on the open /healthz: it told others)
        engine = gateway.app.state.gateway.engine
        return int(engine.backend(engine.by_name["whisper-tiny.en"]).cached)

    audio = {"data": base64.b64encode(speech).decode(), "format": "wav"}
    turn = {"role": "user", "content": [{"type": "input_audio", "input_audio": audio}]}
    client = _client(gateway)
    client.chat.completions.create(model="cloud-text", messages=[turn])
    before = cached()
    history = [turn, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "And then?"}]
    answer = client.chat.completions.create(model="cloud-text", messages=history)
    assert (
        cached() == before + 1 and answer.model_extra["sizewise"]["transcribed"][0]["part"] == "messages[0].content[0]"
    )
