"""Cascade maths on recorded outcomes: run a ladder with thresholds, sweep, and calibrate.

A ladder is 2..N models ordered by cost. For prompt i, model 0 answers first; its answer is
accepted when the scorer's confidence ``scores[i, 0] >= thresholds[0]``, else model 1 answers, and
so on; the last model's answer is always accepted. The cost of a prompt counts every model called.
**Hybrid**: prompts whose router score is ``>= router_threshold`` go straight to the last model.
**Cut answers**: as in the gateway (:mod:`sizewise.policy.cascading`), an answer cut at ``max_tokens``
(``cut[i, j]``, from a collected table's ``finish_reason``: :func:`ladder_cut`) is never accepted below the
top rung, whatever its score: every sweep, calibration and bench then counts it as escalated.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sizewise.errors import ConfigError, DataError


@dataclass
class CascadeOutcome:
    """Per-prompt result of a cascade: accepted step, quality and total cost."""

    step: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    direct: np.ndarray

    @property
    def mean_quality(self) -> float:
        """Mean quality of the accepted answers."""
        return float(np.mean(self.quality))

    @property
    def mean_cost(self) -> float:
        """Mean cost per prompt, every model called included."""
        return float(np.mean(self.cost))

    @property
    def escalation(self) -> float:
        """Share of prompts that went past the first model (routed-direct ones included)."""
        return float(np.mean(self.step > 0))

    def summary(self) -> dict[str, float]:
        """The three numbers a curve plots."""
        return {"quality": self.mean_quality, "cost": self.mean_cost, "escalation": self.escalation}


def _check(quality: np.ndarray, cost: np.ndarray, scores: np.ndarray) -> None:
    if quality.ndim != 2 or quality.shape[1] < 2:
        raise DataError(f"a cascade needs a ladder of at least 2 models, got quality shape {quality.shape}")
    if cost.shape != quality.shape:
        raise DataError(f"cost shape {cost.shape} differs from quality shape {quality.shape}")
    if scores.shape != (quality.shape[0], quality.shape[1] - 1):
        raise DataError(f"scores must have shape {(quality.shape[0], quality.shape[1] - 1)}, got {scores.shape}")


def _cut_mask(cut: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """``cut`` as a boolean (prompts, rungs below the top) array; all False when not recorded."""
    n, m = shape
    if cut is None:
        return np.zeros((n, m - 1), bool)
    mask = np.asarray(cut, dtype=bool).reshape(n, -1) if np.size(cut) else np.zeros((n, 0), bool)
    if mask.shape not in ((n, m), (n, m - 1)):
        raise DataError(f"cut must have shape {(n, m)} or {(n, m - 1)}, got {np.shape(cut)}")
    return mask[:, : m - 1]


def run_cascade(
    quality: np.ndarray,
    cost: np.ndarray,
    scores: np.ndarray,
    thresholds: Sequence[float],
    router_scores: np.ndarray | None = None,
    router_threshold: float = np.inf,
    cut: np.ndarray | None = None,
) -> CascadeOutcome:
    """Replay a cascade on recorded outcomes. ``scores[:, j]`` = confidence in model j's answer;
    ``cut[:, j]``: model j's answer stopped at ``max_tokens`` (never accepted below the top)."""
    quality, cost, scores = (np.asarray(a, dtype=float) for a in (quality, cost, scores))
    scores = scores.reshape(len(quality), -1)
    _check(quality, cost, scores)
    n, m = quality.shape
    whole = ~_cut_mask(cut, (n, m))
    if len(thresholds) != m - 1:
        raise ConfigError(f"a ladder of {m} models needs {m - 1} thresholds, got {len(thresholds)}")
    direct = np.zeros(n, bool) if router_scores is None else np.asarray(router_scores) >= router_threshold
    step = np.full(n, m - 1)
    undecided = ~direct
    spent = np.zeros(n)
    for j in range(m - 1):
        spent[undecided] += cost[undecided, j]
        accept = undecided & (scores[:, j] >= thresholds[j]) & whole[:, j]
        step[accept] = j
        undecided &= ~accept
    spent += cost[:, m - 1] * (step == m - 1)
    return CascadeOutcome(step=step, quality=quality[np.arange(n), step], cost=spent, direct=direct)


