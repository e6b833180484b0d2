"""The interactive reports (eval --report, choose --out, calibrate --plot .html, log --plot): each page is
self-contained (plotly.js inside, nothing fetched), and in real headless Chromium its charts hold exactly
the numbers of the report's JSON or data (read back from the drawn Plotly divs)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._chromium import CHART_DATA, RESOURCES, browser, missing, open_page

from learned_helpers import planted_pair
from sizewise.core.decision import Decision, Step
from sizewise.gateway.log import LogEntry, RequestLog
from test_choose import make_table


@pytest.fixture(scope="module")
def chrome() -> Any:
    """One headless Chromium for the module (skipped, with the reason, where it is not installed)."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    with browser() as driver:
        yield driver


def charts(driver: Any, page: Path, count: int) -> dict[str, list[dict[str, Any]]]:
    """The traces drawn on ``page``, after checking it fetched nothing (it must work offline)."""
    open_page(driver, page, count)
    assert driver.execute_script(RESOURCES) == []
    return driver.execute_script(CHART_DATA)


def trace(traces: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [t for t in traces if t["name"] == name]
    assert len(found) == 1, f"{name!r} not among {[t['name'] for t in traces]}"
    return found[0]


def assert_self_contained(text: str) -> None:
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I), "a script is fetched from somewhere"
    assert not re.search(r"<link[^>]*\bhref\s*=", text, re.I), "a stylesheet is fetched from somewhere"
    assert "Plotly.newPlot" in text and "plotly.js v" in text.lower()  # the library itself is inside


@pytest.fixture(scope="module")
def eval_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    from sizewise.evaluation.harness import evaluate
    from sizewise.evaluation.report import write_report

    result = evaluate(planted_pair(240, seed=1), ["random", "tfidf-logreg", "always-large"], cv=3)
    page = write_report(result, tmp_path_factory.mktemp("eval"), target=0.95)
    return page, json.loads((page.parent / "report.json").read_text())


def test_eval_report_is_self_contained_and_explains_its_columns(eval_report: tuple[Path, dict]) -> None:
    text = eval_report[0].read_text()
    assert_self_contained(text)
    assert "Which threshold do I use?" in text and "Not a ROC AUC" in text
    assert text.count("<abbr title=") >= 7  # every metric column explained on hover


def test_eval_charts_show_the_reports_numbers(chrome: Any, eval_report: tuple[Path, dict]) -> None:
    page, report = eval_report
    drawn = charts(chrome, page, 2)
    routers = {r["router"]: r for r in report["routers"]}
    tfidf = routers["tfidf-logreg"]["curve"]
    share = trace(drawn["share"], "tfidf-logreg")
    assert share["x"] == tfidf["share"] and share["y"] == tfidf["quality"]
    # hover: each point's threshold as in the JSON (null = share 0, nothing to the strong model)
    assert [c[0] for c in share["customdata"]] == [
        "none: every prompt to the weak model" if t is None else f"fold rank ≥ {t:.4g}" for t in tfidf["threshold"]
    ]
    assert trace(drawn["share"], "random (reference)")["y"] == routers["random"]["curve"]["quality"]
    cost = trace(drawn["cost"], "tfidf-logreg")
    assert cost["x"] == pytest.approx([c * 1000 for c in tfidf["cost"]], rel=1e-12) and cost["y"] == tfidf["quality"]
    # the stars: each router's first point reaching 95% of the strong model's quality
    goal = 0.95 * report["strong_quality"]
    stars = trace(drawn["share"], "recommended for the target")
    for name, x, y in zip([c[0] for c in stars["customdata"]], stars["x"], stars["y"], strict=True):
        curve = routers[name]["curve"]
        k = next(i for i, q in enumerate(curve["quality"]) if q >= goal - 1e-12)
        assert (x, y) == (curve["share"][k], curve["quality"][k])
    assert {c[0] for c in stars["customdata"]} == set(routers)


