"""The upstream HTTP client against a rude raw-socket upstream on 127.0.0.1 (issue #16, item 1).

The upstream (``rude_upstream.py``) writes its bytes by hand, as real servers and middleboxes may: 1xx
responses before the answer, chunked bodies with trailers, a reset after reading the request, 307
redirects, slow streams. The hand-written transport these replaced took a 1xx for the answer and left the
real one on the pooled connection for the next client; these tests failed on it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes import GatewayServer, fake_model, free_port
from rude_upstream import PIECES, RudeUpstream
from sizewise.backends.base import BackendError, ChatRequest
from sizewise.backends.factory import make_backend
from sizewise.backends.openai_compat import OpenAICompatBackend
from sizewise.catalog.loader import parse_catalog
from sizewise.catalog.schema import CatalogSpec, ModelSpec
from sizewise.errors import ConfigError
from sizewise.gateway.app import create_app


@pytest.fixture(scope="module")
def upstream() -> Iterator[RudeUpstream]:
    with RudeUpstream() as up:
        yield up


def _backend(base_url: str, model: str, **settings: Any) -> OpenAICompatBackend:
    """The backend the gateway builds for an ``openai`` catalog entry."""
    spec = ModelSpec.model_validate(fake_model("m", model, 1.0, base_url))
    spec.settings.update(settings)
    backend = make_backend(spec)
    assert isinstance(backend, OpenAICompatBackend)
    return backend


def _ask(text: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=8)


def _complete(base_url: str, model: str, text: str, **settings: Any) -> str:
    """One non-streamed call through a fresh backend."""

    async def scenario() -> str:
        backend = _backend(base_url, model, **settings)
        try:
            return (await backend.complete(_ask(text))).text
        finally:
            await backend.aclose()

    return asyncio.run(scenario())


def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.parametrize(("model", "stream"), [("hints", False), ("hints", True), ("trailer", False)])
def test_each_client_gets_its_own_answer_through_the_gateway(upstream: RudeUpstream, model: str, stream: bool) -> None:
    """8 sequential requests with distinct secrets: each gets back its own echo, first try, never another's."""
    before = len(upstream.posts(model))
    with GatewayServer({"models": [fake_model("m", model, 1.0, upstream.base_url)]}, log_url="none") as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=20)
        for user in range(8):
            secret = f"user{user}-secret-{user * 1111}"
            messages: Any = [{"role": "user", "content": secret}]
            if stream:
                chunks = list(client.chat.completions.create(model="m", messages=messages, stream=True))
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                decision = chunks[-1].model_extra["sizewise"]
            else:
                answer = client.chat.completions.create(model="m", messages=messages)
                text, decision = answer.choices[0].message.content, answer.model_extra["sizewise"]
            assert text == f"echo: {secret}"
            assert not decision["errors"] and not decision["fallback"]
    assert len(upstream.posts(model)) == before + 8  # one upstream call per request: no retry was needed


def test_trailers_do_not_corrupt_the_next_request_on_the_connection(upstream: RudeUpstream) -> None:
    async def scenario() -> list[str]:
        backend = _backend(upstream.base_url, "trailer")
        try:
            return [(await backend.complete(_ask(f"question {i}"))).text for i in range(3)]
        finally:
            await backend.aclose()

    connections = upstream.connections
    assert asyncio.run(scenario()) == [f"echo: question {i}" for i in range(3)]
    assert upstream.connections == connections + 1  # the connection was kept alive across the trailers


def test_a_post_is_not_sent_again_after_the_connection_resets(upstream: RudeUpstream) -> None:
    async def scenario() -> None:
        backend = _backend(upstream.base_url, "ok")
        reset = _backend(upstream.base_url, "reset")
        reset._client = backend.client  # one pool: the reset hits a kept-alive connection
        try:
            assert (await backend.complete(_ask("warm up"))).text == "echo: warm up"
            with pytest.raises(BackendError, match="upstream unreachable"):
                await reset.complete(_ask("bill me once"))
            assert (await backend.complete(_ask("after"))).text == "echo: after"  # the pool recovers
        finally:
            await backend.aclose()

    asyncio.run(scenario())
    assert len(upstream.posts("reset")) == 1  # written once: never replayed (a replay bills twice)


def test_a_kept_alive_connection_is_reused_after_an_upstream_error(upstream: RudeUpstream) -> None:
    async def scenario() -> str:
        backend = _backend(upstream.base_url, "ok")
        failing = _backend(upstream.base_url, "fail500")
        failing._client = backend.client
        try:
            with pytest.raises(BackendError, match="500"):
                await failing.complete(_ask("fail"))
            return (await backend.complete(_ask("then ok"))).text
        finally:
            await backend.aclose()

    connections = upstream.connections
    assert asyncio.run(scenario()) == "echo: then ok"
    assert upstream.connections == connections + 1


