"""`sizewise choose`: measurements, constraints, the frontier, recommendations and the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from constraint_helpers import model
from sizewise.cli import choose_cmd
from sizewise.errors import ConfigError, SizewiseError
from sizewise.evaluation.choose import (
    ChooseLimits,
    choose,
    pareto,
    parse_params,
    parse_target,
    plot_frontier,
    render_markdown,
)
from sizewise.evaluation.table import OutcomeTable


def make_table(n: int = 400, seed: int = 0) -> OutcomeTable:
    """small: perfect on 'easy', bad on 'hard'; mid: 0.8 everywhere; big: 0.95 everywhere (dearest)."""
    rng = np.random.default_rng(seed)
    category = np.where(np.arange(n) % 2 == 0, "easy", "hard")
    p = np.stack([np.where(category == "easy", 0.98, 0.3), np.full(n, 0.8), np.full(n, 0.95)], axis=1)
    quality = (rng.random((n, 3)) < p).astype(float)
    cost = np.tile([0.0001, 0.001, 0.01], (n, 1))
    prompts = pd.DataFrame(
        {"prompt_id": range(n), "text": [f"q{i} {c}" for i, c in enumerate(category)], "category": category}
    )
    return OutcomeTable("toy", prompts, ["small-1B", "mid-8B", "big-70B"], quality, cost=cost)


def test_parse_helpers() -> None:
    assert parse_target("0.7") == (0.7, False) and parse_target("95%") == (0.95, True)
    with pytest.raises(ConfigError):
        parse_target("1.5")
    with pytest.raises(ConfigError):
        parse_target("good")
    assert parse_params("Mixtral-8x7B-Instruct") == 56 and parse_params("Meta-Llama-3_1-70B-Instruct") == 70
    assert parse_params("gemini-1.5-pro-002") is None


def test_single_model_when_it_is_cheapest() -> None:
    report = choose(make_table(), "0.75")
    assert report.single is not None and report.single.model == "mid-8B"
    assert report.frontier == ["small-1B", "mid-8B", "big-70B"]
    assert "mid-8B" in report.recommendation or "domain routes" in report.recommendation


def test_domain_policy_beats_single_model_when_categories_differ() -> None:
    report = choose(make_table(), "0.85")
    assert report.single is not None and report.single.model == "big-70B"
    assert report.policy is not None and report.policy.kind == "domain routes"
    assert report.policy.cost_per_1k < report.single.cost_per_1k and report.policy.quality >= 0.85
    assert "routes:" in report.snippet and "small-1B" in report.snippet


def test_constraints_exclude_models_and_nothing_meets_target() -> None:
    specs = [
        model("small-1B", location="local", params_b=1),
        model("mid-8B", location="local", params_b=8),
        model("big-70B", location="remote", params_b=70),
    ]
    report = choose(make_table(), "0.9", ChooseLimits(local_only=True, memory_gb=2.0), specs)
    why = {r.model: r.why_not for r in report.rows}
    assert why["big-70B"] == "not local" and "GB" in why["mid-8B"] and why["small-1B"] == ""
    assert report.single is None and report.policy is None
    assert "Nothing meets the target" in report.recommendation
    budget = choose(make_table(), "0.5", ChooseLimits(budget_per_1k=5.0))
    assert [r.model for r in budget.rows if r.eligible] == ["small-1B", "mid-8B"]


@pytest.mark.parametrize(
    ("limits", "router", "message"),
    [
        ({"max_latency_ms": -5.0}, None, "max-latency-ms must be a number >= 0"),
        ({"budget_per_1k": math.nan}, None, "budget-per-1k must be a number >= 0"),
        ({"memory_gb": -1.0}, None, "memory-gb must be a number >= 0"),
        ({}, "nosuch", "unknown router 'nosuch'"),
    ],
)
def test_bad_constraints_and_unknown_router_are_refused(limits: dict, router: str | None, message: str) -> None:
    with pytest.raises(SizewiseError, match=message):
        choose(make_table(), "0.5", ChooseLimits(**limits), router=router)


def test_relative_target_and_pareto() -> None:
    report = choose(make_table(), "80%")
    best = max(r.quality for r in report.rows)
    assert report.target == pytest.approx(0.8 * best)
    assert pareto(report.rows)[-1] == "big-70B"


def test_report_and_plot(tmp_path: Path) -> None:
    report = choose(make_table(), "0.85")
    png = plot_frontier(report, str(tmp_path / "f.png"))
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    text = render_markdown(report, "f.png")
    assert "| big-70B |" in text and "![cost-quality frontier](f.png)" in text and "```yaml" in text


def test_cli_choose_on_a_file(tmp_path: Path) -> None:
    app = typer.Typer()
    choose_cmd.register(app)
    path = make_table().save(tmp_path / "toy.parquet")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["choose", "--data", str(path), "--target", "0.75", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "frontier.png").is_file() and "Recommendation" in (out / "report.md").read_text()
    assert 'id="frontier"' in (out / "frontier.html").read_text()  # the interactive chart beside them
    bad = CliRunner().invoke(app, ["choose", "--data", str(path), "--target", "2"])
    assert bad.exit_code != 0


@pytest.mark.slow
def test_domain_policy_measured_with_real_embedding_routes() -> None:
    table = make_table(200)
    easy = ["What is 2 + 3?", "Add 7 and 5.", "What is 10 minus 4?", "Compute 6 times 3."]
    hard = ["Explain the causes of the French Revolution.", "Why did the Roman Empire fall?"]
    table.prompts["text"] = [
        (easy if c == "easy" else hard)[i % (4 if c == "easy" else 2)] + f" (#{i})"
        for i, c in enumerate(table.prompts["category"])
    ]
    report = choose(table, "0.85", route_sample=40)
    policy = report.policies[0]
    assert policy.kind == "domain routes" and "recognised the category of" in policy.description
    assert 0.0 <= policy.quality <= 1.0 and len(policy.config["routes"]) == 2


def test_heuristic_router_policy_threshold_chosen_on_fit_half() -> None:
    n = 200
    hard = np.arange(n) % 2 == 1
    texts = [
        f"Prove step by step and derive the equation, then compute the integral {i} " * 4 if h else f"hi {i}"
        for i, h in enumerate(hard)
    ]
    quality = np.stack([np.where(hard, 0.0, 1.0), np.ones(n)], axis=1)
    cost = np.tile([0.0001, 0.01], (n, 1))
    table = OutcomeTable(
        "mix", pd.DataFrame({"prompt_id": range(n), "text": texts}), ["weak", "strong"], quality, cost=cost
    )
    report = choose(table, "0.95", router="heuristic")
    assert report.policy is not None and report.policy.kind == "router"
    assert report.policy.quality >= 0.95 and report.policy.cost_per_1k < 0.6 * report.rows[1].cost_per_1k
    assert "router: heuristic" in report.snippet and "threshold:" in report.snippet and report.policy.curve


def test_cli_choose_on_a_collect_file_prices_tokens_from_the_catalog(tmp_path: Path) -> None:
    from sizewise.cascade.collect import RowStore
    from sizewise.catalog import load_catalog

    small, big = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
    store = RowStore(tmp_path / "rows.jsonl")
    for i in range(40):
        for name, correct, latency in ((small, i % 2 == 0, 1.0), (big, i % 4 != 0, 3.0)):
            store.append(
                {
                    "prompt_id": f"q{i}",
                    "model": name,
                    "text": f"question {i}",
                    "response": "42",
                    "correct": correct,
                    "tokens_in": 100,
                    "tokens_out": 200,
                    "latency": latency,
                }
            )
    store.close()
    app = typer.Typer()
    choose_cmd.register(app)
    result = CliRunner().invoke(app, ["choose", "--data", str(tmp_path / "rows.jsonl"), "--target", "0.7"])
    assert result.exit_code == 0, result.output
    catalog = load_catalog(None)
    expected = 1000 * catalog.get(big).cost_usd(100, 200)
    assert f"| {big} | 0.750 | {expected:.4f} | 3000 |" in result.output
    assert f"Use {big}" in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("private_embedding_cache")
def test_n_model_router_policy_picks_per_prompt_and_gives_the_gateway_field() -> None:
    from learned_helpers import prompts

    texts, topics = prompts(600, seed=3)
    # P(correct) per topic (math, code, chat): chat is easy for the small model, maths for the mid one.
    skill = np.array([[0.05, 0.05, 0.97], [0.97, 0.1, 0.97], [0.97, 0.97, 0.97]])
    quality = (np.random.default_rng(4).random((600, 3)) < skill[:, topics].T).astype(float)
    cost = np.tile([0.0001, 0.001, 0.01], (600, 1))
    table = OutcomeTable(
        "topics", pd.DataFrame({"prompt_id": range(600), "text": texts}), ["small", "mid", "big"], quality, cost=cost
    )
    report = choose(table, "0.9", router="knn")
    multi = next(p for p in report.policies if p.kind == "N-model router")
    assert multi.quality >= 0.9 and multi.cost_per_1k < 0.6 * report.rows[2].cost_per_1k
    assert report.policy is multi
    assert "default_policy: multi-knn-" in report.snippet and "router_dir: routers" in report.snippet
    # A pair-only router gives no N-model policy (and no failure entry).
    assert all(p.kind != "N-model router" for p in choose(table, "0.9", router="gbdt").policies)