def threshold_grid(scores: np.ndarray, points: int = 41) -> np.ndarray:
    """Candidate thresholds: quantiles of the scores plus +/- infinity (accept all / escalate all)."""
    finite = np.asarray(scores, dtype=float)
    finite = finite[np.isfinite(finite)]
    quantiles = np.quantile(finite, np.linspace(0, 1, points)) if finite.size else np.array([])
    return np.unique(np.concatenate([[-np.inf], quantiles, [np.inf]]))


def sweep(
    quality: np.ndarray,
    cost: np.ndarray,
    scores: np.ndarray,
    points: int = 41,
    router_scores: np.ndarray | None = None,
    router_thresholds: Sequence[float] = (np.inf,),
    cut: np.ndarray | None = None,
) -> list[dict[str, float | list[float]]]:
    """Every threshold combination on a grid: one point (quality, cost, escalation, thresholds) each;
    ``cut`` as in :func:`run_cascade`."""
    scores = np.asarray(scores, dtype=float).reshape(len(quality), -1)
    grids = [threshold_grid(scores[:, j], points) for j in range(scores.shape[1])]
    results: list[dict[str, float | list[float]]] = []
    for router_threshold in router_thresholds:
        for combo in itertools.product(*grids):
            outcome = run_cascade(quality, cost, scores, combo, router_scores, router_threshold, cut)
            results.append(
                {
                    **outcome.summary(),
                    "thresholds": [float(t) for t in combo],
                    "router_threshold": float(router_threshold),
                }
            )
    return results


def pareto(points: list[dict[str, float | list[float]]]) -> list[dict[str, float | list[float]]]:
    """The points no other point beats on both cost (lower) and quality (higher), by cost."""
    front: list[dict[str, float | list[float]]] = []
    for point in sorted(points, key=lambda p: (p["cost"], -float(p["quality"]))):  # type: ignore[arg-type]
        if not front or float(point["quality"]) > float(front[-1]["quality"]) + 1e-12:  # type: ignore[arg-type]
            front.append(point)
    return front


def quality_at_cost(front: list[dict[str, float | list[float]]], budget: float) -> float:
    """Best quality of a Pareto front within a cost budget (NaN when nothing fits)."""
    fitting = [float(p["quality"]) for p in front if float(p["cost"]) <= budget + 1e-15]  # type: ignore[arg-type]
    return max(fitting) if fitting else float("nan")


def cost_at_quality(front: list[dict[str, float | list[float]]], target: float) -> float:
    """Cheapest cost of a Pareto front that reaches ``target`` quality (NaN when none does)."""
    reaching = [float(p["cost"]) for p in front if float(p["quality"]) >= target - 1e-12]  # type: ignore[arg-type]
    return min(reaching) if reaching else float("nan")


