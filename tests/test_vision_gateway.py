"""Images through the live gateway with the openai client: the local classifier answers what it can name
when sure; open questions and unsure photos go to a (recording) multimodal upstream; a text-only model never
receives an image; bad images get a 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fakes import GatewayServer, ThreadedServer, fake_model
from recording_upstream import RecordingUpstream
from vision_photos import data_url, image_message, photo

pytestmark = pytest.mark.slow

VISION = {
    "name": "efficientnet-lite0",
    "kind": "vision",
    "modalities": ["image"],
    "context_window": 1,
    "backend": "onnx",
    "settings": {"embedded": "vision", "threshold": 0.6, "max_image_bytes": 400_000, "max_images": 3},
}


def catalog(upstream: str, *, seeing: bool = True, **vision: Any) -> dict[str, Any]:
    models = [
        {**VISION, "settings": {**VISION["settings"], **vision}},
        fake_model("text-only", "text-up", 1.0, upstream),
    ]
    if seeing:
        models.append(fake_model("sees", "sees-up", 8.0, upstream, kind="multimodal", modalities=["text", "image"]))
    return {"models": models, "gateway": {"log_url": "none"}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream: RecordingUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(catalog(upstream.base_url)) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="none", max_retries=0)


@pytest.fixture(autouse=True)
def _clean(upstream: RecordingUpstream) -> None:
    upstream.bodies.clear()


COFFEE = data_url(photo("coffee"))


def _sizewise(completion: Any) -> dict[str, Any]:
    return completion.model_extra["sizewise"]


def _has_image(body: dict[str, Any]) -> bool:
    return any(
        isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
        for m in body["messages"]
    )


def test_a_classifiable_photo_is_answered_by_the_local_classifier(client: openai.OpenAI, upstream) -> None:
    answer = client.chat.completions.create(
        model="sizewise", messages=image_message("What is in this picture?", COFFEE)
    )
    info = _sizewise(answer)
    assert "espresso" in answer.choices[0].message.content
    assert info["model"] == "efficientnet-lite0" and info["vision"]["answered"] is True
    assert info["vision"]["top5"][0]["label"] == "espresso" and len(info["vision"]["top5"]) == 5
    assert info["score"] >= info["threshold"] == 0.6
    assert upstream.bodies == []  # no chat model was called


def test_the_classifier_answers_a_stream_too(client: openai.OpenAI, upstream) -> None:
    stream = client.chat.completions.create(
        model="sizewise", messages=image_message("what is this?", COFFEE), stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert "espresso" in text and upstream.bodies == []


def test_an_open_question_goes_to_the_model_that_sees(client: openai.OpenAI, upstream) -> None:
    answer = client.chat.completions.create(model="sizewise", messages=image_message("What does the sign say?", COFFEE))
    info = _sizewise(answer)
    assert info["model"] == "sees" and info["vision"]["answered"] is False
    assert "sign" in info["vision"]["reason"]
    assert upstream.models() == ["sees-up"] and _has_image(upstream.bodies[0])


def test_an_unsure_classification_goes_to_the_model_that_sees(client: openai.OpenAI, upstream) -> None:
    hopper = data_url(photo("grace_hopper"))  # military uniform ~0.2: below the threshold
    answer = client.chat.completions.create(model="sizewise", messages=image_message("What is this?", hopper))
    info = _sizewise(answer)
    assert info["model"] == "sees" and "threshold" in info["vision"]["reason"]
    assert info["vision"]["top5"][0]["score"] < 0.6
    assert upstream.models() == ["sees-up"]


def test_is_it_a_cat_or_a_dog_sums_the_breeds(client: openai.OpenAI, upstream) -> None:
    chelsea = data_url(photo("chelsea"))  # tiger cat 0.39, Egyptian cat 0.36, tabby 0.17: each below 0.6
    answer = client.chat.completions.create(
        model="sizewise", messages=image_message("Is this a cat or a dog?", chelsea)
    )
    info = _sizewise(answer)["vision"]
    assert answer.choices[0].message.content.startswith("This looks like a cat (")
    assert info["choices"]["cat"] > 0.6 > info["top5"][0]["score"] and info["choices"]["dog"] < 0.1
    unknown = client.chat.completions.create(
        model="sizewise", messages=image_message("Is it a latte or a mocha?", COFFEE)
    )
    assert _sizewise(unknown)["model"] == "sees" and "no such class" in _sizewise(unknown)["vision"]["reason"]
    assert upstream.models() == ["sees-up"]


def test_naming_the_vision_model_always_classifies(client: openai.OpenAI, upstream) -> None:
    hopper = data_url(photo("grace_hopper"))
    answer = client.chat.completions.create(model="efficientnet-lite0", messages=image_message("hm", hopper))
    labels = [label["label"] for label in _sizewise(answer)["vision"]["top5"]]
    assert "military uniform" in labels and upstream.bodies == []


def test_naming_a_chat_model_skips_the_classifier(client: openai.OpenAI, upstream) -> None:
    client.chat.completions.create(model="sees", messages=image_message("What is this?", COFFEE))
    assert upstream.models() == ["sees-up"]


def test_a_text_only_model_never_receives_an_image(upstream, tmp_path) -> None:
    spec = {**catalog(upstream.base_url, seeing=False), "gateway": {"log_url": f"sqlite:///{tmp_path}/log.sqlite"}}
    with GatewayServer(spec) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="none", max_retries=0)
        answered = client.chat.completions.create(model="sizewise", messages=image_message("What is this?", COFFEE))
        assert _sizewise(answered)["model"] == "efficientnet-lite0"
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="sizewise", messages=image_message("Describe the mood", COFFEE))
        assert caught.value.body["code"] == "unsupported_modality"
        text = client.chat.completions.create(model="sizewise", messages=[{"role": "user", "content": "hi"}])
        assert _sizewise(text)["model"] == "text-only"
        rows = gw.rows()
    assert [row["model"] for row in rows] == ["efficientnet-lite0", None, "text-only"]  # None: the 400
    assert upstream.models() == ["text-up"] and not _has_image(upstream.bodies[0])


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels with one tiny compressed row: a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _tiff() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "orange").save(buffer, "TIFF")
    return buffer.getvalue()


BAD = {
    "corrupt": (data_url(photo("coffee")[:600] + b"\0" * 600), 400, "invalid_image"),
    "not an image": (data_url(b"hello, I am text" * 8, "image/png"), 400, "unsupported_image_format"),
    "tiff": (data_url(_tiff(), "image/tiff"), 400, "unsupported_image_format"),
    "bomb": (data_url(_png_header(100_000, 100_000), "image/png"), 413, "image_too_large"),
    "too many bytes": (data_url(photo("astronaut", "PNG"), "image/png"), 413, "image_too_large"),
    "bad base64": ("data:image/png;base64,%%%notbase64", 400, "invalid_image"),
    "not a data url": ("file:///etc/passwd", 400, "invalid_image"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("question", ["What is this?", "What does the sign say?"])
def test_a_bad_image_gets_a_clear_4xx(client: openai.OpenAI, upstream, case: str, question: str) -> None:
    url, status, code = BAD[case]
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="sizewise", messages=image_message(question, url))
    assert caught.value.status_code == status
    assert caught.value.body["code"] == code and "image 0" in caught.value.body["message"]
    assert upstream.bodies == []


def test_too_many_images_get_a_400(client: openai.OpenAI, upstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sizewise", messages=image_message("What is this?", *[COFFEE] * 4))
    assert caught.value.body["code"] == "too_many_images" and upstream.bodies == []


class PhotoServer(ThreadedServer):
    """Serves photos over HTTP on 127.0.0.1: ``/coffee.jpg``, ``/slow.jpg`` (never finishes), ``/big.jpg``
    (larger than the gateway's cap), anything else 404."""

    def __init__(self) -> None:
        self.coffee = photo("coffee")
        self.paths: list[str] = []
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import asyncio

        if scope["type"] != "http":
            return
        path = scope["path"]
        self.paths.append(path)
        status, body = (200, self.coffee) if path in ("/coffee.jpg", "/slow.jpg") else (404, b"no")
        headers = [(b"content-type", b"image/jpeg")]
        if path == "/big.jpg":
            status, body = 200, self.coffee * 20
        if path == "/elsewhere.jpg":  # a redirect to another host name for the same server
            status, body = 302, b""
            headers.append((b"location", f"http://localhost:{self.port}/coffee.jpg".encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if path == "/slow.jpg":
            await send({"type": "http.response.body", "body": body[:100], "more_body": True})
            await asyncio.sleep(5)
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def photos() -> Iterator[PhotoServer]:
    with PhotoServer() as server:
        yield server


def test_an_image_url_is_left_to_the_model_that_sees_unless_fetching_is_on(client, upstream, photos) -> None:
    url = f"http://127.0.0.1:{photos.port}/coffee.jpg"
    answer = client.chat.completions.create(model="sizewise", messages=image_message("What is this?", url))
    assert _sizewise(answer)["model"] == "sees" and "fetch_urls" in _sizewise(answer)["vision"]["reason"]
    assert upstream.bodies[0]["messages"][0]["content"][1]["image_url"]["url"] == url  # passed on as sent


def test_a_request_naming_the_classifier_fetches_no_url_when_fetching_is_off(client, photos) -> None:
    url = f"http://127.0.0.1:{photos.port}/coffee.jpg?asked-for=the-classifier"
    asked = len(photos.paths)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="efficientnet-lite0", messages=image_message("What is this?", url))
    assert "fetch_urls is off" in str(refused.value)
    assert len(photos.paths) == asked  # the gateway never asked the image's host


def test_a_fetched_image_url_is_classified_within_limits(upstream, photos) -> None:
    base = f"http://127.0.0.1:{photos.port}"
    with GatewayServer(catalog(upstream.base_url, fetch_urls=True, fetch_timeout_s=1.0)) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="none", max_retries=0)
        answer = client.chat.completions.create(
            model="sizewise", messages=image_message("What is this?", f"{base}/coffee.jpg")
        )
        assert _sizewise(answer)["model"] == "efficientnet-lite0" and "espresso" in answer.choices[0].message.content
        for path, status, words in [
            ("/slow.jpg", 400, "longer than 1.0 s"),
            ("/big.jpg", 413, "larger than 400000 bytes"),
            ("/missing.jpg", 400, "HTTP 404"),
        ]:
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="sizewise", messages=image_message("What is this?", base + path))
            assert caught.value.status_code == status and words in caught.value.body["message"], path
    assert upstream.bodies == []


