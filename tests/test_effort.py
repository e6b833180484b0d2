"""Reasoning effort as a routing dimension (issue #18 item 4): one ladder rung per effort.

A catalog entry listing ``reasoning_efforts`` becomes ``<name>@<effort>`` rungs priced by the tokens each
effort is expected to spend; the router picks among them like among any models, and the call sends the
rung's ``reasoning_effort`` upstream (checked on a recording upstream through the running gateway).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes import GatewayServer, fake_model
from recording_upstream import RecordingUpstream
from sizewise.catalog.catalog import Catalog, order_ladder
from sizewise.catalog.schema import CatalogSpec

HARD = (
    "Prove step by step that the integral of x^2 from 0 to 3 equals 9, then derive and solve the equation "
    "3x + 7 = 22, compute 12 * 34, analyze the algorithm's complexity and implement it: ```def f(x): ...```"
)


def reasoner(base_url: str = "http://127.0.0.1:9/v1", **fields: Any) -> dict[str, Any]:
    entry = fake_model("o4-mini", "o4-mini", 1.0, base_url, aliases=["reasoner"], **fields)
    del entry["params_b"], entry["settings"]["model"]  # a cloud model: size unknown, upstream name = entry name
    return {**entry, "price_in": 1.1, "price_out": 4.4}


def test_an_entry_with_efforts_becomes_one_rung_per_effort_priced_by_its_factor() -> None:
    spec = CatalogSpec.model_validate(
        {
            "models": [reasoner(reasoning_efforts=["high", "low", "medium"])],
            "routes": [{"name": "maths", "examples": ["integral"], "models": ["o4-mini"]}],
            "gateway": {"ladder": ["o4-mini"]},
        }
    )
    rungs = {m.name: m for m in spec.models}
    assert list(rungs) == ["o4-mini@high", "o4-mini@low", "o4-mini@medium"]
    assert {m.reasoning_effort for m in rungs.values()} == {"low", "medium", "high"}
    assert {m.settings["model"] for m in rungs.values()} == {"o4-mini"}  # the upstream keeps its name
    assert {m.price_out for m in rungs.values()} == {4.4}  # real prices: the factor only orders and estimates
    assert [rungs[f"o4-mini@{e}"].output_factor for e in ("low", "medium", "high")] == [2.0, 4.0, 8.0]
    # The entry's name and aliases name the medium rung (the upstream's default effort).
    assert rungs["o4-mini@medium"].aliases == ["o4-mini", "reasoner"] and not rungs["o4-mini@low"].aliases
    # One order for everything: the ladder (and what names the entry) climbs low -> high.
    assert [m.name for m in order_ladder(spec.models)] == ["o4-mini@low", "o4-mini@medium", "o4-mini@high"]
    assert spec.gateway.ladder == ["o4-mini@low", "o4-mini@medium", "o4-mini@high"]
    assert [m.name for m in Catalog(spec).ladder()] == spec.gateway.ladder
    assert spec.routes[0].models == spec.gateway.ladder
    again = CatalogSpec.model_validate(spec.model_dump())  # expanding twice changes nothing
    assert [m.name for m in again.models] == [m.name for m in spec.models]


def test_the_output_factors_are_a_setting() -> None:
    gateway = {"effort_output_factor": {"low": 1.5, "high": 30}}
    spec = CatalogSpec.model_validate(
        {"models": [reasoner(reasoning_efforts=["low", "medium", "high"])], "gateway": gateway}
    )
    assert [m.output_factor for m in spec.models] == [1.5, 4.0, 30.0]  # medium keeps its default
    with pytest.raises(ValueError, match=r"give reasoning_efforts .* or reasoning_effort .* not both"):
        CatalogSpec.model_validate({"models": [reasoner(reasoning_efforts=["low"], reasoning_effort="high")]})
    with pytest.raises(ValueError, match="effort_output_factor"):
        CatalogSpec.model_validate({"models": [reasoner()], "gateway": {"effort_output_factor": {"huge": 2}}})


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    # The ladder: small < o4-mini@low < o4-mini@high; the routing pair is the top two: the model's two efforts.
    models = [fake_model("small", "up-small", 0.5, upstream.base_url), reasoner(upstream.base_url)]
    models[1]["reasoning_efforts"] = ["low", "high"]
    log = Path(tmp_path_factory.mktemp("effort")) / "log.sqlite"
    settings = {"log_url": f"sqlite:///{log}", "router": "heuristic", "session_keys": []}
    with GatewayServer({"models": models, "gateway": settings}) as gw:
        yield gw


def ask(gw: GatewayServer, model: str, text: str, **kwargs: Any) -> str:
    client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs
    )
    return raw.headers["x-sizewise-model"]


def test_the_router_picks_the_effort_and_the_call_sends_it(gateway: GatewayServer, upstream: RecordingUpstream) -> None:
    assert ask(gateway, "sizewise", "hi") == "o4-mini@low"
    assert (upstream.bodies[-1]["model"], upstream.bodies[-1]["reasoning_effort"]) == ("o4-mini", "low")
    assert ask(gateway, "sizewise", HARD, stream=False) == "o4-mini@high"
    assert (upstream.bodies[-1]["model"], upstream.bodies[-1]["reasoning_effort"]) == ("o4-mini", "high")
    models = {m.id for m in openai.OpenAI(base_url=gateway.url, api_key="x").models.list()}
    assert {"o4-mini@low", "o4-mini@high"} <= models


def test_a_streamed_answer_sends_the_effort_too(gateway: GatewayServer, upstream: RecordingUpstream) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="o4-mini@low", messages=[{"role": "user", "content": HARD}], stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "ok"
    assert upstream.bodies[-1]["reasoning_effort"] == "low" and upstream.bodies[-1]["stream"] is True


def test_clients_may_name_a_rung_or_the_model(gateway: GatewayServer, upstream: RecordingUpstream) -> None:
    assert ask(gateway, "o4-mini@low", HARD) == "o4-mini@low"
    assert upstream.bodies[-1]["reasoning_effort"] == "low"
    assert ask(gateway, "o4-mini", "hi") == "o4-mini@high"  # no medium listed: the middle one of [low, high]
    assert ask(gateway, "reasoner", "hi") == "o4-mini@high"
    with pytest.raises(openai.NotFoundError, match="o4-mini@medium"):
        ask(gateway, "o4-mini@medium", "hi")


def test_a_requests_own_effort_picks_its_rung_and_is_never_overridden(
    gateway: GatewayServer, upstream: RecordingUpstream
) -> None:
    assert ask(gateway, "sizewise", HARD, reasoning_effort="low") == "o4-mini@low"
    assert upstream.bodies[-1]["reasoning_effort"] == "low"
    # A named rung keeps the client's field: what the client sent is what the upstream gets.
    assert ask(gateway, "o4-mini@high", "hi", reasoning_effort="low") == "o4-mini@high"
    assert upstream.bodies[-1]["reasoning_effort"] == "low"
    # An effort with no rung of its own: the rungs stay (a note says so) and the request's effort is sent.
    assert ask(gateway, "sizewise", HARD, reasoning_effort="medium") == "o4-mini@high"
    assert upstream.bodies[-1]["reasoning_effort"] == "medium"
