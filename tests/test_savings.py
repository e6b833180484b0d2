"""Savings with quality (issue #22, item 5): the estimator against simulations with known truth (its 95%
interval covers the truth about 95% of the time), and the numbers in ``sizewise log``, ``/metrics`` and the
decision object of a real gateway."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from billing_upstream import BillingUpstream
from fakes import GatewayServer, fake_model
from sizewise.learn.outcomes import Outcome
from sizewise.learn.savings import Savings, estimate, judged_pairs

Run = Callable[..., tuple[int, str, str]]


def _traffic(rng: np.random.Generator, size: int = 20_000) -> tuple[float, list[dict], dict]:
    """A routed population: hard prompts tend to go to the big model, the small one fails more often on hard
    ones. Returns (true quality retained, per-model totals, the population's arrays)."""
    hardness = rng.uniform(size=size)
    to_big = hardness + rng.normal(0, 0.2, size) > 0.6
    q_big = (rng.uniform(size=size) < 0.9 - 0.4 * hardness).astype(float)
    q_small = (rng.uniform(size=size) < 0.85 - 0.7 * hardness).astype(float)
    q_served = np.where(to_big, q_big, q_small)
    totals = [
        {"model": "big", "requests": int(to_big.sum()), "cost": float(to_big.sum()), "big_cost": float(to_big.sum())},
        {
            "model": "small",
            "requests": int((~to_big).sum()),
            "cost": 0.1 * (~to_big).sum(),
            "big_cost": float((~to_big).sum()),
        },
    ]
    return (
        float(q_served.sum() / q_big.sum()),
        totals,
        {"to_big": to_big, "q_served": q_served, "q_big": q_big, "hard": hardness},
    )


def _judge(
    pop: dict, chosen: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, list[tuple[float, float, float]]]:
    pairs: dict[str, list[tuple[float, float, float]]] = {}
    for k, i in enumerate(chosen):
        model = "big" if pop["to_big"][i] else "small"
        weight = 1.0 if weights is None else float(weights[k])
        pairs.setdefault(model, []).append((pop["q_served"][i], pop["q_big"][i], weight))
    return pairs


@pytest.mark.parametrize("judged", [60, 400])
def test_the_interval_covers_the_truth_95_percent_of_the_time(judged: int) -> None:
    """300 simulated deployments, a uniform sample of `judged` requests judged in each."""
    rng = np.random.default_rng(7)
    covered, widths = 0, []
    for replicate in range(300):
        truth, totals, pop = _traffic(rng)
        chosen = rng.choice(len(pop["q_big"]), judged, replace=False)
        s = estimate(totals, _judge(pop, chosen), "big", bootstrap=800, seed=replicate)
        assert s.low is not None and s.high is not None
        covered += s.low <= truth <= s.high
        widths.append(s.high - s.low)
    assert 0.92 <= covered / 300 <= 0.985, covered / 300
    assert np.mean(widths) < (0.45 if judged == 60 else 0.15)


def test_judging_chosen_where_the_router_is_unsure_is_reweighted() -> None:
    """Shadow judging picks borderline prompts more often and records inclusion_p; weighting by 1/p keeps
    the estimate unbiased, while the unweighted one (what an estimator ignoring p gives) is off."""
    rng = np.random.default_rng(3)
    weighted, plain, truths = [], [], []
    for replicate in range(120):
        truth, totals, pop = _traffic(rng)
        p = np.where(np.abs(pop["hard"] - 0.6) < 0.15, 0.08, 0.005)  # borderline prompts 16x as likely
        chosen = np.flatnonzero(rng.uniform(size=len(p)) < p)
        with_p = estimate(totals, _judge(pop, chosen, 1 / p[chosen]), "big", bootstrap=400, seed=replicate)
        without = estimate(totals, _judge(pop, chosen), "big", bootstrap=2, seed=replicate)
        assert with_p.quality is not None and without.quality is not None
        weighted.append(with_p.quality - truth)
        plain.append(without.quality - truth)
        truths.append(with_p.low <= truth <= with_p.high)  # type: ignore[operator]
    assert abs(np.mean(weighted)) < 0.01 < abs(np.mean(plain))
    assert np.mean(truths) >= 0.9


def test_pairs_from_absolute_and_pairwise_verdicts() -> None:
    log = [
        {"request_id": "a", "model": "small", "status": 200},  # graded on both: (0, 1)
        {"request_id": "b", "model": "small", "status": 200},  # a pairwise tie against big: (1, 1)
        {"request_id": "c", "model": "small", "status": 200},  # a pairwise loss: (0, 1)
        {"request_id": "d", "model": "big", "status": 200},  # served by big, thumbs up: (1, 1)
        {"request_id": "e", "model": "small", "status": 200},  # only the small one rated: no pair
        {"request_id": "f", "model": "small", "status": 502},  # failed: not counted
    ]
    outcomes = [
        Outcome("a", "small", 0.0, "grader"),
        Outcome("a", "big", 1.0, "grader"),
        Outcome("b", "small", 0.5, "llm-judge", other_model="big"),
        Outcome("b", "big", 0.5, "llm-judge", other_model="small"),
        Outcome("c", "big", 1.0, "llm-judge", other_model="small"),
        Outcome("d", "big", 1.0, "feedback", detail={"thumbs": "up"}),
        Outcome("e", "small", 1.0, "feedback"),
        Outcome("f", "small", 1.0, "feedback"),
    ]
    pairs = judged_pairs(log, outcomes, "big")
    assert pairs == {"small": [(0.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.0, 1.0, 1.0)], "big": [(1.0, 1.0, 1.0)]}
    totals = [
        {"model": "small", "requests": 30, "cost": 3.0, "big_cost": 30.0},
        {"model": "big", "requests": 10, "cost": 10.0, "big_cost": 10.0},
    ]
    s = estimate(totals, pairs, "big")
    assert s.quality == pytest.approx((30 * 1 / 3 + 10 * 1) / (30 * 1 + 10 * 1))
    assert s.cost_ratio == pytest.approx(13 / 40) and s.judged == 4


def test_nothing_judged_says_quality_unknown() -> None:
    totals = [{"model": "small", "requests": 5, "cost": 1.0, "big_cost": 4.0}]
    s = estimate(totals, {}, "big")
    assert s.line() == "25% of always-big cost, quality unknown (0 judged)"
    assert s.compact() == {"cost_ratio": 0.25, "quality": None, "interval": None, "judged": 0}
    only_big = estimate(totals, {"big": [(1.0, 1.0, 1.0)]}, "big")  # nothing judged where small served
    assert only_big.quality is None and only_big.judged == 1
    line = Savings(cost_ratio=0.58, quality=0.96, low=0.931, high=0.98, judged=412).line()
    assert line == "58% of always-big cost at 96% (93-98%) of its quality, from 412 judged requests"


def test_the_gateway_reports_savings_in_log_metrics_and_the_decision(tmp_path: Path, run_cli: Run) -> None:
    db = tmp_path / "log.sqlite"
    with BillingUpstream(lambda body: (10, 10)) as up:
        models = [fake_model("small", "up-s", 1.0, up.base_url), fake_model("big", "up-b", 4.0, up.base_url)]
        with GatewayServer({"models": models, "gateway": {"log_url": f"sqlite:///{db}"}}) as gw:
            client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)

            def ask(model: str) -> tuple[str, dict]:
                raw = client.chat.completions.with_raw_response.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4
                )
                return raw.headers["x-request-id"], raw.parse().model_extra["sizewise"]

            _, before = ask("small")
            assert before["savings"]["judged"] == 0 and before["savings"]["quality"] is None
            store = gw.app.state.gateway.outcomes.store
            for i in range(20):
                model = "big" if i < 4 else "small"
                request_id, _ = ask(model)
                httpx.post(gw.url + "/feedback", json={"request_id": request_id, "score": 1.0}).raise_for_status()
                if model == "small":  # the big model graded too, as shadow judging would
                    store.add(Outcome(request_id, "big", 1.0 if i % 4 else 0.0, "grader"))
            gw.rows()
            gw.app.state.gateway.outcomes.refresh()
            _, after = ask("small")
            metrics = httpx.get(gw.url.removesuffix("/v1") + "/metrics").text
    # At the refresh: 16 small-served pairs (small always 1, big 1 on 12 of them) among 17 small-served
    # answers (the first, unjudged, counts in its stratum), 4 big-served answers rated 1.
    expected = (17 * 1.0 + 4 * 1.0) / (17 * 12 / 16 + 4 * 1.0)
    assert after["savings"]["judged"] == 20 and after["savings"]["quality"] == pytest.approx(expected, abs=1e-4)
    assert after["savings"]["cost_ratio"] == pytest.approx((17 * 1 + 4 * 4) / (21 * 4), abs=1e-4)  # price ~ size
    gauges = dict(line.split(" ") for line in metrics.splitlines() if line.startswith("sizewise_quality_retained"))
    assert float(gauges["sizewise_quality_retained_ratio"]) == pytest.approx(expected)
    assert float(gauges["sizewise_quality_retained_low"]) < expected < float(gauges["sizewise_quality_retained_high"])
    assert "sizewise_judged_requests 20.0" in metrics
    code, stdout, stderr = run_cli("log", "--db", str(db))
    assert code == 0, stderr
    in_log = (18 + 4) / (18 * 12 / 16 + 4)  # the last answer counts too
    cost = (18 * 1 + 4 * 4) / (22 * 4)
    pattern = rf"savings: {cost * 100:.0f}% of always-big cost at {in_log * 100:.0f}% \(\d+-\d+%\) of its quality"
    assert re.search(pattern + ", from 20 judged requests", stdout), stdout
    # The same from the catalog file (its ladder names the big model), JSON being YAML.
    catalog = tmp_path / "sizewise.yaml"
    catalog.write_text(json.dumps({"models": models, "gateway": {"log_url": f"sqlite:///{db}"}}))
    code, from_config, stderr = run_cli("log", "--config", str(catalog))
    assert code == 0, stderr
    assert re.search(pattern + ", from 20 judged requests", from_config), from_config
