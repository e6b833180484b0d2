"""The live dashboard against a real gateway with known traffic: the JSON endpoint counts exactly what the
clients were answered, the page (in real headless Chromium) charts those numbers, it is behind the key,
and it loads nothing from any host but the gateway's own."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.gateway.auth import hash_key
from sizewise.gateway.dashboard import _Cache
from sizewise.learn.outcomes import Outcome

KEY = "dash-key-123"
#: An operator's key (``dashboard: all``): what Prometheus scrapes /metrics with when keys are on.
OPS_KEY = "ops-key-456"
LONG = "please summarise " + "word " * 120  # over the small model's 64-token window: the context filter fires
HISTORY = [
    {"time": "2026-12-01T10:00:00Z", "event": "add", "version": "v0001", "note": "incumbent"},
    {"time": "2026-12-01T10:00:01Z", "event": "promote", "from": None, "to": "v0001", "reason": "first"},
    {"time": "2026-12-02T10:00:00Z", "event": "add", "version": "v0002", "note": "retrained"},
    {"time": "2026-12-02T10:00:01Z", "event": "promote", "from": "v0001", "to": "v0002", "reason": "better"},
    {"time": "2026-12-03T10:00:00Z", "event": "rollback", "from": "v0002", "to": "v0001", "reason": "rolled back"},
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("dashboard")
    routers = folder / "routers"
    routers.mkdir()
    (routers / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in HISTORY))
    with FakeUpstream(timeout_sleep=5) as up:
        models = [
            fake_model("small", "ok-small", 1.0, up.base_url, context_window=64),
            fake_model("broken", "fail500", 2.0, up.base_url),
            fake_model("big", "ok-big", 8.0, up.base_url),
        ]
        gateway_settings = {
            "log_url": f"sqlite:///{folder / 'log.db'}",
            "router_dir": str(routers),
            "ladder": ["small", "broken", "big"],  # a cascade escalates past small, and falls back past broken
            "api_keys": [
                {"name": "team", "sha256": hash_key(KEY)},
                {"name": "ops", "sha256": hash_key(OPS_KEY), "dashboard": "all"},
            ],
        }
        with GatewayServer({"models": models, "gateway": gateway_settings}) as gw:
            yield gw


def _root(gateway: GatewayServer) -> str:
    return gateway.url.removesuffix("/v1")


def _ask(client: openai.OpenAI, model: str, text: str, seen: dict[str, Any]) -> None:
    """One request; what the client was answered is tallied in ``seen`` (the truth the dashboard must show)."""
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=8
        )
    except openai.APIStatusError as error:
        seen["errors"] += 1
        seen["fallbacks"] += bool(error.response.headers.get("x-sizewise-fallback"))
        return
    decision = json.loads(raw.text)["sizewise"]
    seen["ids"].setdefault(decision["model"], []).append(raw.headers["x-request-id"])
    seen["models"][decision["model"]] += 1
    seen["escalations"] += decision["escalated"]
    seen["fallbacks"] += decision["fallback"]
    seen["cost"] += decision["cost"]
    for report in decision["filters"]:
        seen["filters"][report["filter"]] += 1


@pytest.fixture(scope="module")
def traffic(gateway: GatewayServer) -> dict[str, Any]:
    """A few dozen requests over two serving models, with escalations, fallbacks, filters and errors."""
    client = openai.OpenAI(base_url=gateway.url, api_key=KEY, max_retries=0, timeout=30)
    seen: dict[str, Any] = {"models": Counter(), "filters": Counter(), "ids": {}}
    seen.update(errors=0, escalations=0, fallbacks=0, cost=0.0)
    plan = [("small", "hi there")] * 18 + [("big", "tell me more")] * 7 + [("cascade-logprob", "what is 2+2")] * 6
    plan += [("broken", "anyone there")] * 3 + [("sizewise", LONG)] * 3
    for model, text in plan:
        _ask(client, model, text, seen)
    assert gateway.app.state.gateway.log.flush(10)
    # Judged requests for the savings estimate: what shadow judging stores (both models scored per request).
    store = gateway.app.state.gateway.outcomes.store
    for request_id in seen["ids"]["small"][:4]:
        store.add(Outcome(request_id, "small", 0.6, "llm-judge"))
        store.add(Outcome(request_id, "big", 0.8, "llm-judge"))
    for request_id in seen["ids"]["big"][:2]:
        store.add(Outcome(request_id, "big", 1.0, "llm-judge"))
    return seen


def _data(gateway: GatewayServer, query: str = "") -> dict[str, Any]:
    response = httpx.get(f"{_root(gateway)}/dashboard/data{query}", headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_json_counts_exactly_the_traffic_the_clients_saw(gateway: GatewayServer, traffic: dict[str, Any]) -> None:
    # Known by construction: 18 asked small, 7 asked big, 6 cascades climbed small -> broken (fails) -> big.
    assert traffic["models"]["small"] == 18 and traffic["models"]["big"] >= 7 + 6
    assert traffic["escalations"] >= 6 and traffic["fallbacks"] >= 6 and traffic["errors"] == 3
    assert traffic["filters"]["context"] == 3
    data = _data(gateway, "?since=15m&bucket=30")
    assert data["totals"]["answered"] == sum(traffic["models"].values())
    assert {m: data["models"][m]["requests"] for m in data["models"]} == dict(traffic["models"])
    assert {m: sum(v) for m, v in data["requests"].items()} == dict(traffic["models"])
    for name in ("escalations", "fallbacks", "errors"):
        assert data["totals"][name] == sum(data[name]) == traffic[name], name
    assert data["filters"] == dict(traffic["filters"])
    assert data["totals"]["cost"] == pytest.approx(traffic["cost"], rel=1e-9)
    # Each bucket's shares add up to one, and the axis holds every request.
    for i, t in enumerate(data["t"]):
        shares = [data["share"][m][i] for m in data["share"] if data["share"][m][i] is not None]
        assert not shares or math.isclose(sum(shares), 1.0), t
    assert data["bucket_s"] == 30 and len(data["t"]) == math.ceil((data["until"] - data["since"]) / 30)


def test_latency_percentiles_are_those_of_the_logged_rows(gateway: GatewayServer, traffic: dict[str, Any]) -> None:
    rows = gateway.rows()
    data = _data(gateway)
    for model, numbers in data["models"].items():
        latencies = [r["latency_ms"] for r in rows if r["model"] == model and r["status"] < 400]
        assert numbers["p50_ms"] == pytest.approx(float(np.percentile(latencies, 50)))
        assert numbers["p95_ms"] == pytest.approx(float(np.percentile(latencies, 95)))


def test_savings_and_router_history(gateway: GatewayServer, traffic: dict[str, Any]) -> None:
    data = _data(gateway)
    n_small, n_big = traffic["models"]["small"], traffic["models"]["big"]
    # Stratified ratio (learn/savings.py): small's judged pairs are (0.6, 0.8), big's (1.0, 1.0); all pairs equal,
    # so the bootstrap interval collapses onto the estimate.
    quality = (n_small * 0.6 + n_big * 1.0) / (n_small * 0.8 + n_big * 1.0)
    savings = data["savings"]
    assert savings["judged"] == 6 and savings["big"] == "big"
    assert savings["quality"] == pytest.approx(quality, abs=1e-4)
    assert savings["interval"] == pytest.approx([quality, quality], abs=1e-4)
    assert savings["cost_ratio"] == pytest.approx(data["totals"]["cost"] / data["totals"]["big_cost"], abs=1e-4)
    router = data["router"]
    assert router["current"] == "v0001" and router["history"] == HISTORY


def test_the_dashboard_is_behind_the_key(gateway: GatewayServer) -> None:
    for path in ("/dashboard", "/dashboard/data", "/dashboard/plotly.min.js", "/dashboard/dashboard.js"):
        response = httpx.get(_root(gateway) + path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "missing_api_key"
        wrong = httpx.get(_root(gateway) + path, auth=("any", "not-the-key"))
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(_root(gateway) + path, auth=("any", KEY)).status_code == 200, path
        # A browser is asked for the key (Basic auth); it sends it to the page's scripts only when challenged.
        assert response.headers["www-authenticate"].startswith("Basic "), path


# -- the Grafana dashboard -------------------------------------------------------------------------------------
GRAFANA = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "sizewise-dashboard.json"
SELECTOR = re.compile(r"\b(sizewise_[a-z0-9_]+)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _exposed(gateway: GatewayServer) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets of its samples in the gateway's ``/metrics`` right now."""
    from prometheus_client.parser import text_string_to_metric_families

    gateway.app.state.gateway.outcomes.refresh()  # the savings gauges (the refresher thread runs every 30 s)
    text = httpx.get(f"{_root(gateway)}/metrics", headers={"authorization": f"Bearer {OPS_KEY}"}).text
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def test_metrics_count_every_client_so_only_an_operator_key_reads_them(gateway: GatewayServer) -> None:
    url = f"{_root(gateway)}/metrics"
    assert httpx.get(url).status_code == 401
    client = httpx.get(url, headers={"authorization": f"Bearer {KEY}"})
    assert client.status_code == 403 and client.json()["error"]["code"] == "metrics_forbidden"
    assert "sizewise_requests" not in client.text
    operator = httpx.get(url, headers={"authorization": f"Bearer {OPS_KEY}"})
    assert operator.status_code == 200 and "sizewise_requests_total" in operator.text


