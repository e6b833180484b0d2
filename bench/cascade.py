"""Cascades on recorded outcomes: GSM8K (Mixtral -> GPT-4) and MMLU-Pro ladders; plus live collected tables.

Usage: ``python bench/cascade.py [--quick] [--parts gsm8k,mmlu-pro] [--collected PATH]``.
Learned scorers and routers are scored
out-of-fold (5-fold CV); the cascade curve sweeps the thresholds; a calibrated operating point picks
thresholds on one half of the out-of-fold scores and reports the other half (and vice versa).
Writes docs/results/cascade.json, docs/cascade_mmlupro.png and the ``cascade`` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cascade_headroom import headroom, headroom_rows
from _cascade_live import evaluate_live, folds, live_section
from _results import ROOT, markdown_table, update_section, write_json
from sizewise.cascade.policy import (
    calibrate,
    cost_at_quality,
    pareto,
    quality_at_cost,
    run_cascade,
    sweep,
)
from sizewise.cascade.scorers import Answer, make_scorer
from sizewise.evaluation.loaders import load_dataset
from sizewise.evaluation.table import OutcomeTable

MMLU_PRO_LADDERS = [
    ["Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"],
    ["gemini-1.5-flash-002", "gemini-1.5-pro-002"],
    ["Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct", "gemini-1.5-pro-002"],
]
ROUTER = "embed-logreg"


def answers_of(table: OutcomeTable, model: str) -> list[Answer]:
    """The recorded answers of ``model`` as scorer inputs."""
    column = table.column(model, "responses")
    return [Answer(prompt, str(text or ""), model=model) for prompt, text in zip(table.texts, column, strict=True)]


def oof_scorer(table: OutcomeTable, ladder: list[str], splits: list[np.ndarray], **params: Any) -> np.ndarray:
    """Out-of-fold answer-classifier confidence for each non-final rung: shape (n, len(ladder) - 1)."""
    scores = np.zeros((len(table), len(ladder) - 1))
    for j, model in enumerate(ladder[:-1]):
        answers = answers_of(table, model)
        correct = table.column(model)
        for test in splits:
            train = np.setdiff1d(np.arange(len(table)), test)
            scorer = make_scorer("answer-classifier", **params).fit([answers[i] for i in train], correct[train])
            scores[test, j] = scorer.score([answers[i] for i in test])
    return scores


def oof_router(table: OutcomeTable, weak: str, strong: str, splits: list[np.ndarray], name: str = ROUTER) -> np.ndarray:
    """Out-of-fold pre-generation router scores (higher = needs the strong model)."""
    from sizewise.routers.base import make_router

    scores = np.zeros(len(table))
    for test in splits:
        train = table.subset(np.setdiff1d(np.arange(len(table)), test))
        scores[test] = make_router(name).fit(train, weak, strong).score(table.subset(test).texts)
    return scores


def router_front(router: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> list[dict[str, Any]]:
    """Pareto front of a router choosing between the first and last model (no cascade)."""
    points = []
    for t in np.unique(np.concatenate([[-np.inf, np.inf], np.quantile(router, np.linspace(0, 1, 81))])):
        strong = router >= t
        q = np.where(strong, quality[:, -1], quality[:, 0])
        c = np.where(strong, cost[:, -1], cost[:, 0])
        points.append({"quality": float(q.mean()), "cost": float(c.mean()), "escalation": float(strong.mean())})
    return pareto(points)


def calibrated_point(quality: np.ndarray, cost: np.ndarray, scores: np.ndarray, target: float) -> dict[str, float]:
    """Thresholds calibrated for ``target`` on one half, measured on the other (both ways, averaged)."""
    halves = folds(len(quality), 2, seed=1)
    results = []
    for a, b in (halves, halves[::-1]):
        thresholds = calibrate(quality[a], cost[a], scores[a], target_quality=target)
        results.append(run_cascade(quality[b], cost[b], scores[b], thresholds).summary())
    return {key: float(np.mean([r[key] for r in results])) for key in results[0]}


def evaluate_ladder(table: OutcomeTable, ladder: list[str], target: float, budget_share: float) -> dict[str, Any]:
    """Cascade, router and hybrid fronts of one ladder, and the headline comparisons."""
    splits = folds(len(table))
    quality = np.stack([table.column(m) for m in ladder], axis=1)
    cost = np.stack([table.column(m, "cost") for m in ladder], axis=1)
    start = time.perf_counter()
    scores = oof_scorer(table, ladder, splits)
    scorer_s = time.perf_counter() - start
    router = oof_router(table, ladder[0], ladder[-1], splits)
    points = 81 if len(ladder) == 2 else 13
    cascade = pareto(sweep(quality, cost, scores, points=points))
    hybrid_thresholds = [*np.quantile(router, [0.7, 0.8, 0.9, 0.95]), np.inf]
    hybrid = pareto(sweep(quality, cost, scores, points, router_scores=router, router_thresholds=hybrid_thresholds))
    routed = router_front(router, quality, cost)
    top_cost = float(cost[:, -1].mean())
    budget = budget_share * top_cost
    oracle = float(quality.max(axis=1).mean())

    def at(front: list[dict[str, Any]]) -> float:
        return quality_at_cost(front, budget)

    return {
        "ladder": ladder,
        "n": len(table),
        "accuracy": {m: float(quality[:, i].mean()) for i, m in enumerate(ladder)},
        "cost_per_1k": {m: 1000 * float(cost[:, i].mean()) for i, m in enumerate(ladder)},
        "oracle": oracle,
        "target": target,
        "budget_share": budget_share,
        "quality_at_budget": {"cascade": at(cascade), "router": at(routed), "hybrid": at(hybrid)},
        "cost_share_at_target": {
            name: cost_at_quality(front, target) / top_cost
            for name, front in (("cascade", cascade), ("router", routed), ("hybrid", hybrid))
        },
        "calibrated": {**calibrated_point(quality, cost, scores, target), "top_cost": top_cost},
        "fronts": {"cascade": cascade, "router": routed, "hybrid": hybrid},
        "scorer_seconds": scorer_s,
        "router": ROUTER,
        "headroom": headroom(quality, cost, scores, target, budget_share) if len(ladder) == 2 else None,
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Cascade vs router vs hybrid, cost share vs accuracy, one panel per ladder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        top = result["calibrated"]["top_cost"]
        for name, style in (("router", "--"), ("cascade", "-"), ("hybrid", ":")):
            front = result["fronts"][name]
            ax.step([p["cost"] / top for p in front], [p["quality"] for p in front], style, where="post", label=name)
        ax.axvline(result["budget_share"], color="grey", lw=0.5)
        ax.axhline(max(result["accuracy"].values()), color="grey", lw=0.5)
        ax.set_title(" -> ".join(m.split("-Instruct")[0] for m in result["ladder"]), fontsize=8)
        ax.set_xlabel("cost / cost of the last model")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def row(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """One results-table row."""
    q = result["quality_at_budget"]
    share = result["cost_share_at_target"]
    return {
        "ladder": name,
        "n": result["n"],
        "target acc": result["target"],
        "oracle": result["oracle"],
        "budget": f"{result['budget_share']:.0%}",
        "cascade acc@budget": q["cascade"],
        "router acc@budget": q["router"],
        "hybrid acc@budget": q["hybrid"],
        "cascade cost@target": share["cascade"],
        "router cost@target": share["router"],
        "hybrid cost@target": share["hybrid"],
        "calibrated acc": result["calibrated"]["quality"],
        "calibrated cost": result["calibrated"]["cost"] / result["calibrated"]["top_cost"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="MMLU-Pro on 3000 questions")
    parser.add_argument(
        "--collected", help="JSONL written by `sizewise collect` on the embedded ladder (not committed)"
    )
    parser.add_argument(
        "--parts", default="gsm8k,mmlu-pro", help="recorded parts to recompute; others are kept from cascade.json"
    )
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    saved_path = ROOT / "docs" / "results" / "cascade.json"
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    results: dict[str, Any] = {k: v for k, v in saved.items() if k not in ("live", "verifier")}
    if "gsm8k" in parts:
        gsm = load_dataset("routellm-gsm8k")
        weak, strong = gsm.weak_strong()
        target = float(gsm.column(strong).mean())
        results["gsm8k"] = evaluate_ladder(gsm, [weak, strong], target=target, budget_share=0.5)
    if "mmlu-pro" in parts:
        mmlu_results = []
        for ladder in MMLU_PRO_LADDERS:
            table = load_dataset("mmlu-pro", models=ladder)
            if args.quick:
                table = table.subset(np.sort(np.random.default_rng(0).permutation(len(table))[:3000]))
            best = max(float(table.column(m).mean()) for m in ladder)
            result = evaluate_ladder(table, ladder, target=best, budget_share=0.4)
            results["mmlu-pro " + " -> ".join(ladder)] = result
            mmlu_results.append(result)
        plot(mmlu_results, ROOT / "docs" / "cascade_mmlupro.png")
    # A run without --collected keeps the stored live numbers: the collected file is not committed.
    live = evaluate_live(args.collected) if args.collected else saved.get("live")
    report(results, live, args)


def report(results: dict[str, Any], live: dict[str, Any] | None, args: Any) -> None:
    """Print the table, write the JSON and the docs/results.md section."""
    rows = [row(name, result) for name, result in results.items()]
    print(markdown_table(rows))
    slim = {k: {kk: vv for kk, vv in v.items() if kk != "fronts"} | {"fronts": v["fronts"]} for k, v in results.items()}
    if live is not None:
        slim["live"] = live
    write_json(ROOT / "docs" / "results" / "cascade.json", slim)
    body = (
        "Scorer: `answer-classifier` (hashed answer words + text features incl. an arithmetic check; 5-fold "
        f"out-of-fold). Router: `{ROUTER}` (5-fold out-of-fold). `acc@budget`: best accuracy of each front at "
        "the budget (a share of the last model's cost); `cost@target`: cheapest cost share reaching the target "
        "accuracy (the strongest model's; NaN = never reached). `calibrated`: thresholds calibrated for the "
        "target on one half of the questions, measured on the other half.\n\n"
        + markdown_table(rows)
        + "\n\n![cascade vs router vs hybrid on MMLU-Pro](cascade_mmlupro.png)\n"
    )
    if room := headroom_rows(results):
        body += (
            "\n### How good a scorer the cost goals need (two-model ladders)\n\n"
            "`perfect scorer`: the cost share at the target accuracy when the scorer knows which small answers "
            "are wrong (an upper bound on any scorer). `any cascade (oracle)`: the least cost share of any cascade on "
            "this ladder, which also knows where the big model is right and what each call costs: the small model "
            "always answers, the big one only where it turns a wrong answer right, cheapest first. "
            "`AUC needed`: the least AUC (0.01 steps) at which a "
            "simulated binormal scorer (score = separation x correct + normal noise; 5 draws) reaches the "
            "target within the goal's cost share on the same outcomes; real scorers of the same AUC usually do "
            "worse, so it is a lower bound. `AUC ours`: the answer-classifier's out-of-fold AUC on the small "
            "model's correctness.\n\n" + markdown_table(room) + "\n"
        )
    if live is not None:
        body += live_section(live)
    update_section(
        "cascade",
        "Cascades",
        "python bench/cascade.py"
        + (" --quick" if args.quick else "")
        + (" --collected RUN.jsonl" if live is not None else ""),
        body,
    )


if __name__ == "__main__":
    main()
