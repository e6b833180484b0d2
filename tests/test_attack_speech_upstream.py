"""Attacks by a broken remote speech model on ``POST /v1/audio/transcriptions``: the gateway passes a remote
answer on, but never as a type a browser would run (HTML, SVG, JavaScript) on the gateway's origin, where the
dashboard and its Basic-auth key live; a form any web page can post would make that a stored script.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fakes import GatewayServer, ThreadedServer, send_until_gone

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "  # sniffed as WAV: a named remote model gets it unheard
SCRIPT = b"<html><script>fetch('/dashboard/data').then(r => r.text()).then(alert)</script></html>"


class HostileSpeech(ThreadedServer):
    """Answers every transcription with ``body`` under the content type ``kind``; ``endless``: a JSON text
    that never ends (1 MiB chunks as fast as the gateway reads them, until it hangs up)."""

    def __init__(self) -> None:
        self.kind, self.body, self.endless, self.sent = "application/json", b'{"text": "hi"}', False, 0
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if self.endless:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send_until_gone(receive, send, 1 << 30, self._count)  # 1 GiB at most: a reader of it all ends
            return
        headers = [(b"content-type", self.kind.encode()), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})

    def _count(self, size: int) -> None:
        self.sent += size


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[GatewayServer, HostileSpeech]]:
    with HostileSpeech() as hostile:
        speech = {"kind": "speech", "modalities": ["audio"], "context_window": 448, "location": "remote"}
        settings = {"base_url": hostile.base_url, "model": "whisper-large", "timeout_s": 5}
        catalog = {
            "models": [
                {"name": "cloud-whisper", **speech, "backend": "openai", "settings": settings},
                {"name": "text", "context_window": 8192, "backend": "openai", "settings": settings},
            ],
            "gateway": {"log_url": "none"},
        }
        with GatewayServer(catalog) as gateway:
            yield gateway, hostile


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("text/html; charset=utf-8", SCRIPT, "text/plain"),
        ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "text/plain"),
        ("application/javascript", b"alert(1)", "text/plain"),
        ("text/plain; charset=utf-8", b"hello there\n", "text/plain"),
        ("application/json", b'{"text": "hello"}', "application/json"),
    ],
    ids=["html", "svg", "javascript", "text", "json"],
)
def test_a_remote_answer_is_never_served_as_active_content(
    servers: tuple[GatewayServer, HostileSpeech], kind: str, body: bytes, expected: str
) -> None:
    gateway, hostile = servers
    hostile.kind, hostile.body = kind, body
    response = httpx.post(
        gateway.url + "/audio/transcriptions", data={"model": "cloud-whisper"}, files={"file": ("a.wav", WAV)}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == expected
    assert response.headers["x-content-type-options"] == "nosniff"
    if expected == "text/plain":  # the words stay as the remote model sent them
        assert response.content == body


def test_an_endless_remote_answer_is_cut_off(servers: tuple[GatewayServer, HostileSpeech]) -> None:
    """A broken upstream's answer is read up to a cap, never whole into memory: 502 naming the model."""
    gateway, hostile = servers
    hostile.endless, hostile.sent = True, 0
    try:
        response = httpx.post(
            gateway.url + "/audio/transcriptions",
            data={"model": "cloud-whisper"},
            files={"file": ("a.wav", WAV)},
            timeout=120,
        )
    finally:
        hostile.endless = False
    assert response.status_code == 502 and "cloud-whisper" in response.json()["error"]["message"]
    assert "larger than" in response.json()["error"]["message"]
    assert hostile.sent < 256 << 20  # the gateway hung up early (what is in flight on loopback at most)


@pytest.mark.parametrize("body", [b'{"text": null}', b'{"text": {"a": 1}}', b"[1, 2]", b'{"words": "hi"}'])
def test_a_json_answer_without_text_is_a_502(servers: tuple[GatewayServer, HostileSpeech], body: bytes) -> None:
    gateway, hostile = servers
    hostile.kind, hostile.body = "application/json", body
    response = httpx.post(
        gateway.url + "/audio/transcriptions", data={"model": "cloud-whisper"}, files={"file": ("a.wav", WAV)}
    )
    assert response.status_code == 502 and "cloud-whisper" in response.json()["error"]["message"], response.text