def test_choose_frontier_page_draws_models_and_the_curved_mixes(chrome: Any, tmp_path: Path) -> None:
    from sizewise.evaluation.choose import choose
    from sizewise.evaluation.choose.html import cost_floor, write_html

    report = choose(make_table(), "0.85", router="tfidf-logreg")
    page = write_html(report, tmp_path / "frontier.html")
    assert_self_contained(page.read_text())
    drawn = charts(chrome, page, 1)["frontier"]
    models = trace(drawn, "models")
    assert models["text"] == [r.model for r in report.rows]
    assert models["x"] == [r.cost_per_1k for r in report.rows] and models["y"] == [r.quality for r in report.rows]
    mixes = trace(drawn, "frontier of mixes (a random mix of two models)")
    front = [r for name in report.frontier for r in report.rows if r.model == name]
    cost, quality = [r.cost_per_1k for r in front], [r.quality for r in front]
    assert (mixes["x"][0], mixes["y"][0]) == (max(cost[0], cost_floor(report)), quality[0])
    assert (mixes["x"][-1], mixes["y"][-1]) == (cost[-1], quality[-1])
    # every drawn point is a real mix of two models: on the straight line in linear cost, so a curve here
    assert np.allclose(mixes["y"][1:], np.interp(mixes["x"][1:], cost, quality))
    assert len(mixes["x"]) > 2 * len(front)
    router = next(p for p in report.policies if p.kind == "router")
    drawn_router = trace(drawn, "router: every setting (held-out prompts)")
    assert drawn_router["y"] == [q for _, q in router.curve]
    assert drawn_router["customdata"] == [f"{t:.4g}" for t in router.settings]


def test_calibration_page_shows_the_curves_and_the_chosen_point(chrome: Any, tmp_path: Path) -> None:
    from sizewise.evaluation.calibration_html import write_calibration_html
    from sizewise.evaluation.calibration_plot import threshold_curve
    from sizewise.routers.base import make_router
    from sizewise.routers.calibration import calibrate

    router = make_router("tfidf-logreg").fit(planted_pair(200, seed=8))
    table = planted_pair(160, seed=3)
    result = calibrate(router, table, target_quality=0.95)
    q_weak, q_strong = table.column(result.weak), table.column(result.strong)
    cost = table.cost[:, [table.index_of(result.weak), table.index_of(result.strong)]]
    curve = threshold_curve(np.asarray(router.score_table(table), dtype=float), q_weak, q_strong, cost)
    page = write_calibration_html(curve, result, tmp_path / "calibration.html", "toy")
    assert_self_contained(page.read_text())
    drawn = charts(chrome, page, 1)["calibration"]
    for key, name in (
        ("share", "share to the strong model"),
        ("quality", "quality"),
        ("cost_per_1k", "USD per 1,000 requests"),
    ):
        line = trace(drawn, name)
        assert line["x"] == curve["threshold"].tolist() and line["y"] == curve[key].tolist()
        chosen = trace(drawn, f"chosen {name}")
        assert chosen["x"] == [result.threshold] and chosen["y"] == [getattr(result, key)]


def write_known_log(path: Path) -> None:
    """40 answered requests over 2 hours (26 to small, 14 to big) and 3 failures."""
    log = RequestLog(f"sqlite:///{path}")
    start = 1_780_000_200.0  # 20:30 UTC: buckets of 5 minutes start on the hour's fifths
    for i in range(40):
        model = "big" if i % 3 == 0 else "small"
        decision = Decision(
            policy="sizewise", model=model, score=0.3, threshold=0.5, cost=0.01 if model == "big" else 0.001,
            steps=[Step(model, accepted=True)],
        )  # type: ignore[arg-type]  # fmt: skip
        latency = 1.0 if model == "big" else 0.1 + 0.01 * i
        log.write(LogEntry(f"r{i}", "x", 200, latency, decision, big_cost=0.01, time=start + 180 * i))
    for i in range(3):
        log.write(LogEntry(f"bad{i}", "", 400 + i, 0.0, time=start + 600 * i))
    log.close()


