"""Under ``privacy: local-only`` personal data reaches no remote model, wherever the request carries it.

A recording upstream on 127.0.0.1 plays every model (``up-cloud`` is the remote one) and keeps each
body it receives; the official openai client sends each placement of :mod:`privacy_cases` through
a real gateway. A placement leaks when a body with it arrives at ``up-cloud``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fakes import GatewayServer, read_body  # fakes puts bench/ on sys.path
from privacy_cases import CASES, Case
from privacy_stall import numeric_prompt
from sizewise.backends.base import ChatRequest
from sizewise.policy.constraints.privacy import PrivacyFilter, redact_error, scan_request
from test_constraints_gateway import Recorder, entry

READABLE = [case for case in CASES if case.readable]
OPAQUE = [case for case in CASES if not case.readable]
TWINS = [case for case in CASES if case.twin is not None]
ALL = ["text", "image", "audio", "file"]


def _ids(cases: list[Case]) -> list[str]:
    return [case.name for case in cases]


class Quoter(Recorder):
    """The recorder, except that model ``up-quoter`` answers 400 quoting the prompt, as some upstreams do."""

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        body = json.loads(raw or b"{}")
        if body.get("model") != "up-quoter":
            replay = iter([{"type": "http.request", "body": raw, "more_body": False}])
            await super().app(scope, lambda: _next(replay), send)
            return
        self.bodies.append(body)
        quoted = json.dumps({"error": {"message": f"cannot parse prompt: {body['messages'][-1]['content']}"}}).encode()
        await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": quoted})


async def _next(messages: Iterator[dict[str, Any]]) -> dict[str, Any]:
    return next(messages)


@pytest.fixture(scope="module")
def recorder() -> Iterator[Quoter]:
    with Quoter() as rec:
        yield rec


def _gateway(recorder: Recorder, log: Path, opaque: str) -> GatewayServer:
    url = recorder.base_url
    models = [
        entry("edge", url, params_b=0.5, location="local", context_window=200_000),
        entry("vault", url, kind="multimodal", modalities=ALL, params_b=7, location="local"),
        entry("quoter", url, params_b=1, location="local"),
        entry("cloud", url, kind="multimodal", modalities=ALL, params_b=70, location="remote", context_window=65536),
    ]
    settings = {"log_url": f"sqlite:///{log}", "privacy": "local-only", "privacy_opaque": opaque}
    return GatewayServer({"models": models, "gateway": settings})


@pytest.fixture(scope="module")
def strict(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """The default: what the filter cannot read counts as personal."""
    with _gateway(recorder, tmp_path_factory.mktemp("strict") / "log.sqlite", "personal") as gw:
        yield gw


@pytest.fixture(scope="module")
def lenient(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """``privacy_opaque: allow``: images and files may go remote, their readable text is still judged."""
    with _gateway(recorder, tmp_path_factory.mktemp("lenient") / "log.sqlite", "allow") as gw:
        yield gw


def send(gateway: GatewayServer, model: str, body: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """(status, error code, answering model) for ``body`` sent with the official client."""
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)
    extra = {key: value for key, value in body.items() if key != "messages"}
    try:
        answer = client.chat.completions.create(model=model, messages=body["messages"], max_tokens=8, extra_body=extra)
    except openai.APIStatusError as error:
        return error.status_code, getattr(error, "code", None), None
    return 200, None, answer.model


def reached_cloud(recorder: Recorder, before: int) -> bool:
    return "up-cloud" in recorder.models()[before:]


def test_the_cases_are_enough() -> None:
    assert len(CASES) >= 40 and len({case.name for case in CASES}) == len(CASES)
    assert {"email", "phone", "iban", "card", "unreadable"} <= {case.kind for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_a_named_remote_model_never_receives_personal_data(
    case: Case, strict: GatewayServer, recorder: Recorder
) -> None:
    before = len(recorder.bodies)
    status, code, _ = send(strict, "cloud", case.body)
    assert not reached_cloud(recorder, before), f"{case.name}: the remote model received the personal data"
    assert (status, code) == (400, "privacy_remote_model")


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_a_routed_request_with_personal_data_stays_local(case: Case, strict: GatewayServer, recorder: Recorder) -> None:
    before = len(recorder.bodies)
    status, _, model = send(strict, "router-heuristic-0", case.body)  # threshold 0: the big (remote) model
    assert not reached_cloud(recorder, before)
    assert status == 200 and model in ("edge", "vault")


@pytest.mark.parametrize("case", READABLE, ids=_ids(READABLE))
def test_readable_data_is_caught_even_when_opaque_parts_are_allowed(
    case: Case, lenient: GatewayServer, recorder: Recorder
) -> None:
    before = len(recorder.bodies)
    status, code, _ = send(lenient, "cloud", case.body)
    assert not reached_cloud(recorder, before) and (status, code) == (400, "privacy_remote_model")


@pytest.mark.parametrize("case", OPAQUE, ids=_ids(OPAQUE))
def test_privacy_opaque_allow_lets_unreadable_parts_go_remote(
    case: Case, lenient: GatewayServer, recorder: Recorder
) -> None:
    before = len(recorder.bodies)
    assert send(lenient, "cloud", case.body)[0] == 200 and reached_cloud(recorder, before)


@pytest.mark.parametrize("case", TWINS, ids=_ids(TWINS))
def test_the_same_placement_without_personal_data_may_go_remote(
    case: Case, lenient: GatewayServer, recorder: Recorder
) -> None:
    """The filter is not just refusing everything: each harmless twin reaches the remote model."""
    assert case.twin is not None
    before = len(recorder.bodies)
    status, code, model = send(lenient, "cloud", case.twin)
    assert (status, code, model) == (200, None, "cloud") and reached_cloud(recorder, before)


def test_a_streamed_request_is_scanned_the_same_way(strict: GatewayServer, recorder: Recorder) -> None:
    client = openai.OpenAI(base_url=strict.url, api_key="unused", max_retries=0)
    before = len(recorder.bodies)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="cloud",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_body={"metadata": {"customer": "jane.doe@example.org"}},
        )
    assert info.value.code == "privacy_remote_model" and not reached_cloud(recorder, before)
    chunks = client.chat.completions.create(
        model="router-heuristic-0",
        messages=[{"role": "user", "content": "hi", "name": "jane.doe@example.org"}],
        stream=True,
    )
    models = {chunk.model for chunk in chunks}
    assert models and models <= {"edge", "vault"} and not reached_cloud(recorder, before)


def test_the_refusal_names_what_fired_never_the_data(strict: GatewayServer) -> None:
    client = openai.OpenAI(base_url=strict.url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hi", "name": "jane.doe@example.org"}]
        )
    assert "email" in str(info.value) and "jane.doe" not in str(info.value)


def test_an_upstream_error_quoting_the_prompt_is_not_logged_without_log_text(
    strict: GatewayServer, recorder: Recorder
) -> None:
    secret = "the zebra-secret-4242 plan"
    client = openai.OpenAI(base_url=strict.url, api_key="unused", max_retries=0)
    before = len(recorder.bodies)
    with pytest.raises(openai.APIStatusError) as info:  # a named model's fault is the answer: no substitute
        client.chat.completions.create(model="quoter", messages=[{"role": "user", "content": secret}])
    assert info.value.status_code == 400  # the upstream refused the request itself: the client's 4xx, not a 502
    assert recorder.models()[before] == "up-quoter"  # which did answer, quoting the prompt
    row = next(row for row in reversed(strict.rows()) if row["policy"] == "quoter")
    assert row["errors"] and "quoter: upstream answered 400" in row["errors"]
    assert "zebra-secret" not in json.dumps(row, default=str)


def test_redact_error_drops_quoted_text_and_masks_personal_data() -> None:
    message = 'cloud: upstream answered 400: {"error": "bad prompt: call +44 20 7946 0958"}'
    assert redact_error(message) == "cloud: upstream answered 400 (its text is not logged: log_text is off)"
    assert redact_error("edge: cannot reach https://x.example/?to=jane.doe@example.org") == (
        "edge: cannot reach https://x.example/?to=<email>"
    )


def test_scan_reports_rules_and_unreadable_parts_never_data() -> None:
    case = next(c for c in CASES if c.name == "image data URL")
    found = scan_request(ChatRequest(messages=case.body["messages"]))
    assert found.rules == () and found.opaque == ("image",)
    mixed = ChatRequest(messages=[{"role": "user", "content": "hi", "name": "jane.doe@example.org"}], stop=["4111"])
    assert scan_request(mixed).rules == ("email",) and "jane" not in repr(scan_request(mixed))
    with pytest.raises(ValueError, match="privacy_opaque"):
        PrivacyFilter(opaque="sometimes")


async def _tiny_latencies(url: str, duration_s: float) -> list[float]:
    body = {"model": "edge", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        deadline = time.perf_counter() + duration_s
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            assert (await client.post("/chat/completions", json=body)).status_code == 200
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
    return latencies


def test_a_long_numeric_prompt_does_not_stall_other_clients(strict: GatewayServer) -> None:
    """The scan of a 100 KB prompt takes seconds of CPU: other requests must not wait for it."""
    body = {"model": "edge", "messages": [{"role": "user", "content": numeric_prompt(100_000)}], "max_tokens": 4}

    async def run() -> tuple[float, list[float]]:
        async with httpx.AsyncClient(base_url=strict.url, timeout=60) as client:
            big = asyncio.create_task(client.post("/chat/completions", json=body))
            started = time.perf_counter()
            await asyncio.sleep(0.05)  # the big request is being scanned now
            tiny = await _tiny_latencies(strict.url, 1.0)
            response = await big
            assert response.status_code == 200
            return time.perf_counter() - started, tiny

    big_s, tiny = asyncio.run(run())
    assert big_s > 1.0, f"the big scan took only {big_s:.2f}s: this test no longer measures a stall"
    assert max(tiny) < 0.5, f"a tiny request waited {max(tiny):.2f}s behind the scan"