def calibrate(
    quality: np.ndarray,
    cost: np.ndarray,
    scores: np.ndarray,
    *,
    target_quality: float | None = None,
    budget: float | None = None,
    escalation: float | None = None,
    points: int = 41,
    cut: np.ndarray | None = None,
) -> list[float]:
    """Thresholds from a held-out table: exactly one of ``target_quality`` (cheapest reaching it),
    ``budget`` (best quality at mean cost <= budget) or ``escalation`` (share of prompts that leave
    the first model; for longer ladders the same share is applied at every step). Cut answers
    (``cut``, as in :func:`run_cascade`) always escalate; ``escalation`` counts them in its share."""
    given = [x is not None for x in (target_quality, budget, escalation)]
    if sum(given) != 1:
        raise ConfigError("calibrate: give exactly one of target_quality, budget, escalation")
    scores = np.asarray(scores, dtype=float).reshape(len(quality), -1)
    if escalation is not None:
        if not 0 <= escalation <= 1:
            raise ConfigError(f"escalation share must lie in [0, 1], got {escalation}")
        return escalation_thresholds(scores, escalation, cut)
    points_ = sweep(quality, cost, scores, points, cut=cut)
    if target_quality is not None:
        reaching = [p for p in points_ if float(p["quality"]) >= target_quality]  # type: ignore[arg-type]
        best = min(reaching, key=lambda p: p["cost"]) if reaching else max(points_, key=lambda p: p["quality"])  # type: ignore[arg-type, return-value]
    else:
        fitting = [p for p in points_ if float(p["cost"]) <= float(budget)]  # type: ignore[arg-type]
        best = max(fitting, key=lambda p: p["quality"]) if fitting else min(points_, key=lambda p: p["cost"])  # type: ignore[arg-type, return-value]
    return list(best["thresholds"])  # type: ignore[arg-type]


def escalation_thresholds(scores: np.ndarray, share: float, cut: np.ndarray | None = None) -> list[float]:
    """Per-step thresholds so that ``share`` of the prompts reaching each step go on (score below it,
    or a cut answer: those escalate at any threshold, so the whole ones fill the rest of the share)."""
    scores = np.asarray(scores, dtype=float).reshape(len(scores), -1)
    # A cut answer scores -inf: it sorts below every threshold, exactly as the cascade treats it.
    scores = np.where(_cut_mask(cut, (len(scores), scores.shape[1] + 1)), -np.inf, scores)
    thresholds = []
    reaching = np.ones(len(scores), bool)
    for j in range(scores.shape[1]):
        column = scores[reaching, j]
        if share <= 0 or column.size == 0:
            threshold = -np.inf
        elif share >= 1:
            threshold = np.inf
        else:
            # The share-quantile: scores strictly below it escalate; midpoint between neighbours for held-out use.
            ordered = np.sort(column)
            k = round(share * ordered.size)
            threshold = -np.inf if k == 0 else np.inf if k >= ordered.size else _between(ordered[k - 1], ordered[k])
        thresholds.append(float(threshold))
        reaching &= scores[:, j] < threshold
    return thresholds


def _between(low: float, high: float) -> float:
    """A threshold between two sorted scores (midpoint; just above ``low`` when it is a cut answer's -inf)."""
    if np.isneginf(low):
        return -np.inf if np.isneginf(high) else float(np.nextafter(high, -np.inf))
    return float((low + high) / 2)


def ladder_cut(table: object, ladder: Sequence[str]) -> np.ndarray:
    """(prompts, models) booleans: the answer stopped at ``max_tokens`` (``finish_reason`` ``length``), as
    recorded by :func:`sizewise.cascade.collect.load_collected`; all False where a table did not record it."""
    from sizewise.core.table import OutcomeTable

    if not isinstance(table, OutcomeTable):
        raise DataError("ladder_cut needs an OutcomeTable")
    reasons = table.meta.get("finish_reasons")
    reasons = reasons if isinstance(reasons, dict) else {}
    return np.array(
        [[reason == "length" for reason in reasons.get(m) or [None] * len(table)] for m in ladder], dtype=bool
    ).T.reshape(len(table), len(ladder))


def ladder_arrays(table: object, ladder: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(quality, cost) columns of ``ladder`` from an :class:`OutcomeTable` (cost required)."""
    from sizewise.core.table import OutcomeTable

    if not isinstance(table, OutcomeTable):
        raise DataError("ladder_arrays needs an OutcomeTable")
    if table.cost is None:
        raise DataError(f"table {table.name!r} has no costs; a cascade needs them")
    columns = [table.index_of(model) for model in ladder]
    return table.quality[:, columns], table.cost[:, columns]
