"""Faults a user can see (#18): a model without its API key, a named model that fails, ``Retry-After``.

The official openai client talks to a real gateway on 127.0.0.1; upstreams are the fake of tests/fakes.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model

MESSAGES = [{"role": "user", "content": "hello there gateway"}]
UNSET = "SIZEWISE_TEST_KEY_THAT_IS_NOT_SET"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def _client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=20)


def _catalog(models: list[dict[str, Any]], tmp_path: Path, **gateway: Any) -> dict[str, Any]:
    return {"models": models, "gateway": {"log_url": f"sqlite:///{tmp_path / 'log.sqlite'}", **gateway}}


def _keyed_cloud(base_url: str) -> dict[str, Any]:
    """A cloud model (no params_b: the largest) whose API-key variable is unset."""
    cloud = fake_model("cloud", "ok-cloud", 1.0, base_url)
    del cloud["params_b"]
    cloud["settings"]["api_key_env"] = UNSET
    return cloud


# -- (a) a model whose API-key variable is unset ---------------------------------------------------------------
def test_model_without_its_key_is_reported_at_start_up_and_skipped(
    upstream: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    models = [fake_model("local", "ok-local", 1.0, upstream.base_url), _keyed_cloud(upstream.base_url)]
    calls_before = upstream.calls["ok-cloud"]
    with caplog.at_level(logging.WARNING, logger="sizewise"):
        gateway = GatewayServer(_catalog(models, tmp_path))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "cloud" in r.getMessage()]
    assert len(warnings) == 1 and UNSET in warnings[0], warnings
    with gateway:
        client = _client(gateway)
        # Named: a clear 503 naming the variable, not a silent answer from the local model.
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="cloud", messages=MESSAGES, max_tokens=8)
        assert caught.value.status_code == 503
        assert UNSET in caught.value.message and "cloud" in caught.value.message
        # Routed: the skipped model is never planned nor tried (no failed step names it).
        for stream in (False, True):
            raw = client.chat.completions.with_raw_response.create(
                model="sizewise", messages=MESSAGES, max_tokens=8, stream=stream
            )
            assert raw.headers["x-sizewise-model"] == "local"
            assert not raw.headers.get("x-sizewise-fallback")
    assert upstream.calls["ok-cloud"] == calls_before


def test_a_catalog_where_no_model_has_its_key_fails_at_start_up(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    from sizewise.errors import ConfigError

    with pytest.raises(ConfigError, match=f"no model can be called: cloud: environment variable {UNSET}"):
        GatewayServer(_catalog([_keyed_cloud(upstream.base_url)], tmp_path))


# -- (b) a request that names a model gets that model or an error ----------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_a_named_model_that_fails_is_an_error_naming_the_failure_not_a_substitute(
    upstream: FakeUpstream, tmp_path: Path, stream: bool
) -> None:
    models = [
        fake_model("good", "ok-good-b", 8.0, upstream.base_url),
        fake_model("broken", "fail500", 1.0, upstream.base_url),
    ]
    good_before = upstream.calls["ok-good-b"]
    with GatewayServer(_catalog(models, tmp_path)) as gateway:
        with pytest.raises(openai.APIStatusError) as caught:
            answer = _client(gateway).chat.completions.create(
                model="broken", messages=MESSAGES, max_tokens=8, stream=stream
            )
            list(answer) if stream else None  # pragma: no branch
        rows = gateway.rows()
    assert caught.value.status_code == 502
    assert "broken: upstream answered 500" in caught.value.message
    assert upstream.calls["ok-good-b"] == good_before  # the other model was never asked
    assert rows[-1]["status"] == 502 and rows[-1]["model"] in (None, "", "broken") and not rows[-1]["fallback_from"]


def test_fallback_for_named_models_lets_a_named_model_fall_back(upstream: FakeUpstream, tmp_path: Path) -> None:
    models = [
        fake_model("good", "ok-good-c", 8.0, upstream.base_url),
        fake_model("broken", "fail500", 1.0, upstream.base_url),
    ]
    with GatewayServer(_catalog(models, tmp_path, fallback_for_named_models=True)) as gateway:
        raw = _client(gateway).chat.completions.with_raw_response.create(
            model="broken", messages=MESSAGES, max_tokens=8
        )
    assert raw.headers["x-sizewise-model"] == "good" and raw.headers["x-sizewise-fallback"] == "broken"


# -- (c) Retry-After -------------------------------------------------------------------------------------------
class RetryAfterUpstream:
    """A raw upstream: model ``busy-<n>`` answers its 1st, 3rd... call 429 with ``Retry-After: <n>``, the others 200."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                model = body["model"]
                owner.times[model].append(time.monotonic())
                if len(owner.times[model]) % 2 == 1:
                    self._send(429, {"error": {"message": "slow down"}}, model.removeprefix("busy-"))
                elif body.get("stream"):
                    chunk = {"choices": [{"index": 0, "delta": {"content": "waited"}, "finish_reason": "stop"}]}
                    self._send(200, f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n", None, "text/event-stream")
                else:
                    choice = {
                        "index": 0,
                        "message": {"role": "assistant", "content": "waited"},
                        "finish_reason": "stop",
                    }
                    self._send(200, {"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}, None)

            def _send(self, status: int, payload: Any, wait: str | None, kind: str = "application/json") -> None:
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                if wait is not None:
                    self.send_header("retry-after", wait)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> RetryAfterUpstream:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RetryAfterUpstream, GatewayServer]]:
    with RetryAfterUpstream() as up:
        models = [
            fake_model(name, f"busy-{wait}", 1.0, up.base_url, timeout_s=5)
            for name, wait in (("soon", 1), ("late", 20))
        ]
        with GatewayServer(_catalog(models, tmp_path_factory.mktemp("busy"), max_retry_after_s=3)) as gateway:
            yield up, gateway


@pytest.mark.parametrize("stream", [False, True])
def test_a_short_retry_after_is_waited_out_before_the_retry(
    busy: tuple[RetryAfterUpstream, GatewayServer], stream: bool
) -> None:
    upstream, gateway = busy
    before = len(upstream.times["busy-1"])
    answer = _client(gateway).chat.completions.create(model="soon", messages=MESSAGES, max_tokens=8, stream=stream)
    text = (
        "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
        if stream
        else answer.choices[0].message.content
    )
    assert text == "waited"
    first, second = upstream.times["busy-1"][before:]
    assert second - first >= 0.95  # the upstream's Retry-After: 1, not an immediate retry


def test_a_long_retry_after_counts_as_the_model_failing_now(busy: tuple[RetryAfterUpstream, GatewayServer]) -> None:
    upstream, gateway = busy
    before = len(upstream.times["busy-20"])
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        _client(gateway).chat.completions.create(model="late", messages=MESSAGES, max_tokens=8)
    assert time.monotonic() - started < 3  # neither 20 s nor the 3 s cap were waited
    assert caught.value.status_code == 502
    assert "late: upstream answered 429" in caught.value.message and "Retry-After 20s" in caught.value.message
    assert len(upstream.times["busy-20"]) == before + 1  # not retried at once either


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from email.utils import formatdate

    from sizewise.backends.openai_compat import retry_after

    assert retry_after({"retry-after": "2"}) == 2.0 and retry_after({}) is None
    assert retry_after({"retry-after": "soon"}) is None and retry_after({"retry-after": "nan"}) is None
    in_ten = retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)})
    assert in_ten is not None and 8 <= in_ten <= 10
