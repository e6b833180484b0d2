"""Local speech recognition: Whisper (a CTranslate2 model) run with faster-whisper.

The model loads on the first transcription, once, and every transcription runs in a worker thread so
the gateway's event loop keeps serving. Audio is checked before anything heavy touches it: a byte cap,
a container sniffed from its first bytes (only the formats OpenAI's transcription API takes, so FFmpeg
never guesses a playlist or image format from untrusted bytes), and a duration cap enforced while
decoding, so a tiny file that expands to hours of samples stops early. Every bad input is an
:class:`AudioError` with a one-line message; the gateway turns it into a 4xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.catalog.schema import ModelSpec, WhisperSettings
from sizewise.errors import SizewiseError

SAMPLE_RATE = 16_000
#: Transcripts kept per client for audio it sends again (a few KB each).
RECENT = 256
#: Leading bytes -> FFmpeg demuxer, for the containers OpenAI's transcription API accepts.
_MAGIC: list[tuple[int, bytes, str, str]] = [
    (0, b"RIFF", "wav", "wav"),
    (0, b"fLaC", "flac", "flac"),
    (0, b"OggS", "ogg", "ogg"),
    (0, b"ID3", "mp3", "mp3"),
    (4, b"ftyp", "mp4", "mp4"),
    (0, b"\x1a\x45\xdf\xa3", "matroska", "webm"),
]


class AudioError(SizewiseError):
    """Audio that cannot be transcribed: empty, too big, too long, corrupt or of an unsupported format."""

    def __init__(self, message: str, code: str, status: int = 400, param: str = "file") -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole: Ray hands a deployment's error to the gateway
        return type(self), (str(self), self.code, self.status, self.param)


@dataclass(frozen=True)
class Transcript:
    """What Whisper heard: the text, its mean token log-probability, and the audio's length."""

    text: str
    avg_logprob: float
    duration: float
    language: str
    model: str
    segments: list[dict[str, Any]] = field(default_factory=list)


def sniff_format(data: bytes) -> str:
    """The short name of ``data``'s container (wav, flac, ogg, mp3, mp4, webm); AudioError otherwise."""
    for offset, magic, _, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG audio frame without an ID3 tag
        return "mp3"
    raise AudioError("unsupported audio format: send flac, mp3, mp4, m4a, ogg, wav or webm", "unsupported_audio")


def decode(data: bytes, *, max_bytes: int, max_seconds: float) -> Any:
    """16 kHz mono float32 samples of ``data``; AudioError for anything that is not audio within the caps."""
    import av
    import numpy as np

    if not data:
        raise AudioError("the audio file is empty", "empty_audio")
    if len(data) > max_bytes:
        raise AudioError(f"the audio file is {len(data):,} bytes; the limit is {max_bytes:,}", "audio_too_large", 413)
    name = sniff_format(data)
    demuxer = next(d for _, _, d, n in _MAGIC if n == name)
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[Any] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", format=demuxer, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"the {name} file holds no audio stream", "invalid_audio")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            # Frame by frame, so the duration cap stops a long file before it is all in memory; None flushes.
            for frame in itertools.chain(container.decode(audio=0), [None]):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    total += samples.size
                    if total > limit:
                        raise AudioError(f"the audio is longer than {max_seconds:g} s", "audio_too_long")
                    chunks.append(samples)
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, IndexError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AudioError(f"cannot decode the {name} audio: {reason}", "invalid_audio") from None
    if total == 0:
        raise AudioError(f"the {name} file holds no audio samples", "empty_audio")
    return np.concatenate(chunks).astype(np.float32) / 32768.0


