"""Under ``gateway.privacy: local-only`` the image step fetches no image URL (its query string may carry
personal data, and the fetch would send it before the privacy filter runs), even with ``fetch_urls`` on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fakes import GatewayServer, ThreadedServer
from recording_upstream import RecordingUpstream
from test_vision_gateway import catalog
from vision_photos import image_message, photo

pytestmark = pytest.mark.slow


class ImageHost(ThreadedServer):
    """Serves one photo at any path on 127.0.0.1 and records every path asked for."""

    def __init__(self) -> None:
        self.coffee = photo("coffee")
        self.paths: list[str] = []
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"] + "?" + scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"image/jpeg")]})
        await send({"type": "http.response.body", "body": self.coffee})


@pytest.fixture(scope="module")
def host() -> Iterator[ImageHost]:
    with ImageHost() as server:
        yield server


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


def _gateway(upstream: RecordingUpstream, privacy: str) -> GatewayServer:
    spec = catalog(upstream.base_url, fetch_urls=True)
    spec["models"][1]["location"] = "local"  # local-only needs a local chat model (a text-only one here)
    # Images are judged by their readable text (the URL), so a clean URL may go to the remote model that sees.
    spec["gateway"].update(privacy=privacy, privacy_opaque="allow")
    return GatewayServer(spec)


def test_local_only_fetches_no_image_url(host: ImageHost, upstream: RecordingUpstream) -> None:
    url = f"http://127.0.0.1:{host.port}/coffee.jpg?email=jane.doe@example.com"
    with _gateway(upstream, "local-only") as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="none", max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:  # the URL's personal data: no remote model either
            client.chat.completions.create(model="sizewise", messages=image_message("What is this?", url))
        assert "personal data (email)" in caught.value.body["message"]
        with pytest.raises(openai.BadRequestError) as named:  # naming the classifier does not fetch either
            client.chat.completions.create(model="efficientnet-lite0", messages=image_message("What is this?", url))
        assert named.value.body["code"] == "privacy_image_url"
        clean = f"http://127.0.0.1:{host.port}/coffee.jpg"  # no personal data: the model that sees gets the URL
        answer = client.chat.completions.create(model="sizewise", messages=image_message("What is this?", clean))
        assert answer.model_extra["sizewise"]["model"] != "efficientnet-lite0"
        assert "local-only" in answer.model_extra["sizewise"]["vision"]["reason"]
    assert host.paths == []


def test_without_local_only_the_url_is_fetched(host: ImageHost, upstream: RecordingUpstream) -> None:
    """The control: the same gateway without the privacy rule fetches (so the test above can fail)."""
    host.paths.clear()
    with _gateway(upstream, "off") as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="none", max_retries=0)
        url = f"http://127.0.0.1:{host.port}/coffee.jpg?email=jane.doe@example.com"
        answer = client.chat.completions.create(model="sizewise", messages=image_message("What is this?", url))
        assert answer.model_extra["sizewise"]["model"] == "efficientnet-lite0"
    assert host.paths == ["/coffee.jpg?email=jane.doe@example.com"]
