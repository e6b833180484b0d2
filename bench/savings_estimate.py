"""The savings estimate's honesty and the outcome side's costs at the gateway.

Usage: ``python bench/savings_estimate.py [--replicates 500]``.

1. Coverage: simulated deployments with a known truth (a routed population of 20,000 requests, hard prompts
   tending to the big model, the small one failing more often on them); in each, ``n`` requests judged
   uniformly, or borderline prompts 16x as often with their inclusion probability recorded. Reports how often
   the 95% interval holds the true quality retained, its mean width and the mean error of the estimate (with and
   without the 1/p weights).
2. Costs through a real gateway (an upstream on 127.0.0.1 answering in 50 ms, SQLite log): ``POST /v1/feedback``
   latency, a chat request's latency with and without ``sizewise.feedback`` on it, the static embedding kept per
   prompt (log writer thread), and one refresh of the savings estimate over a log of 10,000 requests, 2,000 judged.

Writes docs/results/savings.json and the ``savings-estimate`` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import ROOT, markdown_table, update_section, write_json


def _population(rng: np.random.Generator, size: int = 20_000) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
    hard = rng.uniform(size=size)
    to_big = hard + rng.normal(0, 0.2, size) > 0.6
    q_big = (rng.uniform(size=size) < 0.9 - 0.4 * hard).astype(float)
    q_small = (rng.uniform(size=size) < 0.85 - 0.7 * hard).astype(float)
    served = np.where(to_big, q_big, q_small)
    n_big, n_small = int(to_big.sum()), int((~to_big).sum())
    totals = [
        {"model": "big", "requests": n_big, "cost": float(n_big), "big_cost": float(n_big)},
        {"model": "small", "requests": n_small, "cost": 0.1 * n_small, "big_cost": float(n_small)},
    ]
    return float(served.sum() / q_big.sum()), totals, {"to_big": to_big, "served": served, "big": q_big, "hard": hard}


def _pairs(pop: dict[str, Any], chosen: np.ndarray, weights: np.ndarray | None) -> dict[str, list[Any]]:
    pairs: dict[str, list[Any]] = {}
    for k, i in enumerate(chosen):
        weight = 1.0 if weights is None else float(weights[k])
        pairs.setdefault("big" if pop["to_big"][i] else "small", []).append((pop["served"][i], pop["big"][i], weight))
    return pairs


def coverage(replicates: int) -> list[dict[str, Any]]:
    """Interval coverage, width and bias per sampling design and judged count."""
    from sizewise.learn.savings import estimate

    rows = []
    for design, n in [("uniform", 30), ("uniform", 60), ("uniform", 200), ("uniform", 1000), ("active", 400)]:
        rng = np.random.default_rng(n)
        hits, widths, errors, plain = 0, [], [], []
        for r in range(replicates):
            truth, totals, pop = _population(rng)
            if design == "uniform":
                chosen, weights = rng.choice(len(pop["big"]), n, replace=False), None
            else:  # borderline prompts 16x as likely to be judged, p recorded (mean ~n judged)
                p = np.where(np.abs(pop["hard"] - 0.6) < 0.15, 0.064, 0.004)
                chosen = np.flatnonzero(rng.uniform(size=len(p)) < p)
                weights = 1 / p[chosen]
                plain.append(estimate(totals, _pairs(pop, chosen, None), "big", bootstrap=2).quality - truth)
            s = estimate(totals, _pairs(pop, chosen, weights), "big", bootstrap=1000, seed=r)
            hits += s.low <= truth <= s.high
            widths.append(s.high - s.low)
            errors.append(s.quality - truth)
        rows.append(
            {
                "design": design,
                "judged": n,
                "coverage": hits / replicates,
                "mean_width": float(np.mean(widths)),
                "mean_error": float(np.mean(errors)),
                "mean_error_unweighted": float(np.mean(plain)) if plain else float("nan"),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _median_ms(samples: list[float]) -> float:
    return float(np.median(samples) * 1000)


def gateway_costs(rounds: int = 200) -> dict[str, float]:
    """Latency of feedback, of chat with and without inline feedback, vectors kept, one savings refresh."""
    import httpx

    from sizewise.catalog.schema import CatalogSpec
    from sizewise.embedding import embed_static
    from sizewise.learn.outcomes import Outcome, OutcomeStore
    from sizewise.learn.savings import savings_of

    sys.path.insert(0, str(ROOT / "tests"))
    from billing_upstream import BillingUpstream
    from fakes import GatewayServer, fake_model

    out: dict[str, float] = {}
    # A 50 ms answer, like a short local one: inline feedback is stored while the model answers.
    with BillingUpstream(lambda body: (10, 4), delay_s=0.05) as up, tempfile.TemporaryDirectory() as tmp:
        models = [fake_model("small", "ok-s", 1.0, up.base_url), fake_model("big", "ok-b", 4.0, up.base_url)]
        spec = CatalogSpec.model_validate({"models": models, "gateway": {"log_url": f"sqlite:///{tmp}/log.sqlite"}})
        with GatewayServer(spec) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
            body = {"model": "small", "messages": [{"role": "user", "content": "What is 6 * 7?"}], "max_tokens": 4}
            plain: list[float] = []
            inline: list[float] = []
            feedback: list[float] = []
            last = ""
            for i in range(rounds):
                start = time.perf_counter()
                extra = {"sizewise": {"feedback": {"request_id": last, "score": 1.0}}} if i % 2 and last else {}
                answer = client.post("/chat/completions", json={**body, **extra})
                (inline if extra else plain).append(time.perf_counter() - start)
                last = answer.headers["x-request-id"]
                start = time.perf_counter()
                client.post("/feedback", json={"request_id": last, "thumbs": "up"}).raise_for_status()
                feedback.append(time.perf_counter() - start)
        out["load_average"] = os.getloadavg()[0]  # other work on the machine (latencies are medians, not noise-free)
        out["chat_p50_ms"] = _median_ms(plain)
        out["chat_with_feedback_p50_ms"] = _median_ms(inline)
        out["feedback_post_p50_ms"] = _median_ms(feedback)
        texts = [f"user: question {i} about something a little longer than a word or two" for i in range(1000)]
        start = time.perf_counter()
        embed_static(texts)
        out["vector_kept_ms_per_prompt"] = (time.perf_counter() - start) / len(texts) * 1000
        out.update(_refresh_cost(Path(tmp) / "big.sqlite", Outcome, OutcomeStore, savings_of))
    return out


def _refresh_cost(path: Path, outcome: Any, store_class: Any, savings_of: Any) -> dict[str, float]:
    """One savings refresh over 10,000 logged requests, 2,000 of them judged on both models."""
    from sqlalchemy import insert

    from sizewise.core.requestlog import requests_table

    store = store_class(f"sqlite:///{path}")
    rows = [
        {"time": float(i), "request_id": f"r{i}", "prompt_hash": "-", "model": "big" if i % 5 == 0 else "small",
         "cost": 4.0 if i % 5 == 0 else 1.0, "big_cost": 4.0, "status": 200}
        for i in range(10_000)
    ]  # fmt: skip
    with store.engine.begin() as connection:
        connection.execute(insert(requests_table), rows)
    judged = [
        outcome(f"r{i}", m, float((i + len(m)) % 3 > 0), "grader")
        for i in range(0, 10_000, 5)
        for m in ("small", "big")
    ]
    store.add_many(judged)
    start = time.perf_counter()
    s = savings_of(store)
    took = time.perf_counter() - start
    store.close()
    return {"refresh_10k_requests_2k_judged_ms": took * 1000, "refresh_judged": float(s.judged)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicates", type=int, default=500)
    args = parser.parse_args()
    rows = coverage(args.replicates)
    costs = gateway_costs()
    print(costs, flush=True)
    write_json(ROOT / "docs" / "results" / "savings.json", {"coverage": rows, "gateway": costs})
    body = (
        markdown_table(rows, digits=3)
        + f"\n\n{args.replicates} simulated deployments per row (20,000 routed requests each, truth known). "
        "`coverage`: share of 95% intervals holding the true quality retained; `mean_error`: estimate minus truth; "
        "`active`: borderline prompts judged 16x as often, weighted by 1/p (`mean_error_unweighted`: the same "
        "without the weights).\n\n"
        + markdown_table([costs], digits=2)
        + "\n\nThrough a gateway on 127.0.0.1 (an upstream answering in 50 ms, SQLite log), medians of 100 requests "
        "each: a chat "
        "request with and without `sizewise.feedback` on it, `POST /v1/feedback`; the static embedding the log "
        "writer keeps per prompt when text is off (its thread, not the request's); one savings refresh."
    )
    update_section(
        "savings-estimate",
        "Savings with quality: the estimator and its costs",
        "python bench/savings_estimate.py",
        body,
    )


if __name__ == "__main__":
    main()
