"""The dashboard shows a key only its own traffic (``api_keys[].dashboard``): two clients with known traffic
each, an operator key that sees all, a key that sees nothing, bearer and Basic auth, and the answer caches
(a cached answer for one client is never served to another, whichever asked first)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.gateway import dashboard
from sizewise.gateway.auth import hash_key
from sizewise.learn.outcomes import Outcome

KEYS = {"alice": "alice-key-1", "bob": "bob-key-2", "ops": "ops-key-3", "blind": "blind-key-4"}
SEES = {"alice": "own", "bob": "own", "ops": "all", "blind": "none"}
LONG = "please summarise " + "word " * 120  # over the small model's 64-token window: the context filter fires
QUERY = "?since=15m&bucket=30"
# Distinct traffic per client, so any number of one seen in the other's answer shows: only bob uses "mid"
# and "broken" (errors); their small/big counts and judged scores differ.
PLAN = {
    "alice": [("small", "hi")] * 5 + [("big", "more")] * 2 + [("sizewise", LONG)] * 2,
    "bob": [("small", "hi")] * 3 + [("big", "more")] * 6 + [("mid", "so-so")] * 4 + [("broken", "x")] * 2,
}
JUDGED = {"alice": (0.6, 0.8), "bob": (0.2, 1.0)}  # (small's score, big's score) on each client's judged requests


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("dashboard-scope")
    with FakeUpstream() as up:
        models = [
            fake_model("small", "ok-small", 1.0, up.base_url, context_window=64),
            fake_model("mid", "ok-mid", 3.0, up.base_url),
            fake_model("broken", "fail500", 4.0, up.base_url),
            fake_model("big", "ok-big", 8.0, up.base_url),
        ]
        keys = [{"name": name, "sha256": hash_key(KEYS[name]), "dashboard": SEES[name]} for name in KEYS]
        settings = {"log_url": f"sqlite:///{folder / 'log.db'}", "api_keys": keys, "ladder": ["small", "big"]}
        with GatewayServer({"models": models, "gateway": settings}) as gw:
            yield gw


def _root(gateway: GatewayServer) -> str:
    return gateway.url.removesuffix("/v1")


@pytest.fixture(scope="module")
def traffic(gateway: GatewayServer) -> dict[str, dict[str, Any]]:
    """Each client's requests and what it was answered; two judged requests per client for the savings."""
    seen: dict[str, dict[str, Any]] = {}
    for name, plan in PLAN.items():
        client = openai.OpenAI(base_url=gateway.url, api_key=KEYS[name], max_retries=0, timeout=30)
        mine: dict[str, Any] = {"models": Counter(), "filters": Counter(), "ids": {}, "errors": 0, "cost": 0.0}
        for model, text in plan:
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=model, messages=[{"role": "user", "content": text}], max_tokens=8
                )
            except openai.APIStatusError:
                mine["errors"] += 1
                continue
            decision = json.loads(raw.text)["sizewise"]
            mine["models"][decision["model"]] += 1
            mine["ids"].setdefault(decision["model"], []).append(raw.headers["x-request-id"])
            mine["cost"] += decision["cost"]
            mine["filters"].update(report["filter"] for report in decision["filters"])
        seen[name] = mine
    assert gateway.app.state.gateway.log.flush(10)
    store = gateway.app.state.gateway.outcomes.store
    for name, (small, big) in JUDGED.items():
        for request_id in seen[name]["ids"]["small"][:2]:
            store.add(Outcome(request_id, "small", small, "llm-judge"))
            store.add(Outcome(request_id, "big", big, "llm-judge"))
        store.add(Outcome(seen[name]["ids"]["big"][0], "big", 1.0, "llm-judge"))
    return seen


def _data(gateway: GatewayServer, name: str, query: str = QUERY, basic: bool = False) -> httpx.Response:
    url = f"{_root(gateway)}/dashboard/data{query}"
    if basic:
        return httpx.get(url, auth=("anyone", KEYS[name]))
    return httpx.get(url, headers={"authorization": f"Bearer {KEYS[name]}"})


def _quality(counts: Counter[str], pairs: list[tuple[float, float]]) -> float:
    """The savings estimate (learn/savings.py) for these served counts: small's judged pairs, big's (1, 1)."""
    a = sum(p[0] for p in pairs) / len(pairs)
    b = sum(p[1] for p in pairs) / len(pairs)
    others = sum(n for m, n in counts.items() if m != "big")  # "mid" borrows small's pairs (same kind)
    return (others * a + counts["big"]) / (others * b + counts["big"])