def test_every_series_the_grafana_dashboard_queries_is_in_metrics(
    gateway: GatewayServer, traffic: dict[str, Any]
) -> None:
    dashboard = json.loads(GRAFANA.read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    samples = _exposed(gateway)
    problems = []
    for panel in panels:
        for target in panel["targets"]:
            expr, labels = target["expr"], set()
            found = SELECTOR.findall(expr)
            assert found, expr
            for name, matchers in found:
                if name not in samples:
                    problems.append(f"{panel['title']!r}: {name} is not in /metrics")
                    continue
                labels |= {label for sample in samples[name] for label in sample}
                for label, op, value in MATCHER.findall(matchers):
                    values = {sample.get(label) for sample in samples[name]}
                    if label not in labels or (op == "=" and value not in values):
                        problems.append(f"{panel['title']!r}: {name} has no sample with {label}{op}{value!r}")
            grouped = {g.strip() for by in re.findall(r"by \(([^)]*)\)", expr) for g in by.split(",")}
            shown = set(re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]))
            problems += [f"{panel['title']!r}: no label {g!r} in {expr}" for g in (grouped | shown) - labels]
    assert not problems, problems


def test_computations_take_at_most_a_quarter_of_the_time() -> None:
    # However many pages ask, one computation at a time, each starting 3x the previous one's time after it ended.
    cache, spans = _Cache(), []

    def compute() -> bytes:
        started = time.monotonic()
        time.sleep(0.2)
        spans.append((started, time.monotonic()))
        return str(len(spans)).encode()

    async def many() -> list[bytes]:
        keys = [("1h", None), ("2h", None), ("1h", None), ("3h", None)]
        return await asyncio.gather(*(cache.answer(key, compute) for key in keys))

    bodies = asyncio.run(many())
    assert len(spans) == 3 and bodies[0] == bodies[2]  # the repeated query waited and took the cached answer
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start - end >= 3 * 0.2 * 0.99