class SpeechBackend(Backend):
    """A Whisper model folder (``model.bin``, ``config.json``, tokenizer) behind ``transcribe``.

    Chat calls are refused (a speech model answers ``/v1/audio/transcriptions`` and transcribes the audio
    parts of chat requests); the constraint filters never route chat to it.
    """

    def __init__(self, spec: ModelSpec, settings: WhisperSettings, folder: Path | None) -> None:
        self.model = spec.name
        self.spec = spec
        self.settings = settings
        #: The model folder; None: the embedded one, located and sha256-checked when first loaded.
        self.folder = folder
        self._model: Any = None
        self._lock = threading.Lock()
        self.loads = 0
        #: Recent transcripts per client (its API key's name; None: keys off, one client), each by the audio's
        #: sha256 and the options: a conversation re-sends its earlier audio parts every turn, and they are heard
        #: once. Per client, because a hit answers at once: shared, another client's fast answer (or a count of
        #: hits) would tell it that someone sent the same clip recently; and one client's clips never evict
        #: another's. Clients are the configured keys, so the caches are bounded.
        self._recent: dict[str | None, OrderedDict[tuple[str, str | None, str | None, float], Transcript]] = {}
        #: Transcripts served from the caches (for tests; never on an open endpoint).
        self.cached = 0

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                if self.folder is None:
                    from sizewise.catalog import embedded

                    self.folder = embedded.model_path(str(self.settings.embedded)).parent
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder; never ask the Hub for anything
                from faster_whisper import WhisperModel

                threads = self.settings.cpu_threads or min(2, os.cpu_count() or 1)
                self._model = WhisperModel(
                    str(self.folder), device="cpu", compute_type=self.settings.compute_type, cpu_threads=threads
                )
                self.loads += 1
        return self._model

    def load(self) -> None:
        """Load the model now (blocking), for ``serve --warm``."""
        self._load()

    @property
    def english_only(self) -> bool:
        """Whether the model knows English only (``*.en``): other languages go to a remote model."""
        return self.spec.name.endswith(".en") or self.settings.embedded == "whisper"

    def transcribe_sync(
        self, data: bytes, language: str | None = None, prompt: str | None = None, temperature: float = 0.0
    ) -> Transcript:
        """Decode and transcribe ``data`` in the calling thread."""
        audio = decode(data, max_bytes=self.settings.max_bytes, max_seconds=self.settings.max_seconds)
        model = self._load()
        try:
            segments, info = model.transcribe(
                audio,
                language=language,
                initial_prompt=prompt or None,
                temperature=temperature,
                beam_size=self.settings.beam_size,
                condition_on_previous_text=False,  # a hallucinated segment must not seed the next one
            )
        except ValueError as error:  # an unknown language code (its message lists all 99 known ones)
            reason = str(error).split(" (")[0]
            raise AudioError(
                f"{reason}; use an ISO-639-1 code such as 'en'", "invalid_language", param="language"
            ) from None
        parts = [
            {
                "id": i,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "avg_logprob": s.avg_logprob,
                "no_speech_prob": s.no_speech_prob,
                "tokens": len(s.tokens),
            }
            for i, s in enumerate(segments)
        ]
        tokens = sum(max(p["tokens"], 1) for p in parts)
        # The transcript's confidence: segment log-probabilities weighted by their tokens (an empty one is -inf).
        avg = sum(p["avg_logprob"] * max(p["tokens"], 1) for p in parts) / tokens if parts else float("-inf")
        text = "".join(p["text"] for p in parts).strip()
        return Transcript(text, avg, float(info.duration), info.language, self.model, parts)

    async def transcribe(
        self,
        data: bytes,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        *,
        client: str | None = None,
    ) -> Transcript:
        """:meth:`transcribe_sync` in a worker thread (decoding included: it is CPU work too), or a transcript of
        the same audio with the same options that the same ``client`` (an API key's name) had recently."""
        key = (hashlib.sha256(data).hexdigest(), language, prompt, temperature)
        recent = self._recent.setdefault(client, OrderedDict())
        if (hit := recent.get(key)) is not None:
            recent.move_to_end(key)
            self.cached += 1
            return hit
        transcript = await asyncio.to_thread(self.transcribe_sync, data, language, prompt, temperature)
        recent[key] = transcript
        if len(recent) > RECENT:
            recent.popitem(last=False)
        return transcript

    async def complete(self, request: ChatRequest) -> ChatResult:
        raise BackendError(f"{self.model} is a speech model: it transcribes audio, it does not chat", retryable=False)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise BackendError(f"{self.model} is a speech model: it transcribes audio, it does not chat", retryable=False)
        yield  # pragma: no cover - makes this an async generator

    def state(self) -> dict[str, Any]:
        """For ``/healthz`` (open to anyone): whether the model is loaded. No cache count: a caller watching it
        while sending a clip would learn whether someone else had sent that clip."""
        return {"kind": "speech", "loaded": self._model is not None, "loads": self.loads}


def speech_backend(spec: ModelSpec, settings: Any, resolve: Any) -> SpeechBackend:
    """The backend of a ``backend: whisper`` entry: the embedded tiny.en or a model folder (``path``)."""
    from sizewise.errors import ConfigError

    assert isinstance(settings, WhisperSettings)
    if settings.path is None:  # embedded: hashing 75 MB waits for the first transcription
        return SpeechBackend(spec, settings, folder=None)
    folder = Path(resolve(settings.path))
    if not (folder / "model.bin").is_file():
        raise ConfigError(f"model {spec.name!r}: {folder} is not a CTranslate2 Whisper folder (no model.bin)")
    return SpeechBackend(spec, settings, folder=folder)
