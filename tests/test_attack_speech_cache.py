"""The local speech model's cache of recent transcripts must not tell one client what another sent.

A hit answers at once, and ``/healthz`` (open to anyone) used to count hits: a client could send a clip and watch
the counter, or time its own answer, to learn whether someone else had sent the same clip recently. A live
gateway on 127.0.0.1 with two API keys, the embedded Whisper tiny.en and espeak-ng speech, the official client.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from fakes import GatewayServer
from recording_upstream import RecordingUpstream
from sizewise.gateway.auth import hash_key
from speech_helpers import needs_espeak, speak

pytestmark = [needs_espeak, pytest.mark.slow]

KEYS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with RecordingUpstream() as chat, GatewayServer(_catalog(chat.base_url, tmp_path_factory)) as gw:
        _heard(gw, "alice", speak("Warm up the model."))  # loaded once, before any test compares anything
        yield gw


def _catalog(chat_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    whisper = {"embedded": "whisper", "max_seconds": 30, "max_bytes": 3_000_000}
    text = {"base_url": chat_url, "model": "text-70b", "timeout_s": 10}
    return {
        "models": [
            {
                "name": "whisper-tiny.en",
                "kind": "speech",
                "modalities": ["audio"],
                "context_window": 448,
                "backend": "whisper",
                "settings": whisper,
            },
            {"name": "text", "context_window": 8192, "location": "remote", "backend": "openai", "settings": text},
        ],
        "gateway": {
            "log_url": f"sqlite:///{tmp_path_factory.mktemp('log')}/log.sqlite",
            "api_keys": [{"name": name, "sha256": hash_key(key)} for name, key in KEYS.items()],
        },
    }


def _heard(gateway: GatewayServer, who: str, clip: bytes) -> dict[str, Any]:
    """``who`` transcribes ``clip`` with the openai client: the answer's ``sizewise`` object."""
    client = openai.OpenAI(base_url=gateway.url, api_key=KEYS[who], max_retries=0, timeout=60)
    answer = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", clip))
    assert answer.text
    return dict(answer.model_extra["sizewise"])


def _hits(gateway: GatewayServer) -> int:
    engine = gateway.app.state.gateway.engine
    return int(engine.backend(engine.by_name["whisper-tiny.en"]).cached)


def _health(gateway: GatewayServer) -> Any:
    return httpx.get(gateway.url.removesuffix("/v1") + "/healthz").json()


def test_healthz_does_not_count_transcripts_heard_again(gateway: GatewayServer) -> None:
    clip = speak("The merger closes on Tuesday.")
    before, hits = _health(gateway), _hits(gateway)
    _heard(gateway, "alice", clip)
    _heard(gateway, "alice", clip)  # her own clip again: served from her cache
    assert _hits(gateway) == hits + 1
    assert _health(gateway) == before  # nothing an unauthenticated caller can watch moved


def test_another_key_never_gets_a_cached_transcript(gateway: GatewayServer) -> None:
    clip = speak("Transfer the funds to the new account.")
    first = _heard(gateway, "alice", clip)
    hits = _hits(gateway)
    bob = _heard(gateway, "bob", clip)  # the same bytes from another client: heard afresh
    bob_hits = _hits(gateway) - hits
    again = _heard(gateway, "alice", clip)  # while alice's own copy is still cached
    # What bob could time: his answer took a transcription's time, as alice's first did; her hit took none.
    fresh, hit = first["steps"][0]["latency_s"], again["steps"][0]["latency_s"]
    assert bob["steps"][0]["latency_s"] > fresh / 5 > 20 * hit, (first, bob, again)
    assert (bob_hits, _hits(gateway)) == (0, hits + 1)


def test_audio_parts_of_chat_are_cached_per_key_too(gateway: GatewayServer) -> None:
    clip = speak("Meet me at the station.")
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip).decode(), "format": "wav"}}
    history = [{"role": "user", "content": [part]}]
    hits = _hits(gateway)
    for who in ("alice", "bob", "bob"):
        client = openai.OpenAI(base_url=gateway.url, api_key=KEYS[who], max_retries=0, timeout=60)
        answer = client.chat.completions.create(model="text", messages=history)  # type: ignore[arg-type]
        assert answer.model_extra["sizewise"]["transcribed"][0]["part"] == "messages[0].content[0]"
    assert _hits(gateway) == hits + 1  # bob's second turn only