@pytest.mark.parametrize(
    ("query", "param"),
    [("?since=yesterday", "since"), ("?bucket=-5", "bucket"), ("?since=7d&bucket=1", "bucket"), ("?since=0", "since")],
)
def test_a_bad_parameter_is_a_one_line_400(gateway: GatewayServer, query: str, param: str) -> None:
    response = httpx.get(f"{_root(gateway)}/dashboard/data{query}", headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and "\n" not in error["message"]


# -- the page in a real browser --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    import _chromium  # bench/, which fakes puts on sys.path

    reason = _chromium.missing()
    if reason:
        pytest.skip(reason)
    with _chromium.browser(1400, 1800, log_requests=True) as driver:
        yield driver


def _open(driver: Any, gateway: GatewayServer, query: str = "") -> dict[str, Any]:
    """Load the page with the key as the Basic password, wait for its first drawing, return its data."""
    port = urlsplit(gateway.url).port
    driver.get(f"http://viewer:{KEY}@127.0.0.1:{port}/dashboard{query}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = driver.execute_script("return window.sizewiseDashboard || null")
        if state and state["renders"] >= 1:
            return dict(state["last"])
        assert not (state and state["error"]), state
        time.sleep(0.2)
    raise AssertionError(f"the page never drew: {driver.execute_script('return document.body.innerText')}")


TRACES = """
const out = {};
for (const div of document.querySelectorAll('.chart')) {
  out[div.id] = (div.data || []).map((t) => ({name: t.name, x: t.x, y: t.y, error_y: t.error_y || null}));
}
return out;
"""


@pytest.mark.slow
def test_the_page_charts_those_numbers_in_a_real_browser(
    browser: Any, gateway: GatewayServer, traffic: dict[str, Any]
) -> None:
    shown = _open(browser, gateway, "?since=15m&bucket=30")  # the page passes its window on to the data
    assert shown["bucket_s"] == 30 and shown["until"] - shown["since"] <= 15 * 60 + 30
    charts = browser.execute_script(TRACES)
    assert all(len(t["x"]) == len(shown["t"]) for t in charts["requests"] + charts["events"])
    counts = {t["name"]: sum(t["y"]) for t in charts["requests"]}
    assert counts == dict(traffic["models"])
    for i in range(len(shown["t"])):  # each bucket's shares add up to one (or the bucket is empty)
        shares = [t["y"][i] for t in charts["share"] if t["y"][i] is not None]
        assert not shares or sum(shares) == pytest.approx(1.0)
    assert {t["name"] for t in charts["share"]} == set(traffic["models"])
    cost = {t["name"]: t["y"][-1] for t in charts["cost"]}  # cumulative: the last point is the total
    assert cost["served"] == pytest.approx(traffic["cost"]) and cost["always-big"] == pytest.approx(
        shown["totals"]["big_cost"]
    )
    events = {t["name"]: sum(t["y"]) for t in charts["events"]}
    assert events == {name: traffic[name] for name in ("escalations", "fallbacks", "errors")}
    filters = charts["filters"][0]
    assert dict(zip(filters["y"], filters["x"], strict=True)) == dict(traffic["filters"])
    latency = {t["name"]: dict(zip(t["x"], t["y"], strict=True)) for t in charts["latency"]}
    for model, numbers in shown["models"].items():
        assert latency["p50"][model] == numbers["p50_ms"] and latency["p95"][model] == numbers["p95_ms"]
    savings = {t["name"]: t for t in charts["savings"]}
    assert savings["cost vs always-big"]["y"] == [shown["savings"]["cost_ratio"]]
    kept = savings["quality retained"]
    low, high = shown["savings"]["interval"]
    assert kept["y"] == [shown["savings"]["quality"]]
    assert kept["error_y"]["array"][0] == pytest.approx(high - kept["y"][0])
    assert kept["error_y"]["arrayminus"][0] == pytest.approx(kept["y"][0] - low)
    quality = (traffic["models"]["small"] * 0.6 + traffic["models"]["big"]) / (
        traffic["models"]["small"] * 0.8 + traffic["models"]["big"]
    )
    assert kept["y"][0] == pytest.approx(quality, abs=1e-4)
    router = charts["router"][0]
    assert router["y"] == ["v0001", "v0001", "v0002", "v0002", "v0001"]
    assert "current v0001" in browser.execute_script("return document.getElementById('router').innerText")


@pytest.mark.slow
def test_the_page_loads_nothing_from_another_host(
    browser: Any, gateway: GatewayServer, traffic: dict[str, Any]
) -> None:
    _open(browser, gateway)
    port = urlsplit(gateway.url).port
    sources = browser.execute_script(
        "return [...document.querySelectorAll('script[src], link[href], img[src], iframe[src]')]"
        ".map((e) => e.src || e.href)"
    )
    local = [urlsplit(s) for s in sources]
    assert local and all((u.hostname, u.port) == ("127.0.0.1", port) for u in local), sources
    assert all(u.path.startswith("/dashboard/") for u in local), sources
    requested = [
        message["params"]["request"]["url"]
        for entry in browser.get_log("performance")
        if (message := json.loads(entry["message"])["message"])["method"] == "Network.requestWillBeSent"
    ]
    # chrome:// and data: URLs never leave the browser; anything over the network must go to the gateway.
    network = [urlsplit(u) for u in requested if re.match(r"^(https?|wss?|ftp):", u)]
    foreign = [u.geturl() for u in network if (u.hostname, u.port) != ("127.0.0.1", port)]
    assert requested and not foreign, foreign
    # Nothing refused by the page's content security policy, no script error (a missing favicon is no error).
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not [e for e in errors if "favicon.ico" not in e], errors


# -- without a log, and with a log that cannot be read ----------------------------------------------------------
def _bare(log_url: str) -> GatewayServer:
    models = [
        fake_model("small", "ok", 1.0, "http://127.0.0.1:9/v1"),
        fake_model("big", "ok", 8.0, "http://127.0.0.1:9/v1"),
    ]
    return GatewayServer({"models": models, "gateway": {"log_url": log_url}})


def test_without_a_log_the_data_says_why_and_keys_off_leave_it_open() -> None:
    with _bare("none") as gw:
        response = httpx.get(f"{_root(gw)}/dashboard/data")  # no key: keys are off
        assert response.status_code == 200
        body = response.json()
        assert body["log"] is False and "log_url" in body["error"] and body["router"]["policy"] == "sizewise"
        assert httpx.get(f"{_root(gw)}/dashboard").status_code == 200


def test_a_log_that_cannot_be_read_is_a_one_line_503(tmp_path: Path) -> None:
    import sqlite3

    with _bare(f"sqlite:///{tmp_path / 'log.db'}") as gw:
        with sqlite3.connect(tmp_path / "log.db") as connection:
            connection.execute("drop table requests")
        response = httpx.get(f"{_root(gw)}/dashboard/data")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "log_unavailable" and "\n" not in error["message"]