def _assert_shows(data: dict[str, Any], models: Counter[str], errors: int, cost: float, filters: Counter[str]) -> None:
    assert {m: v["requests"] for m, v in data["models"].items()} == dict(models)
    assert {m: sum(v) for m, v in data["requests"].items()} == dict(models)
    assert data["totals"]["answered"] == sum(models.values())
    assert data["totals"]["errors"] == sum(data["errors"]) == errors
    assert data["totals"]["cost"] == pytest.approx(cost, rel=1e-9)
    assert data["filters"] == dict(filters)


def _own(traffic: dict[str, dict[str, Any]], name: str) -> tuple[Counter[str], int, float, Counter[str]]:
    mine = traffic[name]
    return mine["models"], mine["errors"], mine["cost"], mine["filters"]


@pytest.mark.parametrize("basic", [False, True], ids=["bearer", "basic"])
def test_a_key_sees_exactly_its_own_traffic(gateway: GatewayServer, traffic: dict[str, Any], basic: bool) -> None:
    assert traffic["bob"]["models"]["mid"] == 4 and traffic["bob"]["errors"] == 2  # only bob's traffic has them
    assert traffic["alice"]["filters"]["context"] == 2 and not traffic["bob"]["filters"]
    for name in ("alice", "bob"):
        response = _data(gateway, name, basic=basic)
        assert response.status_code == 200, response.text
        data = response.json()
        _assert_shows(data, *_own(traffic, name))
        assert data["client"] == name
        small, big = JUDGED[name]
        savings = data["savings"]
        assert savings["judged"] == 3 and savings["requests"] == sum(traffic[name]["models"].values())
        assert savings["quality"] == pytest.approx(_quality(traffic[name]["models"], [(small, big)]), abs=1e-4)
        assert savings["cost_ratio"] == pytest.approx(data["totals"]["cost"] / data["totals"]["big_cost"], abs=1e-4)
    alice = _data(gateway, "alice", basic=basic).json()
    assert "mid" not in alice["models"] and alice["totals"]["errors"] == 0  # none of bob's


def test_an_operator_key_sees_the_sum(gateway: GatewayServer, traffic: dict[str, Any]) -> None:
    data = _data(gateway, "ops").json()
    models = traffic["alice"]["models"] + traffic["bob"]["models"]
    filters = traffic["alice"]["filters"] + traffic["bob"]["filters"]
    errors = traffic["alice"]["errors"] + traffic["bob"]["errors"]
    _assert_shows(data, models, errors, traffic["alice"]["cost"] + traffic["bob"]["cost"], filters)
    assert data["savings"]["judged"] == 6 and data["client"] is None
    assert data["savings"]["quality"] == pytest.approx(_quality(models, list(JUDGED.values())), abs=1e-4)