def test_log_plot_counts_the_known_log(chrome: Any, run_cli: Any, tmp_path: Path) -> None:
    from sizewise.cli.log_plot import plot_data
    from sizewise.gateway.log import read_rows

    db = tmp_path / "log.sqlite"
    write_known_log(db)
    data = plot_data(read_rows(f"sqlite:///{db}"))
    assert data["bucket_s"] == 300 and len(data["buckets"]) == 24  # 117 minutes in 5-minute buckets
    assert sum(data["requests"]["small"]) == 26 and sum(data["requests"]["big"]) == 14 and sum(data["failed"]) == 3
    assert data["share"] == pytest.approx({"small": 26 / 40, "big": 14 / 40})
    assert data["p50_ms"]["big"] == pytest.approx(1000.0) and data["cost"][-1] == pytest.approx(26 * 0.001 + 14 * 0.01)
    assert data["always_big"][-1] == pytest.approx(40 * 0.01)
    code, out, err = run_cli("log", "--db", str(db), "--plot", str(tmp_path / "log.html"))
    assert code == 0, err
    assert f"wrote {tmp_path / 'log.html'}" in out
    page = tmp_path / "log.html"
    assert_self_contained(page.read_text())
    drawn = charts(chrome, page, 1)["log"]
    assert trace(drawn, "small")["y"] == data["requests"]["small"] and sum(trace(drawn, "big")["y"]) == 14
    assert trace(drawn, "failed (status >= 400)")["y"] == data["failed"]
    assert trace(drawn, "small")["x"][0] == "2026-05-28 20:30:00"
    code, _, err = run_cli("log", "--db", str(db), "--plot", str(tmp_path / "log.png"))
    assert code == 0 and (tmp_path / "log.png").read_bytes()[:4] == b"\x89PNG"


def test_log_plot_refuses_an_unknown_format_before_reading(run_cli: Any, tmp_path: Path) -> None:
    code, _, err = run_cli("log", "--db", str(tmp_path / "none.sqlite"), "--plot", str(tmp_path / "log.txt"))
    assert code == 2 and "ending in .html (interactive) or .png" in err and err.count("\n") == 1


def test_pages_without_costs_or_prices_still_render() -> None:
    import dataclasses

    from sizewise.evaluation.choose import choose
    from sizewise.evaluation.choose.html import render_html
    from sizewise.evaluation.harness import evaluate
    from sizewise.evaluation.report import render

    table = dataclasses.replace(planted_pair(120, seed=2), cost=None)
    page = render(evaluate(table, ["tfidf-logreg", "always-small"], cv=2, seed=0))
    assert page.count('class="plotly-graph-div"') == 1 and "Quality vs cost" not in page  # no cost, no cost chart
    assert '"unknown"' in page  # each point's hover says its cost is unknown
    free = dataclasses.replace(make_table(), cost=np.zeros((400, 3)))  # local models, no prices: all at cost 0
    html = render_html(choose(free, "0.9"))
    assert html.count('class="plotly-graph-div"') == 1 and "big-70B" in html


def test_a_saved_routers_thresholds_are_its_own_scores_not_fold_ranks() -> None:
    from sizewise.evaluation.harness import evaluate
    from sizewise.evaluation.report import recommend, share_figure
    from sizewise.routers.base import make_router

    router = make_router("tfidf-logreg").fit(planted_pair(200, seed=8))
    table = planted_pair(120, seed=4)
    result = evaluate(table, [router, "tfidf-logreg"], cv=3)
    saved, refitted = result.results
    scores = np.asarray(router.score_table(table), dtype=float)
    assert set(saved.curve.threshold[1:].tolist()) == set(scores.tolist())  # every distinct score is a point
    saved_hover, refitted_hover = [t.customdata for t in share_figure(result, [], 0.9).data if t.name == "tfidf-logreg"]
    assert all(row[0].startswith("score ≥ ") for row in saved_hover[1:])
    assert all(row[0].startswith("fold rank ≥ ") for row in refitted_hover[1:]) and refitted.fold_apgr
    pick = recommend(saved, 0.8)
    assert pick is not None and not pick.ranked and pick.threshold in scores


def test_calibrate_plot_writes_html_or_png_by_the_files_name(run_cli: Any, tmp_path: Path) -> None:
    table = str(planted_pair(160, seed=5).save(tmp_path / "t.parquet"))
    base = ("calibrate", "--router", "tfidf-logreg", "--table", table, "--target-quality", "0.95")
    code, out, err = run_cli(*base, "--out", str(tmp_path / "r.zip"), "--plot", str(tmp_path / "c.html"))
    assert code == 0, err
    page = (tmp_path / "c.html").read_text()
    assert_self_contained(page)
    assert 'id="calibration"' in page and f"wrote {tmp_path / 'c.html'}" in out
    code, _, err = run_cli(*base, "--out", str(tmp_path / "r2.zip"), "--plot", str(tmp_path / "c.png"))
    assert code == 0, err
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