def test_the_anthropic_messages_api_gets_the_same_answer(gateway: GatewayServer, upstream) -> None:
    import base64

    import anthropic

    client = anthropic.Anthropic(base_url=gateway.url.removesuffix("/v1"), api_key="unused", max_retries=0)
    source = {"type": "base64", "media_type": "image/jpeg", "data": base64.b64encode(photo("coffee")).decode()}
    content = [{"type": "image", "source": source}, {"type": "text", "text": "What is in this picture?"}]
    message = client.messages.create(model="sizewise", max_tokens=16, messages=[{"role": "user", "content": content}])
    assert "espresso" in message.content[0].text and upstream.bodies == []
    assert message.model_extra["sizewise"]["model"] == "efficientnet-lite0"


def test_an_image_with_audio_is_left_to_the_chat_models(gateway: GatewayServer) -> None:
    """The question may be spoken: the classifier does not answer what it cannot read (and the catalog has no
    speech model here, so the request is refused for its audio, not answered as "an espresso")."""
    import base64

    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF").decode(), "format": "wav"}}
    messages = image_message("", COFFEE)
    messages[0]["content"].append(audio)  # type: ignore[union-attr]
    client = openai.OpenAI(base_url=gateway.url, api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sizewise", messages=messages)
    assert "audio" in caught.value.body["message"]


def test_an_onnx_model_that_claims_to_chat_is_a_config_error(upstream) -> None:
    from sizewise.errors import ConfigError

    spec = catalog(upstream.base_url)
    spec["models"][0]["kind"] = "llm"
    with pytest.raises(ConfigError, match="backend 'onnx' is an image classifier; give it kind: vision"):
        GatewayServer(spec)


def test_fetch_hosts_limits_where_images_come_from_redirects_included(upstream, photos) -> None:
    base = f"http://127.0.0.1:{photos.port}"
    with GatewayServer(catalog(upstream.base_url, fetch_urls=True, fetch_hosts=["127.0.0.1"])) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="none", max_retries=0)
        answer = client.chat.completions.create(
            model="sizewise", messages=image_message("What is this?", f"{base}/coffee.jpg")
        )
        assert _sizewise(answer)["model"] == "efficientnet-lite0"
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="sizewise", messages=image_message("What is it?", f"{base}/elsewhere.jpg")
            )
        assert "host 'localhost' is not in fetch_hosts" in caught.value.body["message"]
    assert upstream.bodies == []


def test_host_patterns() -> None:
    from sizewise.serve.images import host_allowed

    assert host_allowed("anything.org", [])
    assert host_allowed("img.example.com", ["*.example.com"]) and host_allowed("IMG.example.com.", ["*.example.com"])
    assert not host_allowed("example.com.evil.org", ["*.example.com"]) and not host_allowed(
        "badexample.com", ["*.example.com"]
    )
    assert host_allowed("example.com", ["example.com"]) and not host_allowed("a.example.com", ["example.com"])
