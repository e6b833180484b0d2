"""``cascade-logprob``'s built-in threshold, calibrated on the embedded ladder's own collected answers.

The live cascade climbs SmolLM2-135M -> Qwen2.5-Coder-0.5B -> 1.5B and accepts a rung's answer when
``exp(mean token logprob)`` (the unfitted logprob scorer) reaches one threshold. On the questions all
three models answered (``bench/collect_embedded.py``), the threshold is the cheapest whose cascade keeps
95% of the 1.5B model's accuracy on every question, with 95% confidence (a bootstrap lower bound);
repeated half splits (choose on one, measure on the other) say what that choice is worth on questions it
did not see. Cost is what the gateway bills: tokens
times the built-in catalog's per-token prices (proportional to size). An answer cut at ``max_tokens`` is
escalated whatever its score, as the gateway does (the choice and the measurement both count it so).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sizewise.cascade.policy import ladder_cut, run_cascade
from sizewise.cascade.scorers.logprob import logprob_features
from sizewise.evaluation.default_router import COLLECTED, collected_dir

LADDER = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
TARGET = 0.95
#: Thresholds shipped before: 0.6, then 0.85 (calibrated before cut answers were escalated).
PREVIOUS = (0.6, 0.85)
#: Random half splits that measure the choice (each half chooses once, the other measures).
SPLITS = 20
#: Bootstrap draws behind the 95% confidence of reaching the target.
BOOT = 200

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def ladder_outcomes() -> Arrays:
    """(quality, cost, cut) of shape (questions, 3) and the scores of the first two rungs, (questions, 2)."""
    from sizewise.cascade.collect import load_collected
    from sizewise.catalog import load_catalog
    from sizewise.errors import DataError

    catalog = load_catalog(None)
    prices = [(catalog.get(m).price_in, catalog.get(m).price_out) for m in LADDER]
    parts: list[Arrays] = []
    for path in sorted(collected_dir().glob(COLLECTED)):
        try:
            table = load_collected(path, models=list(LADDER))
        except DataError:
            continue
        assert table.tokens_in is not None and table.tokens_out is not None
        cost = np.stack(
            [
                (table.tokens_in[:, j] * p_in + table.tokens_out[:, j] * p_out) / 1e6
                for j, (p_in, p_out) in enumerate(prices)
            ],
            axis=1,
        )
        logprobs = table.meta["logprobs"]
        score = np.stack(
            [[float(np.exp(logprob_features(lp)[0])) for lp in logprobs[m]] for m in LADDER[:-1]],  # type: ignore[index]
            axis=1,
        )
        parts.append((table.quality, cost, score, ladder_cut(table, LADDER)))
    if not parts:
        raise DataError(f"no question answered by all of {', '.join(LADDER)} in {collected_dir()}")
    return tuple(np.vstack([p[i] for p in parts]) for i in range(4))  # type: ignore[return-value]


def _point(data: Arrays, rows: np.ndarray, threshold: float) -> dict[str, float]:
    quality, cost, score, cut = (a[rows] for a in data)
    out = run_cascade(quality, cost, score, [threshold, threshold], cut=cut)
    return {
        "quality_vs_big": float(out.quality.mean() / max(quality[:, -1].mean(), 1e-12)),
        "cost_vs_big": float(out.cost.mean() / cost[:, -1].mean()),
        "accepted_tiny": float((out.step == 0).mean()),
        "tiny_accepted_accuracy": float(quality[out.step == 0, 0].mean()) if (out.step == 0).any() else float("nan"),
        "accepted_small": float((out.step == 1).mean()),
        "cut_below_top": float(cut[:, :-1].mean()),
    }


def _choose(data: Arrays, rows: np.ndarray, grid: np.ndarray, seed: int = 0) -> float:
    """The cheapest threshold whose cascade keeps ``TARGET`` of the 1.5B model's accuracy on ``rows`` with
    95% confidence (one-sided paired bootstrap of the questions): a point estimate on a few hundred
    questions misses the target on unseen ones about half the time."""
    quality, cost, score, cut = (a[rows] for a in data)
    draws = np.random.default_rng(seed).integers(0, len(rows), (BOOT, len(rows)))
    big = quality[draws, -1].mean(axis=1)
    best = (float("inf"), float("inf"))
    for t in grid:
        out = run_cascade(quality, cost, score, [t, t], cut=cut)
        lower = float(np.quantile(out.quality[draws].mean(axis=1) / np.maximum(big, 1e-12), 0.05))
        if lower >= TARGET:
            best = min(best, (float(out.cost.mean()), float(t)))
    return best[1]


def calibrate_logprob(seed: int = 0) -> dict[str, Any]:
    """Choose the threshold on every question; measure the choice by repeated half splits (choose on one
    half, measure on the other: one half's choice swings with a few answers); the earlier thresholds beside."""
    data = ladder_outcomes()
    quality, score, cut = data[0], data[2], data[3]
    # Only whole answers' scores: a cut one is escalated at any threshold.
    grid = np.unique(np.r_[np.quantile(score[~cut[:, :-1]], np.linspace(0, 1, 201)), np.inf])
    everything = np.arange(len(quality))
    rng, held = np.random.default_rng(seed), []
    for _ in range(SPLITS):
        order = rng.permutation(len(quality))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        for choose, measure in (halves, halves[::-1]):
            chosen = _choose(data, choose, grid, seed)
            held.append({**_point(data, measure, chosen), "threshold": chosen})
    crossed = {key: float(np.nanmean([h[key] for h in held])) for key in held[0]}
    crossed["reached_target"] = float(np.mean([h["quality_vs_big"] >= TARGET for h in held]))
    threshold = _choose(data, everything, grid)
    return {
        "questions": len(quality),
        "accuracy": [float(q) for q in quality.mean(axis=0)],
        "cut": [float(c) for c in cut.mean(axis=0)],
        "target_quality_vs_big": TARGET,
        "threshold": threshold,
        "in_sample": _point(data, everything, threshold),
        "cross_validated": crossed,
        "splits": len(held),
        "previous": {f"{t:g}": _point(data, everything, t) for t in PREVIOUS},
    }


def render(report: dict[str, Any]) -> str:
    """Markdown lines for docs/results.md."""
    acc = " / ".join(f"{a:.3f}" for a in report["accuracy"])
    cut = " / ".join(f"{c:.3f}" for c in report["cut"])
    rows = [
        (f"**{report['threshold']:.4f}** (shipped)", "all questions (in sample)", report["in_sample"]),
        (
            f"chosen on half: {report['cross_validated']['threshold']:.3f} on average",
            f"the other half, mean of {report['splits']} ({report['cross_validated']['reached_target']:.0%} reach "
            f"{report['target_quality_vs_big']:.0%})",
            report["cross_validated"],
        ),
        *((f"{t} (earlier)", "all questions", p) for t, p in report["previous"].items()),
    ]
    return "\n".join(
        [
            f"`cascade-logprob` on the embedded ladder ({report['questions']} questions all three answered; accuracy "
            f"{acc} for SmolLM2-135M / 0.5B / 1.5B). An answer cut at max_tokens (share {cut}) is escalated whatever "
            "its score, as in the gateway. Threshold: the cheapest cascade keeping "
            f"{report['target_quality_vs_big']:.0%} of the 1.5B model's accuracy with 95% confidence (a bootstrap "
            "lower bound).",
            "",
            "| threshold | measured on | quality vs always-1.5B | cost vs always-1.5B | SmolLM2 answers accepted "
            "| their accuracy | 0.5B answers accepted |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {t} | {on} | {p['quality_vs_big']:.3f} | {p['cost_vs_big']:.3f} | {p['accepted_tiny']:.3f} | "
                f"{p['tiny_accepted_accuracy']:.3f} | {p['accepted_small']:.3f} |"
                for t, on, p in rows
            ),
        ]
    )
