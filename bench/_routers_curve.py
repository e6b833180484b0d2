"""Learning curve of a two-model router (bench/routers.py, part ``curve``): APGR with a fraction of each
training fold, a bootstrap interval at the full size, and the training size a log-linear fit puts at the goal.

It answers "would more labelled prompts of the same kind reach the goal?" for RouteLLM MMLU, where the whole
benchmark is 14,037 prompts. The fit (APGR = a + b x log2(training prompts)) is an extrapolation, not a
measurement; it is printed with its slope so the reader can judge it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FRACTIONS = (0.125, 0.25, 0.5, 1.0)
BOOTSTRAP = 200


def _apgr(scores: np.ndarray, q_weak: np.ndarray, q_strong: np.ndarray) -> float:
    from bench._routers_eval import pair_metrics

    return pair_metrics(scores, q_weak, q_strong)["apgr"]


def bootstrap_apgr(
    scores: np.ndarray, q_weak: np.ndarray, q_strong: np.ndarray, groups: np.ndarray | None = None, seed: int = 0
) -> list[float]:
    """Bootstrap 95% interval of the APGR, resampling prompts or, with ``groups``, whole groups of them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(len(scores)) if groups is None else groups
    names, inverse = np.unique(labels, return_inverse=True)
    rows = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    boot = []
    for _ in range(BOOTSTRAP):
        pick = np.concatenate([rows[g] for g in rng.integers(0, len(names), len(names))])
        boot.append(_apgr(scores[pick], q_weak[pick], q_strong[pick]))
    return [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]


def learning_curve(router: str, dataset: str, goal: float, seed: int = 0) -> dict[str, Any]:
    """APGR of ``router`` on ``dataset`` (5-fold CV) trained on ``FRACTIONS`` of each training fold."""
    from bench._routers_eval import folds_for, make
    from sizewise.evaluation.loaders import load_dataset

    table = load_dataset(dataset)
    weak, strong = table.weak_strong()
    q_weak, q_strong = table.column(weak), table.column(strong)
    folds = folds_for(table)
    rng = np.random.default_rng(seed)
    points, full_scores = [], np.zeros(len(table))
    for fraction in FRACTIONS:
        scores, sizes = np.zeros(len(table)), []
        for test in folds:
            train = np.setdiff1d(np.arange(len(table)), test)
            train = np.sort(rng.choice(train, round(fraction * len(train)), replace=False))
            sizes.append(len(train))
            scores[test] = make(router).fit(table.subset(train)).score_table(table.subset(test))
        apgr = _apgr(scores, q_weak, q_strong)
        points.append({"fraction": fraction, "train_prompts": float(np.mean(sizes)), "apgr": apgr})
        print("curve", dataset, router, points[-1], flush=True)
        full_scores = scores
    slope, intercept = np.polyfit(np.log2([p["train_prompts"] for p in points]), [p["apgr"] for p in points], 1)
    needed = 2 ** ((goal - intercept) / slope) if slope > 0 else float("inf")
    return {
        "router": router,
        "dataset": dataset,
        "n": len(table),
        "goal": goal,
        "points": points,
        # The noise of the full-size APGR itself.
        "apgr_95": bootstrap_apgr(full_scores, q_weak, q_strong, seed=seed),
        "slope_per_doubling": float(slope),
        "train_prompts_for_goal": float(needed),
    }


def grouped_interval(
    scores: np.ndarray, q_weak: np.ndarray, q_strong: np.ndarray, groups: np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """APGR and its bootstrap 95% interval, resampling whole groups (the turns of one MT-Bench question)."""
    return {
        "apgr": _apgr(scores, q_weak, q_strong),
        "apgr_95": bootstrap_apgr(scores, q_weak, q_strong, groups, seed),
        "groups": len(np.unique(groups)),
        "n": len(scores),
    }


def _interval_lines(i: dict[str, Any]) -> list[str]:
    """One paragraph on the interval part (empty when it has not run)."""
    if not i:
        return []
    low, high = i["apgr_95"]
    return [
        "",
        f"Bootstrap 95% interval of `{i['router']}` (`--parts interval`; {BOOTSTRAP} resamples of the "
        f"{i['groups']} questions, both turns together): APGR {i['apgr']:.3f}, {low:.3f}-{high:.3f}; the goal "
        f"{i['goal']} is {'inside' if low <= i['goal'] <= high else 'outside'} it.",
    ]


def noise_lines(results: dict[str, Any], dataset: str) -> list[str]:
    """Markdown of the curve and interval parts that measured ``dataset`` (none when neither did)."""
    curve, interval = results.get("curve", {}), results.get("interval", {})
    return [
        *(_curve_lines(curve) if curve.get("dataset") == dataset else []),
        *(_interval_lines(interval) if interval.get("dataset") == dataset else []),
    ]


def _curve_lines(c: dict[str, Any]) -> list[str]:
    rows = [
        "",
        f"#### Learning curve: {c['router']} on {c['dataset']} with part of each training fold "
        "(`--parts curve`; bench/_routers_curve.py)",
        "",
        "| share of training fold | training prompts | APGR |",
        "|---|---|---|",
        *(f"| {p['fraction']:g} | {p['train_prompts']:.0f} | {p['apgr']:.3f} |" for p in c["points"]),
        "",
        f"Bootstrap 95% interval of the full-size APGR ({BOOTSTRAP} resamples of prompts): "
        f"{c['apgr_95'][0]:.3f}-{c['apgr_95'][1]:.3f}. A log-linear fit gains {c['slope_per_doubling']:+.3f} APGR "
        f"per doubling of the training prompts and reaches the goal {c['goal']} at about "
        f"{c['train_prompts_for_goal']:,.0f} training prompts "
        f"({c['train_prompts_for_goal'] / c['points'][-1]['train_prompts']:.1f}x what a fold has; the whole "
        f"benchmark has {c['n']:,} prompts). An extrapolation, not a measurement.",
    ]
    return rows
