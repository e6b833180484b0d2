"""Remote transcriptions are paid from the client's budget, in the chat path's ledger: espeak-ng speech,
the embedded Whisper tiny.en (always unsure here, so every clip escalates) and a recording remote speech
model priced per minute, through the live gateway with the openai client. Each test spends under its own
API key, whose daily limit holds a whole number of clips."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fakes import GatewayServer
from recording_upstream import RecordingUpstream
from speech_helpers import TranscriptionUpstream, needs_espeak, speak

pytestmark = [needs_espeak, pytest.mark.slow]

PRICE = 0.6  # USD per minute of audio
#: Each test's key and how many clips its daily limit holds (with half a clip to spare).
KEYS = {"seq": 3, "named": 1, "parallel": 3, "chat": 1, "free": 0, "fail": 1}


@pytest.fixture(scope="module")
def speech() -> bytes:
    return speak("Please send the quarterly report to the finance team by Friday.")


@pytest.fixture(scope="module")
def clip_cost(speech: bytes) -> float:
    from sizewise.backends.speech import SAMPLE_RATE, decode

    return PRICE * decode(speech, max_bytes=10**7, max_seconds=60).size / SAMPLE_RATE / 60


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, clip_cost: float) -> Iterator[tuple[GatewayServer, Any, Any]]:
    keys = [
        {"name": name, "sha256": hashlib.sha256(name.encode()).hexdigest(), "daily_budget_usd": (n + 0.5) * clip_cost}
        for name, n in KEYS.items()
    ]
    with TranscriptionUpstream() as heard, RecordingUpstream() as chat:
        whisper = {"embedded": "whisper", "max_seconds": 30, "escalate_below": -0.0001}  # always unsure
        remote = {"base_url": heard.base_url, "model": "whisper-large", "timeout_s": 10}
        catalog = {
            "models": [
                {"name": "whisper-tiny.en", "kind": "speech", "modalities": ["audio"], "context_window": 448}
                | {"backend": "whisper", "settings": whisper},
                {"name": "cloud-whisper", "kind": "speech", "modalities": ["audio"], "context_window": 448}
                | {"location": "remote", "backend": "openai", "settings": remote, "price_per_minute": PRICE},
                {"name": "cloud-text", "context_window": 8192, "params_b": 70, "location": "remote"}
                | {"backend": "openai", "settings": {"base_url": chat.base_url, "model": "text-70b", "timeout_s": 10}},
            ],
            "gateway": {"log_url": f"sqlite:///{tmp_path_factory.mktemp('log')}/log.sqlite", "api_keys": keys},
        }
        with GatewayServer(catalog) as gateway:
            yield gateway, heard, chat


def _client(gw: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)


def _spent(gw: GatewayServer, key: str) -> float:
    """The key's settled spend today, read from the budget ledger itself."""
    budget = next(f for f in gw.app.state.gateway.engine.filters if f.name == "budget")
    [limit] = budget.limits_for(key)
    return float(budget.ledger.usage(limit))


def test_a_budget_for_n_clips_lets_n_escalations_through(servers, speech: bytes, clip_cost: float) -> None:
    gw, heard, _ = servers
    heard.calls.clear()
    client = _client(gw, "seq")
    models = []
    for _ in range(KEYS["seq"] + 1):
        raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speech))
        models.append(raw.headers["x-sizewise-model"])
    assert models == ["cloud-whisper"] * KEYS["seq"] + ["whisper-tiny.en"]
    assert len(heard.calls) == KEYS["seq"]
    last = raw.parse()
    assert "report" in last.text.lower()  # the local transcript answers the one the budget cannot pay for
    decision = last.model_extra["sizewise"]
    assert not decision["escalated"] and "skipped" in decision["reason"] and "spend limit" in decision["reason"]
    rows = [row for row in gw.rows() if row["api_key"] == "seq"]
    assert [round(row["cost"], 9) for row in rows] == [round(clip_cost, 9)] * KEYS["seq"] + [0.0]
    assert _spent(gw, "seq") == pytest.approx(KEYS["seq"] * clip_cost)


def test_a_named_remote_model_over_budget_is_a_429(servers, speech: bytes, clip_cost: float) -> None:
    gw, heard, _ = servers
    """No local transcript to fall back on: the clip is decoded for its price, and over budget it is refused."""
    heard.calls.clear()
    client = _client(gw, "named")
    assert client.audio.transcriptions.create(model="cloud-whisper", file=("a.wav", speech)).text
    with pytest.raises(openai.RateLimitError) as caught:
        client.audio.transcriptions.create(model="cloud-whisper", file=("a.wav", speech))
    assert caught.value.status_code == 429 and caught.value.body["code"] == "budget_exceeded"
    # Counted at the file's own rate here (22.05 kHz), at 16 kHz after the local decode: the same to 1e-4.
    assert len(heard.calls) == 1 and _spent(gw, "named") == pytest.approx(clip_cost, rel=1e-4)
    costs = [row["cost"] for row in gw.rows() if row["api_key"] == "named"]
    assert costs == [pytest.approx(clip_cost, rel=1e-4), 0.0]


