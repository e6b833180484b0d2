"""How good a cascade scorer must be for a cost goal (bench/cascade.py): our scorer's AUC, the cost share a
perfect scorer needs, and the AUC a simulated scorer needs to reach the goal on the same recorded outcomes.

The simulated scorer is binormal: score = separation x correct + N(0, 1), whose AUC is Phi(separation / sqrt 2).
Real scorers are often worse than a binormal one of the same AUC where it matters (among the most
confident answers), so the AUC it needs is a lower bound on what a real scorer needs, not a promise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sizewise.cascade.policy import cost_at_quality, pareto, sweep

AUC_GRID = np.round(np.arange(0.70, 0.995, 0.01), 2)
DRAWS = 5
POINTS = 201


def _cost_share(quality: np.ndarray, cost: np.ndarray, scores: np.ndarray, target: float) -> float:
    front = pareto(sweep(quality, cost, scores.reshape(-1, 1), points=POINTS))
    return cost_at_quality(front, target) / float(cost[:, -1].mean())


def oracle_cost_share(quality: np.ndarray, cost: np.ndarray, target: float) -> float:
    """Least cost share of any two-model cascade at ``target``: the small model always runs, the big one only
    on questions where it turns a wrong answer right, cheapest first (knows both outcomes and every cost)."""
    gain = quality[:, 1] - quality[:, 0]
    fixes = np.flatnonzero(gain > 0)
    fixes = fixes[np.argsort(cost[fixes, 1], kind="stable")]
    missing = target * len(quality) - quality[:, 0].sum()
    reached = np.cumsum(gain[fixes]) >= missing - 1e-9
    if missing > 0 and not reached.any():
        return float("nan")
    n = 0 if missing <= 0 else int(np.argmax(reached)) + 1
    return float((cost[:, 0].sum() + cost[fixes[:n], 1].sum()) / cost[:, 1].sum())


def headroom(
    quality: np.ndarray, cost: np.ndarray, scores: np.ndarray, target: float, goal_share: float, seed: int = 0
) -> dict[str, Any]:
    """Two-model ladder: AUC of ``scores`` on the small model's correctness, the perfect scorer's cost share at
    ``target`` and the least binormal AUC whose mean cost share (``DRAWS`` draws) is within ``goal_share``."""
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    correct = quality[:, 0] >= 0.5
    rng = np.random.default_rng(seed)
    # Knows which small answers are wrong; escalates them in random order (ties broken at random).
    perfect = _cost_share(quality, cost, correct + 1e-6 * rng.random(len(correct)), target)
    needed = None
    for auc in AUC_GRID:
        separation = np.sqrt(2) * norm.ppf(auc)
        shares = [
            _cost_share(quality, cost, separation * correct + rng.standard_normal(len(correct)), target)
            for _ in range(DRAWS)
        ]
        if np.nanmean(shares) <= goal_share:
            needed = float(auc)
            break
    return {
        "scorer_auc": float(roc_auc_score(correct, scores.reshape(len(correct), -1)[:, 0])),
        "perfect_cost_share": perfect,
        "oracle_cost_share": oracle_cost_share(quality, cost, target),
        "goal_share": goal_share,
        "auc_needed": needed,
    }


def headroom_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per two-model ladder that has a headroom entry."""
    rows = []
    for name, result in results.items():
        room = result.get("headroom")
        if not room:
            continue
        rows.append(
            {
                "ladder": name,
                "goal: cost share": f"{room['goal_share']:.0%}",
                "our scorer": f"{result['cost_share_at_target']['cascade']:.0%}",
                "perfect scorer": f"{room['perfect_cost_share']:.0%}",
                "any cascade (oracle)": f"{room['oracle_cost_share']:.1%}",
                "AUC ours": room["scorer_auc"],
                "AUC needed (binormal)": room["auc_needed"] if room["auc_needed"] is not None else "> 0.99",
            }
        )
    return rows
