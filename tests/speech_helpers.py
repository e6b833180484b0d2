"""Speech made with espeak-ng, and a remote transcription upstream on 127.0.0.1 that records what it hears."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from fakes import ThreadedServer

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")


def speak(text: str, *, voice: str = "en-us", speed: int = 150) -> bytes:
    """``text`` spoken by espeak-ng, as the bytes of a WAV file (22.05 kHz mono)."""
    assert ESPEAK is not None
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "speech.wav"
        subprocess.run([ESPEAK, "-v", voice, "-s", str(speed), "-w", str(out), text], check=True, capture_output=True)
        return out.read_bytes()


class TranscriptionUpstream(ThreadedServer):
    """``POST /v1/audio/transcriptions`` answering ``{"text": text}``; ``fail`` makes it answer 500.

    ``calls`` holds each request's form fields and the file's bytes, so a test sees what really left the gateway.
    """

    def __init__(self, text: str = "words from the remote model") -> None:
        self.text = text
        self.fail = False
        self.calls: list[dict[str, Any]] = []
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        form = await request.form()
        upload = form.get("file")
        data = await upload.read() if hasattr(upload, "read") else b""
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        self.calls.append({"path": scope["path"], "fields": fields, "file": data})
        status, body = (500, {"error": {"message": "overloaded"}}) if self.fail else (200, {"text": self.text})
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
