"""Hard constraints through the running gateway, driven by the official openai client.

A recording upstream on 127.0.0.1 plays every model (the catalog's ``location`` and ``modalities``
say what each one is) and keeps every request body it receives, so the tests check what really
reached which model.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from constraint_helpers import IMAGE
from fakes import GatewayServer, ThreadedServer, read_body, send_answer
from sizewise.catalog.schema import CatalogSpec
from sizewise.errors import ConfigError
from sizewise.gateway.app import create_app


class Recorder(ThreadedServer):
    """An OpenAI-compatible upstream that answers at once (after ``delay_s``) and records each body."""

    start_timeout_s = 20.0
    stop_timeout_s = 10.0

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.bodies: list[dict[str, Any]] = []
        super().__init__(self.app)

    def models(self) -> list[str]:
        return [body["model"] for body in self.bodies]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        body = json.loads(raw or b"{}")
        self.bodies.append(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        completion = body.get("max_tokens") or 5
        text = json.dumps(body.get("messages", []))
        usage = {"prompt_tokens": len(text) // 4, "completion_tokens": completion}
        await send_answer(send, str(body.get("model")), "ok", usage, stream=bool(body.get("stream")))


def entry(name: str, base_url: str, **kw: Any) -> dict[str, Any]:
    """A catalog model served by the recorder under upstream name ``up-<name>``."""
    return {
        "name": name,
        "backend": "openai",
        "settings": {"base_url": base_url, "model": f"up-{name}", "timeout_s": 5.0},
        "context_window": kw.pop("context_window", 2048),
        **kw,
    }


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    with Recorder() as rec:
        yield rec


@pytest.fixture(scope="module")
def gateway(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    url = recorder.base_url
    models = [
        entry("edge", url, params_b=0.5, location="local", p95_latency_ms=40),
        entry("vision", url, kind="multimodal", modalities=["text", "image"], params_b=7, location="local"),
        entry(
            "cloud",
            url,
            params_b=70,
            location="remote",
            context_window=65536,
            price_in=1,
            price_out=2,
            p95_latency_ms=1500,
        ),
    ]
    log = Path(tmp_path_factory.mktemp("log")) / "log.sqlite"
    settings = {"log_url": f"sqlite:///{log}", "privacy": "local-only", "ladder": ["edge", "cloud"]}
    with GatewayServer({"models": models, "gateway": settings}) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)


def _filters(response: Any) -> dict[str, dict[str, Any]]:
    return {f["filter"]: f for f in response.model_extra["sizewise"]["filters"]}


def test_image_request_reaches_only_the_image_model(client: openai.OpenAI, recorder: Recorder) -> None:
    before = len(recorder.bodies)
    response = client.chat.completions.create(model="sizewise", messages=[{"role": "user", "content": IMAGE}])
    assert response.model == "vision"
    assert recorder.models()[before:] == ["up-vision"]
    assert recorder.bodies[-1]["messages"][0]["content"][1]["type"] == "image_url"
    removed = _filters(response)["modality"]["removed"]
    assert set(removed) == {"edge", "cloud"} and removed["edge"] == "cannot read image"
    # Every filter that ran is listed, in the documented order, whether it removed something or not.
    assert response.model_extra["sizewise"]["filters_ran"] == [
        "modality",
        "capability",
        "context",
        "privacy",
        "latency",
    ]


def test_image_request_to_a_text_only_catalog_is_a_clear_400(recorder: Recorder) -> None:
    models = [entry("edge", recorder.base_url, params_b=1), entry("edge2", recorder.base_url, params_b=2)]
    spec = CatalogSpec.model_validate({"models": models, "gateway": {"log_url": "none"}})
    with GatewayServer(spec, log_url="none") as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        before = len(recorder.bodies)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="sizewise", messages=[{"role": "user", "content": IMAGE}])
        assert info.value.code == "unsupported_modality" and "image" in str(info.value)
        assert len(recorder.bodies) == before


def test_personal_data_never_reaches_a_remote_model(
    client: openai.OpenAI, recorder: Recorder, gateway: GatewayServer
) -> None:
    secret = (
        "Long question needing the big model, step by step: refund card 4111 1111 1111 1111 to jane@corp.example " * 4
    )
    before = len(recorder.bodies)
    response = client.chat.completions.create(model="sizewise", messages=[{"role": "user", "content": secret}])
    assert response.model == "edge" and recorder.models()[before:] == ["up-edge"]
    privacy = _filters(response)["privacy"]
    assert "card" in privacy["note"] and "email" in privacy["note"] and "cloud" in privacy["removed"]
    # Naming the remote model explicitly does not get it there either.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="cloud", messages=[{"role": "user", "content": secret}])
    assert info.value.code == "privacy_remote_model" and "4111" not in str(info.value)
    assert "up-cloud" not in recorder.models()[before:]
    # The same question without personal data may go to the cloud model.
    clean = client.chat.completions.create(model="cloud", messages=[{"role": "user", "content": "hello there"}])
    assert clean.model == "cloud"
    rows = gateway.rows()
    logged = json.dumps(rows[-3:], default=str)
    assert "4111" not in logged and "jane@" not in logged and "card" in logged


def test_over_long_prompt_goes_to_long_context_model_or_gets_a_400(client: openai.OpenAI, recorder: Recorder) -> None:
    long_prompt = "Summarise the following report. " + "The quarterly numbers were stable. " * 400  # ~3.5k tokens
    response = client.chat.completions.create(
        model="sizewise", messages=[{"role": "user", "content": long_prompt}], max_tokens=50
    )
    assert response.model == "cloud" and recorder.models()[-1] == "up-cloud"
    assert "edge" in _filters(response)["context"]["removed"]
    before = len(recorder.bodies)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="sizewise", messages=[{"role": "user", "content": long_prompt * 40}], max_tokens=50
        )
    assert info.value.code == "context_length_exceeded" and "65536" in str(info.value)
    assert len(recorder.bodies) == before


def test_latency_header_excludes_slow_models(client: openai.OpenAI) -> None:
    long_prompt = "Explain step by step. " * 10
    response = client.chat.completions.create(
        model="sizewise",
        messages=[{"role": "user", "content": long_prompt}],
        extra_headers={"x-sizewise-max-latency-ms": "200"},
    )
    assert response.model != "cloud"
    assert "p95 1500" in _filters(response)["latency"]["removed"]["cloud"]


def test_hundred_parallel_requests_never_overspend(tmp_path: Path) -> None:
    with Recorder(delay_s=0.05) as rec:
        url = rec.base_url
        models = [
            entry("small", url, params_b=1, location="remote", price_in=100, price_out=100),
            entry("large", url, params_b=70, location="remote", price_in=1000, price_out=1000),
        ]
        log = tmp_path / "log.sqlite"
        # USD per day; a "large" answer costs ~0.17 and reserves ~0.49 (the prompt's UTF-8 bytes bound its
        # tokens), a "small" one a tenth of that.
        limit = 2.0
        # Threshold 0: the policy always wants the large model, so only the budget can send requests elsewhere.
        gateway = {"log_url": f"sqlite:///{log}", "daily_budget_usd": limit, "router": "heuristic", "threshold": 0.0}
        spec = {"models": models, "gateway": gateway}
        with GatewayServer(spec) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=30)
            prompt = "Prove step by step that the algorithm is correct and compute its complexity. " * 3

            async def one() -> Any:
                try:
                    return await client.chat.completions.create(
                        model="sizewise", messages=[{"role": "user", "content": prompt}], max_tokens=100
                    )
                except openai.RateLimitError as error:
                    return error

            async def run() -> list[Any]:
                return await asyncio.gather(*(one() for _ in range(100)))

            results = asyncio.run(run())
            gw.rows()
        answered = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        # Refusals are not required: with the budget's wait and downgrades to the cheaper model, how many of
        # the burst fit depends on the order requests reach the ledger; overspending never may.
        assert len(answered) + len(refused) == 100 and answered
        assert all(r.code == "budget_exceeded" for r in refused)
        with sqlite3.connect(log) as db:
            spent = db.execute("select sum(spent) from budget_ledger where settled").fetchone()[0]
            open_rows = db.execute("select count(*) from budget_ledger where not settled").fetchone()[0]
            logged = db.execute("select sum(cost) from requests where status = 200").fetchone()[0]
        assert open_rows == 0 and spent == pytest.approx(logged)
        assert 0 < spent <= limit
        # Near the limit the gateway downgraded to the cheaper model and said so.
        notes = [(_filters(r).get("budget") or {}).get("note") or "" for r in answered]
        assert any("downgraded" in note for note in notes)
        assert {r.model for r in answered} == {"small", "large"}


def test_contradictory_catalog_fails_at_start_up(tmp_path: Path) -> None:
    base = {"name": "m", "backend": "openai", "context_window": 100, "location": "remote", "settings": {}}
    bad_route = CatalogSpec.model_validate(
        {
            "models": [base],
            "routes": [{"name": "code", "examples": ["def f()"], "models": ["coder"]}],
            "gateway": {"log_url": "none"},
        }
    )
    with pytest.raises(ConfigError, match="route 'code' names unknown model"):
        create_app(bad_route, log_url="none")
    no_local = CatalogSpec.model_validate({"models": [base], "gateway": {"privacy": "local-only", "log_url": "none"}})
    with pytest.raises(ConfigError, match="no local chat model"):
        create_app(no_local, log_url="none")


def test_domain_route_sends_code_prompts_to_the_code_model(recorder: Recorder) -> None:
    url = recorder.base_url
    models = [
        entry("general-s", url, params_b=1),
        entry("general-l", url, params_b=8),
        entry("coder", url, params_b=0.5),
    ]
    routes = [
        {
            "name": "code",
            "examples": [
                "Write a Python function that reverses a linked list.",
                "How do I sort a dictionary by value in Python?",
                "Fix this SQL query: SELECT name FROM users WHERE id = ",
            ],
            "models": ["coder"],
        }
    ]
    spec = CatalogSpec.model_validate({"models": models, "routes": routes, "gateway": {"log_url": "none"}})
    with GatewayServer(spec, log_url="none") as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        code = client.chat.completions.create(
            model="sizewise",
            messages=[{"role": "user", "content": "How do I sort a list of tuples by the second value in Python?"}],
        )
        assert code.model == "coder" and recorder.models()[-1] == "up-coder"
        domain = _filters(code)["domain"]
        assert "route 'code'" in domain["note"] and set(domain["removed"]) == {"general-s", "general-l"}
        chat = client.chat.completions.create(
            model="sizewise", messages=[{"role": "user", "content": "Write a short poem about autumn leaves."}]
        )
        assert chat.model in {"general-s", "general-l"} and "domain" not in _filters(chat)


def test_streamed_request_settles_its_budget_reservation(tmp_path: Path, recorder: Recorder) -> None:
    models = [
        entry("a", recorder.base_url, params_b=1, price_in=10, price_out=10),
        entry("b", recorder.base_url, params_b=2, price_in=20, price_out=20),
    ]
    log = tmp_path / "log.sqlite"
    spec = {"models": models, "gateway": {"log_url": f"sqlite:///{log}", "daily_budget_usd": 5.0}}
    with GatewayServer(spec) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="sizewise", messages=[{"role": "user", "content": "hi"}], max_tokens=20, stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text
        gw.rows()
    with sqlite3.connect(log) as db:
        rows = db.execute("select reserved, spent, settled from budget_ledger").fetchall()
    assert len(rows) == 1 and rows[0][2] == 1 and 0 < rows[0][1] <= rows[0][0]
