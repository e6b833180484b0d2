"""Capabilities in the catalog and in the decision (issue #18 item 2).

What a request needs (tools, a JSON schema, reasoning effort, logprobs) is read from its OpenAI fields;
models lacking it are filtered out right after modality, with a 400 naming the capability when none is
left or when the request names such a model. Driven through the running gateway with the official
``openai`` client and a recording upstream that plays every remote model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes import GatewayServer, fake_model
from recording_upstream import RecordingUpstream
from sizewise.catalog.capabilities import capabilities
from sizewise.catalog.loader import parse_catalog
from sizewise.catalog.schema import CatalogSpec, ModelSpec
from sizewise.core.chat import ChatRequest
from sizewise.policy.constraints.capability import needed

HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}


def spec(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", "context_window": 4096, "backend": "openai", **fields})


@pytest.mark.parametrize(
    ("extra", "logprobs", "expected"),
    [
        ({}, False, []),
        ({"tools": TOOLS}, False, ["tools"]),
        ({"tools": TOOLS, "tool_choice": "none"}, False, []),
        ({"tools": TOOLS, "tool_choice": "required"}, False, ["tools"]),
        ({"functions": [TOOLS[0]["function"]]}, False, ["tools"]),
        ({"tools": []}, False, []),
        ({"response_format": SCHEMA}, False, ["json_schema"]),
        ({"response_format": {"type": "json_object"}}, False, ["json_object"]),
        ({"response_format": {"type": "text"}}, False, []),
        ({"reasoning_effort": "high"}, False, ["reasoning"]),
        ({"top_logprobs": 3}, False, ["logprobs"]),
        ({"tools": TOOLS, "reasoning_effort": "low"}, True, ["tools", "reasoning", "logprobs"]),
    ],
)
def test_what_a_request_needs_is_read_from_its_openai_fields(
    extra: dict[str, Any], logprobs: bool, expected: list[str]
) -> None:
    assert needed(ChatRequest(messages=HI, logprobs=logprobs, extra=extra)) == expected


def test_capabilities_come_from_the_entry_or_its_backends_defaults() -> None:
    local = spec(backend="llamacpp", settings={"embedded": "tiny"})
    assert capabilities(local) == {"tools", "json_object", "json_schema", "logprobs"}
    assert capabilities(spec()) == {"tools", "json_object", "json_schema", "logprobs"}
    assert capabilities(spec(backend="replay")) == set()
    assert capabilities(spec(capabilities=[])) == set()  # a declared list replaces the defaults
    assert capabilities(spec(capabilities=["json_schema"])) == {"json_schema", "json_object"}
    assert "reasoning" in capabilities(spec(capabilities=[], reasoning_effort="low"))
    assert capabilities(spec(capabilities=[], modalities=["text", "image", "audio"])) == {"vision", "audio"}


def test_vision_is_not_declared_but_follows_from_modalities() -> None:
    with pytest.raises(ValueError, match="capabilities"):
        spec(capabilities=["vision"])


def test_litellm_model_info_flags_become_capabilities() -> None:
    text = """\
model_list:
  - model_name: plain
    litellm_params: {model: openai/plain, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {supports_function_calling: false, supports_reasoning: true, supports_vision: true}
  - model_name: unsaid
    litellm_params: {model: openai/unsaid, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
"""
    catalog = parse_catalog(text, source="l.yaml")
    plain = catalog.get("plain")
    assert capabilities(plain) == {"json_object", "json_schema", "logprobs", "reasoning", "vision"}
    assert plain.modalities == ["text", "image"]
    assert catalog.get("unsaid").capabilities is None  # LiteLLM said nothing: the backend's defaults


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    # "small" answers text only; "big" has the defaults (tools, JSON...); neither reasons.
    models = [
        fake_model("small", "up-small", 0.5, upstream.base_url, capabilities=[]),
        fake_model("big", "up-big", 1.5, upstream.base_url, capabilities=["tools", "json_object"]),
    ]
    log = Path(tmp_path_factory.mktemp("cap")) / "log.sqlite"
    settings = {"log_url": f"sqlite:///{log}", "router": "heuristic", "session_keys": []}
    with GatewayServer(CatalogSpec.model_validate({"models": models, "gateway": settings})) as gw:
        yield gw


def client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)


def test_an_easy_prompt_with_tools_skips_the_model_without_tools(
    gateway: GatewayServer, upstream: RecordingUpstream
) -> None:
    plain = client(gateway).chat.completions.create(model="sizewise", messages=HI)
    assert plain.model == "small"  # the router alone sends "hi" to the small model
    before = len(upstream.bodies)
    raw = client(gateway).chat.completions.with_raw_response.create(model="sizewise", messages=HI, tools=TOOLS)
    assert raw.headers["x-sizewise-model"] == "big"
    assert upstream.models()[before:] == ["up-big"]
    assert upstream.bodies[-1]["tools"] == TOOLS
    filters = {f["filter"]: f for f in raw.parse().model_extra["sizewise"]["filters"]}
    assert filters["capability"]["removed"] == {"small": "lacks tools"}


def test_tool_choice_none_needs_no_tools(gateway: GatewayServer) -> None:
    answer = client(gateway).chat.completions.create(model="sizewise", messages=HI, tools=TOOLS, tool_choice="none")
    assert answer.model == "small"


def test_no_model_with_the_capability_is_a_400_naming_it(gateway: GatewayServer, upstream: RecordingUpstream) -> None:
    before = len(upstream.bodies)
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="sizewise", messages=HI, response_format=SCHEMA)  # type: ignore[arg-type]
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unsupported_capability" and error["param"] == "response_format"
    assert "no model in the catalog supports json_schema" in error["message"]
    assert len(upstream.bodies) == before  # nothing was called


def test_a_named_model_lacking_the_capability_is_a_400_saying_so(
    gateway: GatewayServer, upstream: RecordingUpstream
) -> None:
    before = len(upstream.bodies)
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="small", messages=HI, tools=TOOLS)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "model_lacks_capability" and error["param"] == "tools"
    assert error["message"].startswith("model 'small' does not support tools")
    with pytest.raises(openai.BadRequestError, match="does not support reasoning"):
        client(gateway).chat.completions.create(model="big", messages=HI, reasoning_effort="low")
    assert len(upstream.bodies) == before