def test_parallel_escalations_never_overspend(servers, speech: bytes, clip_cost: float) -> None:
    gw, heard, _ = servers
    heard.calls.clear()

    async def burst() -> list[str]:
        client = openai.AsyncOpenAI(base_url=gw.url, api_key="parallel", max_retries=0, timeout=120)
        raws = await asyncio.gather(
            *(
                client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speech))
                for _ in range(10)
            )
        )
        return [raw.headers["x-sizewise-model"] for raw in raws]

    models = asyncio.run(burst())
    assert models.count("cloud-whisper") == KEYS["parallel"] and len(heard.calls) == KEYS["parallel"]
    assert models.count("whisper-tiny.en") == 10 - KEYS["parallel"]
    assert _spent(gw, "parallel") == pytest.approx(KEYS["parallel"] * clip_cost)


def test_a_chat_audio_part_escalation_is_paid_and_noted(servers, speech: bytes, clip_cost: float) -> None:
    gw, heard, _ = servers
    heard.calls.clear()
    audio = {"data": base64.b64encode(speech).decode(), "format": "wav"}
    content = [{"type": "text", "text": "Do what it asks."}, {"type": "input_audio", "input_audio": audio}]
    messages = [{"role": "user", "content": content}]
    notes = []
    for _ in range(2):
        answer = _client(gw, "chat").chat.completions.create(model="sizewise", messages=messages, max_tokens=4)
        notes += answer.model_extra["sizewise"]["transcribed"]
    assert [n["model"] for n in notes] == ["cloud-whisper", "whisper-tiny.en"] and len(heard.calls) == 1
    assert notes[0]["cost"] == pytest.approx(clip_cost) and "spend limit" in notes[1]["budget"]["reason"]


def test_a_free_remote_model_is_never_refused(servers, speech: bytes) -> None:
    """price_per_minute 0 (the default): nothing is reserved, so even a spent budget lets it hear."""
    gw, heard, _ = servers
    heard.calls.clear()
    spec = gw.app.state.gateway.engine.by_name["cloud-whisper"]
    spec.price_per_minute = 0.0
    try:
        raw = _client(gw, "free").audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=("a.wav", speech)
        )
        named = _client(gw, "free").audio.transcriptions.create(model="cloud-whisper", file=("a.wav", speech))
    finally:
        spec.price_per_minute = PRICE
    assert raw.headers["x-sizewise-model"] == "cloud-whisper" and named.text == "words from the remote model"
    assert len(heard.calls) == 2 and _spent(gw, "free") == 0.0
    assert _rows_in_ledger(gw, "free") == 0  # no reservation written at all


def _rows_in_ledger(gw: GatewayServer, key: str) -> int:
    from sqlalchemy import func, select

    from sizewise.policy.constraints.budget_ledger import ledger_table

    budget = next(f for f in gw.app.state.gateway.engine.filters if f.name == "budget")
    with budget.ledger.engine.connect() as connection:
        query = select(func.count()).select_from(ledger_table).where(ledger_table.c.api_key == key)
        return int(connection.execute(query).scalar_one())


def test_corrupt_audio_priced_for_a_remote_model_is_a_400(servers) -> None:
    """The clip is decoded for its price before anything leaves: corrupt audio is the client's error."""
    gw, heard, _ = servers
    heard.calls.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gw, "named").audio.transcriptions.create(model="cloud-whisper", file=("a.wav", b"RIFF" + b"\0" * 200))
    assert caught.value.body["code"] in ("invalid_audio", "empty_audio") and heard.calls == []


def test_a_failed_remote_call_costs_nothing_and_frees_its_reservation(servers, speech: bytes) -> None:
    gw, heard, _ = servers
    heard.calls.clear()
    client = _client(gw, "fail")
    heard.fail = True
    try:
        first = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speech))
    finally:
        heard.fail = False
    assert first.headers["x-sizewise-model"] == "whisper-tiny.en" and _spent(gw, "fail") == 0.0
    # Room for one clip: held by the failed call, this one would not fit.
    second = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", speech))
    assert second.headers["x-sizewise-model"] == "cloud-whisper" and len(heard.calls) == 2