def test_a_connection_the_upstream_closed_while_idle_is_not_reused(upstream: RudeUpstream) -> None:
    async def scenario() -> list[str]:
        backend = _backend(upstream.base_url, "ok")
        hangup = _backend(upstream.base_url, "hangup")
        hangup._client = backend.client
        try:
            first = (await hangup.complete(_ask("first"))).text
            await asyncio.sleep(0.1)  # the close reaches the pooled connection
            return [first, (await backend.complete(_ask("second"))).text]
        finally:
            await backend.aclose()

    connections = upstream.connections
    assert asyncio.run(scenario()) == ["echo: first", "echo: second"]
    assert upstream.connections == connections + 2


def test_a_307_redirect_is_followed_with_method_and_body(upstream: RudeUpstream) -> None:
    assert _complete(upstream.base_url, "redirect", "where to") == "echo: where to"
    first, second = upstream.posts("redirect")[-2:]
    assert (first.target, second.target) == ("/v1/chat/completions", "/v2/chat/completions")
    assert first.body == second.body


def test_a_slow_stream_arrives_piece_by_piece_past_the_read_timeout(upstream: RudeUpstream) -> None:
    """Events 0.3 s apart with a 0.8 s read timeout: the timeout is per read, and pieces are not buffered."""

    async def scenario() -> list[tuple[float, str]]:
        backend = _backend(upstream.base_url, "slow", timeout_s=0.8)
        try:
            return [(time.perf_counter(), chunk.text) async for chunk in backend.stream(_ask("go"))]
        finally:
            await backend.aclose()

    arrivals = asyncio.run(scenario())
    assert "".join(text for _, text in arrivals) == "".join(PIECES)
    assert arrivals[-1][0] - arrivals[0][0] >= 1.0  # longer than the timeout: the first came before the last


@pytest.mark.parametrize("how", ["environment", "setting"])
def test_the_proxy_is_used(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY (the default) or the ``proxy`` setting: the request goes to the proxy in absolute form."""
    _no_proxy_environment(monkeypatch)
    target = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: only the proxy can answer
    with RudeUpstream() as proxy:
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        if how == "environment":
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
        settings = {"proxy": proxy_url} if how == "setting" else {}
        assert _complete(target, "proxied", "through the proxy", **settings) == "echo: through the proxy"
        assert [s.target for s in proxy.posts("proxied")] == [f"{target}/chat/completions"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a self-signed certificate for 127.0.0.1, and the certificate's file."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run([*command.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    return tls, cert


@pytest.mark.parametrize("settings", [{}, {"ca_bundle": "CERT"}, {"verify": False}])
def test_tls_verify_and_ca_bundle(certificate: tuple[ssl.SSLContext, Path], settings: dict[str, Any]) -> None:
    tls, cert = certificate
    settings = {k: str(cert) if v == "CERT" else v for k, v in settings.items()}
    with RudeUpstream(tls=tls) as up:
        if settings:
            assert _complete(up.base_url, "ok", "over tls", **settings) == "echo: over tls"
        else:  # the default checks the certificate against the system's CAs, which never signed this one
            with pytest.raises(BackendError, match="CERTIFICATE_VERIFY_FAILED"):
                _complete(up.base_url, "ok", "over tls")


def test_https_goes_through_the_environment_proxy_in_a_tunnel(
    certificate: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY: a gateway behind an egress proxy reaches a TLS upstream through ``CONNECT``."""
    _no_proxy_environment(monkeypatch)
    tls, cert = certificate
    with RudeUpstream(tls=tls) as up, RudeUpstream() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        assert _complete(up.base_url, "ok", "tunnelled", ca_bundle=str(cert)) == "echo: tunnelled"
        assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", f"127.0.0.1:{up.port}")]
        assert [s.body["messages"][-1]["content"] for s in up.posts("ok")] == ["tunnelled"]


def test_a_bad_ca_bundle_is_a_one_line_config_error(tmp_path: Path) -> None:
    entry = fake_model("m", "ok", 1.0, "https://127.0.0.1:1/v1")
    missing = tmp_path / "missing.pem"
    entry["settings"]["ca_bundle"] = str(missing)
    with pytest.raises(ConfigError, match=re.escape(f"model 'm': ca_bundle {missing} does not exist")) as error:
        create_app(CatalogSpec.model_validate({"models": [entry]}), log_url="none")
    assert "\n" not in str(error.value)
    # In a catalog file: relative to the file, with the line and field named.
    catalog = tmp_path / "sizewise.yaml"
    catalog.write_text(json.dumps({"models": [{**entry, "settings": {**entry["settings"], "ca_bundle": "x.pem"}}]}))
    where = re.escape(f"{catalog} line 1: models[0] ('m') field 'settings.ca_bundle': CA bundle {tmp_path / 'x.pem'}")
    with pytest.raises(ConfigError, match=where + " does not exist$"):
        parse_catalog(catalog.read_text(), source=str(catalog), base_dir=tmp_path)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    entry["settings"]["ca_bundle"] = str(not_pem)
    with pytest.raises(ConfigError, match=re.escape(f"ca_bundle {not_pem} is not a PEM CA bundle")):
        create_app(CatalogSpec.model_validate({"models": [entry]}), log_url="none")
    entry["settings"]["verify"] = False
    with pytest.raises(ConfigError, match="'ca_bundle' and 'verify: false' contradict each other"):
        make_backend(ModelSpec.model_validate(entry))
