"""Audio checks before any model runs (no model is loaded here), and the speech benchmark's word error rate."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sizewise.backends.speech import AudioError, decode, sniff_format
from speech_helpers import needs_espeak, speak

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._modalities_speech import auc, calibrate, word_errors, words

MB = 1 << 20


def _flac_silence(seconds: int, rate: int = 16_000) -> bytes:
    """A FLAC file of ``seconds`` of silence: a few hundred bytes per second, many samples once decoded."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate)
        stream.layout = "mono"
        for _ in range(seconds):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, rate), dtype=np.int16), format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_audio"),
        (b"hello, this is plain text", "unsupported_audio"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "unsupported_audio"),
        (b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", "unsupported_audio"),  # a playlist FFmpeg would follow
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 40, "invalid_audio"),
        (b"OggS" + b"\0" * 100, "invalid_audio"),
    ],
    ids=["empty", "text", "png", "playlist", "corrupt-wav", "corrupt-ogg"],
)
def test_bad_audio_is_one_clear_error(data: bytes, code: str) -> None:
    with pytest.raises(AudioError) as caught:
        decode(data, max_bytes=MB, max_seconds=60)
    assert caught.value.code == code and caught.value.status == 400
    assert "\n" not in str(caught.value)


def test_a_file_over_the_byte_cap_is_refused_before_decoding() -> None:
    with pytest.raises(AudioError) as caught:
        decode(b"RIFF" + b"\0" * 5000, max_bytes=4096, max_seconds=60)
    assert caught.value.status == 413 and caught.value.code == "audio_too_large"


def test_the_duration_cap_stops_a_small_file_that_expands_to_hours(tmp_path: Path) -> None:
    hour = tmp_path / "hour.flac"
    hour.write_bytes(_flac_silence(3600))  # under 1 MB; 115 MB of 16-bit samples once decoded
    assert hour.stat().st_size < MB and sniff_format(hour.read_bytes()) == "flac"
    # A fresh process, so its peak memory is this decode's alone.
    code = (
        "import resource, sys; from sizewise.backends.speech import AudioError, decode\n"
        "data = open(sys.argv[1], 'rb').read(); before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    decode(data, max_bytes=2 << 20, max_seconds=60)\n"
        "except AudioError as e:\n    print(e.code, str(e))\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(hour)], capture_output=True, text=True, check=True)
    said, grown_mb = done.stdout.splitlines()
    assert said == "audio_too_long the audio is longer than 60 s"
    assert int(grown_mb) < 30  # about a minute of samples, never the hour


def test_audio_under_the_duration_cap_decodes_whole() -> None:
    assert decode(_flac_silence(90), max_bytes=MB, max_seconds=100).shape == (90 * 16_000,)


@needs_espeak
def test_speech_decodes_to_16khz_mono_floats() -> None:
    samples = decode(speak("one two three"), max_bytes=MB, max_seconds=60)
    assert samples.dtype == np.float32 and 0.5 * 16_000 < samples.size < 5 * 16_000
    assert 0 < np.abs(samples).max() <= 1.0


def test_word_error_rate_is_the_word_levenshtein_distance() -> None:
    assert words("Friday, the 13th -- well-known!") == ["friday", "the", "13th", "well", "known"]
    assert word_errors("the cat sat on the mat", "the cat sat on the mat.") == (0, 6)
    assert word_errors("the cat sat on the mat", "the bat sat on mat") == (2, 6)  # one substitution, one deletion
    assert word_errors("a b", "a x b y") == (2, 2)  # two insertions: the rate can pass 1
    assert word_errors("a b c", "") == (3, 3)


def test_calibration_picks_the_threshold_that_separates_bad_transcripts() -> None:
    scores = np.array([-0.2, -0.3, -0.35, -0.9, -1.1, -1.4])
    bad = np.array([False, False, False, True, True, True])
    threshold = calibrate(scores, bad)
    assert -0.9 < threshold <= -0.35 + 0.01 and auc(scores, bad) == 1.0
    assert auc(scores, ~bad) == 0.0 and auc(scores, np.zeros(6, bool)) is None


@needs_espeak
def test_an_unknown_language_is_a_one_line_error_naming_the_field() -> None:
    """A multilingual model refuses an unknown code with a ValueError listing all 99 codes: one line instead."""
    from sizewise.backends.speech import SpeechBackend
    from sizewise.catalog.schema import ModelSpec, WhisperSettings

    class Multilingual:
        def transcribe(self, *_: object, language: str | None = None, **__: object) -> None:
            raise ValueError(f"'{language}' is not a valid language code (accepted language codes: af, am, ...)")

    spec = ModelSpec(name="whisper-base", kind="speech", modalities=["audio"], context_window=448, backend="whisper")
    backend = SpeechBackend(spec, WhisperSettings(path="unused"), folder=Path("unused"))
    backend._model = Multilingual()  # the real model is not needed to check the error's shape
    with pytest.raises(AudioError) as caught:
        backend.transcribe_sync(speak("hello"), language="xx")
    assert caught.value.code == "invalid_language" and caught.value.param == "language"
    assert str(caught.value) == "'xx' is not a valid language code; use an ISO-639-1 code such as 'en'"


def test_models_verify_hashes_the_whisper_model_and_does_not_chat_with_it() -> None:
    from typer.testing import CliRunner

    from sizewise.cli.main import app

    result = CliRunner().invoke(app, ["models", "verify", "whisper", "--generate"])
    assert result.exit_code == 0, result.output
    assert "whisper sha256 ok" in result.output and "model.bin" in result.output and "generate" not in result.output


@needs_espeak
def test_a_corrupt_whisper_model_is_a_503_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded model.bin is hashed before it loads: a mismatch refuses the model with one line."""
    import asyncio
    from dataclasses import replace
    from types import SimpleNamespace

    from sizewise.backends.speech import SpeechBackend
    from sizewise.catalog import embedded
    from sizewise.catalog.schema import GatewaySettings, ModelSpec, WhisperSettings
    from sizewise.core.decision import RequestRejected
    from sizewise.serve.speech import hear

    monkeypatch.setitem(embedded.EMBEDDED, "whisper", replace(embedded.EMBEDDED["whisper"], sha256="0" * 64))
    spec = ModelSpec(name="whisper-tiny.en", kind="speech", context_window=448, backend="whisper", modalities=["audio"])
    backend = SpeechBackend(spec, WhisperSettings(embedded="whisper"), folder=None)
    engine = SimpleNamespace(models=[spec], aliases={}, settings=GatewaySettings(), backend=lambda _: backend)
    with pytest.raises(RequestRejected) as caught:
        asyncio.run(hear(engine, speak("hello")))
    assert caught.value.status == 503 and caught.value.code == "model_unavailable"
    assert "expected 0000" in caught.value.message and backend.loads == 0
