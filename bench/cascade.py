"""Cascades on recorded outcomes: GSM8K (Mixtral -> GPT-4) and MMLU-Pro ladders; plus live collected tables.

Usage: ``python bench/cascade.py [--quick] [--parts gsm8k,mmlu-pro] [--collected PATH]``.
Learned scorers and routers are scored
out-of-fold (5-fold CV); the cascade curve sweeps the thresholds; a calibrated operating point picks
thresholds on one half of the out-of-fold scores and reports the other half (and vice versa).
Writes docs/results/cascade.json, docs/cascade_mmlupro.png and the ``cascade`` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def folds(n: int, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Random k-fold split of n rows."""
    return [np.sort(f) for f in np.array_split(np.random.default_rng(seed).permutation(n), k)]


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
    }


def evaluate_live(path: str) -> dict[str, Any]:
    """The embedded ladder on questions collected with ``sizewise collect``: accuracy and CPU seconds of
    always-big vs the cascade with each scorer the collected data supports: logprob (raw and fitted) and
    answer-classifier (5-fold out-of-fold) always; verifier and consistency where ``collect --scorers``
    recorded their model calls. Cost = CPU seconds of each call, plus the scorer's own calls on every
    rung that is scored (verifying or sampling is part of what a cascade spends)."""
    from sizewise.cascade.collect import load_collected

    table = _with_scorer_data(load_collected(path))
    ladder = list(table.models)
    quality = table.quality
    cost = table.cost
    meta = table.meta
    splits = folds(len(table), min(5, max(2, len(table) // 10)))
    answers = {
        m: [
            Answer(p, str(r or ""), model=m, logprobs=lp, samples=s, verdict=v)
            for p, r, lp, s, v in zip(
                table.texts,
                table.column(m, "responses"),
                meta["logprobs"][m],
                meta["samples"][m],
                meta["verdicts"][m],
                strict=True,
            )
        ]
        for m in ladder
    }
    scorers: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "logprob (unfitted)": (
            np.stack([make_scorer("logprob").score(answers[m]) for m in ladder[:-1]], axis=1),
            cost,
        )
    }
    for name in ("logprob", "answer-classifier"):
        scores = np.zeros((len(table), len(ladder) - 1))
        for j, model in enumerate(ladder[:-1]):
            for test in splits:
                train = np.setdiff1d(np.arange(len(table)), test)
                fitted = make_scorer(name).fit([answers[model][i] for i in train], quality[train, j])
                scores[test, j] = fitted.score([answers[model][i] for i in test])
        scorers[name + " (5-fold)"] = (scores, cost)
    for name, label in (("verifier", "verifier (next model, P(yes))"), ("consistency", "consistency")):
        spent = np.array([[s.get(name, np.nan) for s in meta["scorer_cpu_s"][m]] for m in ladder[:-1]]).T
        if np.isnan(spent).any():
            continue  # not recorded for every answer: run ``sizewise collect --scorers``
        scores = np.stack([make_scorer(name).score(answers[m]) for m in ladder[:-1]], axis=1)
        scorers[label] = (scores, cost + np.c_[spent, np.zeros(len(table))])
    big_seconds = float(cost[:, -1].mean())
    verify_rows = [
        {
            "answer by": m,
            "verifier": ladder[j + 1],
            "verify CPU s": float(np.mean([s.get("verifier", np.nan) for s in meta["scorer_cpu_s"][m]])),
            "answer CPU s": float(cost[:, j + 1].mean()),
        }
        for j, m in enumerate(ladder[:-1])
    ]
    result: dict[str, Any] = {
        "n": len(table),
        "ladder": ladder,
        "accuracy": {m: float(quality[:, j].mean()) for j, m in enumerate(ladder)},
        "seconds_per_question": {m: float(cost[:, j].mean()) for j, m in enumerate(ladder)},
        "scorers": {},
    }
    if "verifier (next model, P(yes))" in scorers:
        result["verifier_vs_generation"] = [r | {"ratio": r["verify CPU s"] / r["answer CPU s"]} for r in verify_rows]
    for name, (scores, paid) in scorers.items():
        front = pareto(sweep(quality, paid, scores, points=11))
        result["scorers"][name] = {
            "accuracy_at_half_big_time": quality_at_cost(front, 0.5 * big_seconds),
            "time_share_at_big_accuracy": cost_at_quality(front, float(quality[:, -1].mean())) / big_seconds,
            "scorer_cpu_s_per_scored_answer": float((paid - cost)[:, :-1].mean()),
            "auc_per_rung": {m: _auc(scores[:, j], quality[:, j]) for j, m in enumerate(ladder[:-1])},
        }
    return result


def _with_scorer_data(table: OutcomeTable) -> OutcomeTable:
    """The questions on which every scorer recorded anywhere (``collect --scorers``) ran on every scored
    rung, so all scorers are compared on the same questions (a run cut short has a shorter tail)."""
    spent = table.meta["scorer_cpu_s"]
    scored = table.models[:-1]
    recorded = {name for m in scored for s in spent[m] for name in s}
    keep = np.array([all(recorded <= set(spent[m][i]) for m in scored) for i in range(len(table))])
    if keep.all() or not keep.any():
        return table
    rows = np.flatnonzero(keep)
    subset = table.subset(rows)
    per_answer = ("logprobs", "verdicts", "samples", "scorer_cpu_s")
    subset.meta = {
        key: {m: [value[m][i] for i in rows] for m in table.models} if key in per_answer else value
        for key, value in table.meta.items()
    }
    return subset


def _auc(scores: np.ndarray, correct: np.ndarray) -> float | None:
    """ROC AUC of a scorer on one rung's answers (None when every answer is right or every one wrong)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(correct, scores)) if 0 < correct.mean() < 1 else None


def perfect_scorer_bound(accuracy: dict[str, float], seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Least CPU time any cascade could spend to reach the last model's accuracy, scorer perfect.

    For every sub-ladder ending in the last model: at least ``acc_last - sum(acc of earlier rungs)`` of
    the questions must reach each rung (earlier rungs can answer at most their own accuracy), so the
    time is at least ``sum(seconds_j * that share)``. A goal below every bound is out of reach for this
    ladder whatever the scorer.
    """
    models = list(accuracy)
    *lower, last = models
    target, top = accuracy[last], seconds[last]
    bounds = []
    for size in range(1, len(lower) + 1):
        for rungs in itertools.combinations(lower, size):
            ladder, time_s, solved = [*rungs, last], 0.0, 0.0
            for j, model in enumerate(ladder):
                time_s += seconds[model] * (1.0 if j == 0 else max(0.0, target - solved))
                solved += accuracy[model]
            bounds.append({"ladder": " -> ".join(ladder), "least time share at big accuracy": time_s / top})
    return bounds


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
    if live is not None:
        live_rows = [
            {
                "scorer": name,
                "accuracy at half the big model's time": v["accuracy_at_half_big_time"],
                "time share at the big model's accuracy": v["time_share_at_big_accuracy"],
                "scorer CPU s per scored answer": v.get("scorer_cpu_s_per_scored_answer", 0.0),
                **{f"AUC {m}": auc for m, auc in v.get("auc_per_rung", {}).items()},
            }
            for name, v in live["scorers"].items()
        ]
        body += (
            f"\n### Live: embedded ladder on {live['n']} GSM8K test questions (`sizewise collect`)\n\n"
            + markdown_table(
                [
                    {"model": m, "accuracy": live["accuracy"][m], "CPU s/question": live["seconds_per_question"][m]}
                    for m in live["ladder"]
                ]
            )
            + "\n\n"
            + markdown_table(live_rows)
            + "\n\nWith a perfect scorer (an upper bound on any scorer), the least CPU time that reaches the "
            "big model's accuracy, per sub-ladder:\n\n"
            + markdown_table(perfect_scorer_bound(live["accuracy"], live["seconds_per_question"]))
            + "\n"
        )
    if live is not None and "verifier_vs_generation" in live:
        body += (
            "\nVerifier cost per rung (CPU s to read an answer and say yes/no vs CPU s for the same model to "
            "answer the question itself):\n\n" + markdown_table(live["verifier_vs_generation"]) + "\n"
        )
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