@pytest.mark.parametrize("first", ["ops", "bob"])
def test_a_cached_answer_is_never_another_clients(
    gateway: GatewayServer, traffic: dict[str, Any], first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Answers live long enough here that only the cache key can tell the clients apart; a fresh window per
    # case, so the savings cache (30 s) is cold too and the first caller's estimate is computed first.
    monkeypatch.setattr(dashboard, "CACHE_S", 600.0)
    query = f"?since={900 + len(first)}s&bucket=30"
    assert _data(gateway, first, query).status_code == 200
    data = _data(gateway, "alice", query).json()
    _assert_shows(data, *_own(traffic, "alice"))
    assert data["savings"]["judged"] == 3 and data["savings"]["requests"] == sum(traffic["alice"]["models"].values())
    # ... and the other way round: alice's cached answer is not served to the operator either.
    everyone = _data(gateway, "ops", query).json()
    assert everyone["totals"]["answered"] == sum((traffic["alice"]["models"] + traffic["bob"]["models"]).values())


def test_query_parameters_cannot_widen_the_view(gateway: GatewayServer, traffic: dict[str, Any]) -> None:
    for extra in ("&client=bob", "&api_key=bob", "&client=", "&scope=all"):
        data = _data(gateway, "alice", QUERY + extra).json()
        _assert_shows(data, *_own(traffic, "alice"))
        assert data["client"] == "alice"


def test_a_key_that_sees_nothing_gets_a_403_everywhere(gateway: GatewayServer) -> None:
    for path in ("/dashboard", "/dashboard/data", "/dashboard/plotly.min.js", "/dashboard/dashboard.js"):
        for response in (
            httpx.get(_root(gateway) + path, headers={"authorization": f"Bearer {KEYS['blind']}"}),
            httpx.get(_root(gateway) + path, auth=("anyone", KEYS["blind"])),
        ):
            assert response.status_code == 403, path
            error = response.json()["error"]
            assert error["code"] == "dashboard_forbidden" and "\n" not in error["message"]
            assert "www-authenticate" not in response.headers  # asking again with the same key would not help
    # The key still works for the API itself (a call that logs no row, so the other tests' sums stay exact).
    client = openai.OpenAI(base_url=gateway.url, api_key=KEYS["blind"], max_retries=0, timeout=30)
    assert "small" in {model.id for model in client.models.list()}


def test_a_bad_dashboard_setting_is_a_config_error() -> None:
    from pydantic import ValidationError

    from sizewise.catalog.schema import ApiKey

    with pytest.raises(ValidationError, match="dashboard"):
        ApiKey(name="x", sha256="0" * 64, dashboard="everything")  # type: ignore[arg-type]
    assert ApiKey(name="x", sha256="0" * 64).dashboard == "own"  # a client key sees its own traffic by default
    # The log keeps 200 characters of a name: two longer names alike in those would count each other's rows.
    with pytest.raises(ValidationError, match="200 characters"):
        ApiKey(name="team-" + "x" * 196, sha256="0" * 64)
    assert ApiKey(name="x" * 200, sha256="0" * 64).name == "x" * 200


# Requests per model as the page's "requests" chart draws them (the sum of each trace).
COUNTS = """
return Object.fromEntries(
  document.getElementById('requests').data.map((t) => [t.name, t.y.reduce((a, b) => a + b, 0)])
);
"""


@pytest.mark.slow
def test_the_page_in_a_real_browser_charts_only_the_callers_traffic(
    gateway: GatewayServer, traffic: dict[str, Any]
) -> None:
    import _chromium  # bench/, which fakes puts on sys.path

    if reason := _chromium.missing():
        pytest.skip(reason)
    port = gateway.url.split(":")[-1].removesuffix("/v1")
    with _chromium.browser(1200, 1400) as driver:
        driver.get(f"http://viewer:{KEYS['alice']}@127.0.0.1:{port}/dashboard{QUERY}")  # the key as Basic password
        deadline = time.monotonic() + 60
        while not (state := driver.execute_script("return window.sizewiseDashboard || null")) or not state["renders"]:
            assert time.monotonic() < deadline and not (state and state["error"]), state
            time.sleep(0.2)
        counts = driver.execute_script(COUNTS)
        summary = driver.execute_script("return document.getElementById('summary').innerText")
    assert counts == dict(traffic["alice"]["models"])  # none of bob's "mid", nor his counts
    assert summary.startswith(f"key alice: {sum(traffic['alice']['models'].values())} answered")


def test_streamed_and_anthropic_requests_count_for_their_key(tmp_path: Any) -> None:
    """Every API a client can use logs its key name, so its own dashboard misses none of its requests."""
    import anthropic

    keys = {"carol": "carol-key-5", "dave": "dave-key-6"}
    with FakeUpstream() as up:
        models = [fake_model("small", "ok-small", 1.0, up.base_url), fake_model("big", "ok-big", 8.0, up.base_url)]
        key_specs = [{"name": name, "sha256": hash_key(key)} for name, key in keys.items()]
        settings = {"log_url": f"sqlite:///{tmp_path / 'log.db'}", "api_keys": key_specs}
        with GatewayServer({"models": models, "gateway": settings}) as gw:
            chat = openai.OpenAI(base_url=gw.url, api_key=keys["carol"], max_retries=0, timeout=30)
            stream = chat.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            claude = anthropic.Anthropic(base_url=_root(gw), api_key=keys["carol"], max_retries=0)
            claude.messages.create(model="big", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
            dave = openai.OpenAI(base_url=gw.url, api_key=keys["dave"], max_retries=0, timeout=30)
            dave.chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
            assert gw.app.state.gateway.log.flush(10)
            seen = {
                name: httpx.get(f"{_root(gw)}/dashboard/data", headers={"authorization": f"Bearer {key}"}).json()
                for name, key in keys.items()
            }
    assert {m: v["requests"] for m, v in seen["carol"]["models"].items()} == {"small": 1, "big": 1}
    assert {m: v["requests"] for m, v in seen["dave"]["models"].items()} == {"big": 1}


def test_with_keys_off_the_dashboard_counts_every_request(tmp_path: Any) -> None:
    with FakeUpstream() as up:
        models = [fake_model("small", "ok-small", 1.0, up.base_url), fake_model("big", "ok-big", 8.0, up.base_url)]
        with GatewayServer({"models": models, "gateway": {"log_url": f"sqlite:///{tmp_path / 'log.db'}"}}) as gw:
            for model, user in (("small", "u1"), ("big", "u2"), ("big", "u3")):
                chat = openai.OpenAI(base_url=gw.url, api_key=f"anything-{user}", max_retries=0, timeout=30)
                chat.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4, user=user
                )
            assert gw.app.state.gateway.log.flush(10)
            data = httpx.get(f"{_root(gw)}/dashboard/data").json()
    assert {m: v["requests"] for m, v in data["models"].items()} == {"small": 1, "big": 2} and data["client"] is None
