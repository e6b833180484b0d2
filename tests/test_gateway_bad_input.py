"""Bad input gets an OpenAI-style JSON error with the right 4xx, never a 500 or a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.gateway.auth import hash_key

OK = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with FakeUpstream() as up:
        models = [fake_model("small", "ok-s", 1.0, up.base_url), fake_model("big", "ok-b", 2.0, up.base_url)]
        log = Path(tmp_path_factory.mktemp("log")) / "log.sqlite"
        settings = {"log_url": f"sqlite:///{log}", "router": "heuristic"}
        with GatewayServer({"models": models, "gateway": settings}) as gw:
            yield gw


def _post(gateway: GatewayServer, content: bytes | None = None, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{gateway.url}/chat/completions", content=content, timeout=10, **kwargs)  # type: ignore[arg-type]


def _check(response: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def test_malformed_json(gateway: GatewayServer) -> None:
    _check(_post(gateway, b'{"model": "sizewise", "messages": ['), 400, "invalid_json")


def test_body_not_an_object(gateway: GatewayServer) -> None:
    _check(_post(gateway, b"[1, 2]"), 400, "invalid_request")


def test_missing_messages(gateway: GatewayServer) -> None:
    _check(_post(gateway, json={"model": "sizewise"}), 400, "missing_field", "messages")


def test_empty_messages(gateway: GatewayServer) -> None:
    _check(_post(gateway, json={"model": "sizewise", "messages": []}), 400, "invalid_value", "messages")


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("messages", "hello", "messages"),
        ("max_tokens", "ten", "max_tokens"),
        ("max_tokens", 0, "max_tokens"),
        ("temperature", 7, "temperature"),
        ("stream", "yes please", "stream"),
        ("stream", "yes", "stream"),
        ("stream", 1, "stream"),
        ("max_tokens", True, "max_tokens"),
        ("logprobs", "true", "logprobs"),
        ("stop", "", "stop"),
        ("model", 42, "model"),
    ],
)
def test_wrong_types(gateway: GatewayServer, field: str, value: object, param: str) -> None:
    body = {"model": "sizewise", "messages": OK, field: value}
    _check(_post(gateway, json=body), 400, "invalid_value", param)


@pytest.mark.parametrize(
    ("messages", "param", "message"),
    [
        ([{"role": "user", "content": ""}], "messages", "the prompt is empty"),
        ([{"role": "user", "content": []}], "messages", "the prompt is empty"),
        ([{"role": "user", "content": None}], "messages.0", "a user message needs 'content'"),
        ([{"role": "user", "content": [{"type": "video_url"}]}], "messages.0.content", "unsupported type 'video_url'"),
        ([{"role": "user", "content": [{"text": "hi"}]}], "messages.0.content", "unsupported type None"),
        ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages.0.content", "needs a string 'text'"),
    ],
)
def test_empty_or_unsupported_content(gateway: GatewayServer, messages: list, param: str, message: str) -> None:
    error = _check(_post(gateway, json={"messages": messages}), 400, "invalid_value", param)
    assert message in error["message"]


def test_bad_message_role(gateway: GatewayServer) -> None:
    error = _check(_post(gateway, json={"messages": [{"role": "robot", "content": "x"}]}), 400, "invalid_value")
    assert error["param"].startswith("messages.0")


def test_unknown_model_with_the_openai_client(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=OK)
    assert caught.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("model", ["router-nosuchrouter-0.5", "router-abc", "router--x"])
def test_unknown_or_malformed_router(gateway: GatewayServer, model: str) -> None:
    _check(_post(gateway, json={"model": model, "messages": OK}), 404, "model_not_found")


def test_prompt_longer_than_every_context(gateway: GatewayServer) -> None:
    huge = [{"role": "user", "content": "word " * 20_000}]  # ~25k tokens > 4096
    error = _check(_post(gateway, json={"model": "sizewise", "messages": huge}), 400, "context_length_exceeded")
    assert "4096" in error["message"]


@pytest.mark.parametrize("n", [0, 129])
def test_n_out_of_range(gateway: GatewayServer, n: int) -> None:
    # n > 1 itself passes through (tests/test_passthrough.py); n outside 1..128 is a 400 naming the field.
    client = openai.OpenAI(base_url=gateway.url, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sizewise", messages=OK, n=n)
    assert caught.value.body["param"] == "n"


def test_bad_latency_header(gateway: GatewayServer) -> None:
    _check(_post(gateway, json={"messages": OK}, headers={"x-sizewise-max-latency-ms": "soon"}), 400, "invalid_header")


def test_unknown_route_is_json_404(gateway: GatewayServer) -> None:
    _check(httpx.get(f"{gateway.url}/nothing-here"), 404, "not_found")


def test_errors_are_logged_without_crashing(gateway: GatewayServer) -> None:
    _post(gateway, b"{")
    assert gateway.rows()[-1]["status"] == 400


def test_api_keys(tmp_path: Path) -> None:
    with FakeUpstream() as up:
        models = [fake_model("small", "ok-s", 1.0, up.base_url), fake_model("big", "ok-b", 2.0, up.base_url)]
        settings = {
            "log_url": f"sqlite:///{tmp_path / 'l.sqlite'}",
            "api_keys": [{"name": "team-a", "sha256": hash_key("s3cret")}],
        }
        with GatewayServer({"models": models, "gateway": settings}) as gw:
            _check(_post(gw, json={"messages": OK}), 401, "missing_api_key")
            _check(_post(gw, json={"messages": OK}, headers={"authorization": "Bearer wrong"}), 401, "invalid_api_key")
            client = openai.OpenAI(base_url=gw.url, api_key="s3cret", max_retries=0)
            answer = client.chat.completions.create(model="small", messages=OK)
            assert answer.choices[0].message.content.startswith("echo:")
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=gw.url, api_key="nope", max_retries=0).chat.completions.create(
                    model="small", messages=OK
                )
            rows = gw.rows()
    assert [r["api_key"] for r in rows if r["status"] == 200] == ["team-a"]
    assert [r["status"] for r in rows].count(401) == 0  # counted in /metrics, not stored row by row


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"router": "missing.zip"}, "router file 'missing.zip': no such file"),
        ({"router": "garbage"}, "garbage"),
        ({"default_policy": "bogus"}, "unknown model 'bogus'"),
        ({"default_policy": "multi-nothing-0.5"}, "nothing"),
        ({"default_policy": "cascade-bogus"}, "unknown scorer 'bogus'"),
        ({"default_policy": "cascade-logprob:high"}, "bad cascade threshold 'high'"),
    ],
)
def test_a_bad_configured_policy_fails_at_start_up(tmp_path: Path, settings: dict, message: str) -> None:
    from sizewise.catalog.schema import CatalogSpec
    from sizewise.errors import ConfigError
    from sizewise.gateway.app import create_app

    (tmp_path / "garbage.zip").write_bytes(b"not a router")
    models = [
        fake_model("small", "ok-s", 1.0, "http://127.0.0.1:9/v1"),
        fake_model("big", "ok-b", 2.0, "http://127.0.0.1:9/v1"),
    ]
    spec = CatalogSpec.model_validate({"models": models, "gateway": {**settings, "log_url": "none"}})
    with pytest.raises(ConfigError, match="gateway settings") as info:
        create_app(spec, router_dir=tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("folder", r"is a folder, not a table file"),
        ("garbage.parquet", r"is not a readable parquet file"),
        ("answers.parquet", r"unknown model 'other'"),
        ("no-answers.parquet", r"no recorded responses"),
    ],
)
def test_a_bad_replay_table_fails_at_start_up(tmp_path: Path, table: str, message: str) -> None:
    import numpy as np
    import pandas as pd

    from sizewise.catalog.schema import CatalogSpec
    from sizewise.errors import ConfigError
    from sizewise.evaluation.table import OutcomeTable
    from sizewise.gateway.app import create_app

    (tmp_path / "folder").mkdir()
    (tmp_path / "garbage.parquet").write_bytes(b"not a table")
    prompts = pd.DataFrame({"prompt_id": ["p"], "text": ["hi"]})
    answers = np.array([["a", "b"]], dtype=object)
    OutcomeTable("t", prompts, ["x", "y"], np.ones((1, 2)), responses=answers).save(tmp_path / "answers.parquet")
    OutcomeTable("t", prompts, ["x", "y"], np.ones((1, 2))).save(tmp_path / "no-answers.parquet")
    column = "other" if table == "answers.parquet" else "x"
    replay = {"backend": "replay", "context_window": 100, "settings": {"table": str(tmp_path / table), "model": column}}
    spec = CatalogSpec.model_validate({"models": [{"name": "r", **replay}], "gateway": {"log_url": "none"}})
    with pytest.raises(ConfigError, match=rf"model 'r': cannot replay its table: .*{message}") as info:
        create_app(spec)
    assert "\n" not in str(info.value)


def test_a_good_replay_table_is_loaded_at_start_up_and_answers(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    from starlette.testclient import TestClient

    from sizewise.catalog.schema import CatalogSpec
    from sizewise.evaluation.table import OutcomeTable
    from sizewise.gateway.app import create_app

    prompts = pd.DataFrame({"prompt_id": ["p"], "text": ["hi"]})
    answers = np.array([["hello"]], dtype=object)
    OutcomeTable("t", prompts, ["x"], np.ones((1, 1)), responses=answers).save(tmp_path / "t.parquet")
    replay = {"backend": "replay", "context_window": 100, "settings": {"table": str(tmp_path / "t.parquet")}}
    spec = CatalogSpec.model_validate({"models": [{"name": "x", **replay}], "gateway": {"log_url": "none"}})
    with TestClient(create_app(spec)) as client:
        response = client.post("/v1/chat/completions", json={"model": "x", "messages": OK})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "hello"


def test_a_single_llm_catalog_serves_sizewise_with_that_model() -> None:
    with FakeUpstream() as up:
        catalog = {"models": [fake_model("only", "ok-o", 1.0, up.base_url)], "gateway": {"log_url": "none"}}
        with GatewayServer(catalog) as gw:
            client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
            response = client.chat.completions.create(model="sizewise", messages=OK)
    decision = response.model_extra["sizewise"]
    assert decision["model"] == "only" and decision["reason"] == "the catalog's only LLM"


def test_router_fields_parse_names_with_dashes_and_negative_thresholds() -> None:
    from sizewise.errors import UnknownNameError
    from sizewise.policy.routing import parse_router_field

    assert parse_router_field("router-knn--0.1") == ("knn", -0.1)
    assert parse_router_field("router-my-router-2-0.5") == ("my-router-2", 0.5)
    assert parse_router_field("multi-mf-1e-3", "multi-") == ("mf", 0.001)
    for field in ("router-knn", "router-knn-inf", "router-knn-0.5x"):
        with pytest.raises(UnknownNameError, match="expected router-<name>-<number>"):
            parse_router_field(field)


def test_a_negative_threshold_routes(gateway: GatewayServer) -> None:
    response = _post(gateway, json={"model": "router-heuristic--0.5", "messages": OK})
    assert response.status_code == 200, response.text
    assert response.json()["sizewise"]["threshold"] == -0.5
