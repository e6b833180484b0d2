"""Routing metrics, defined as RouteLLM (``routellm/evals/evaluate.py``) and RouterBench define them.

Two-model routing. A router gives each prompt a score; sending the top ``s`` share of prompts (by score)
to the strong model and the rest to the weak one gives one point ``(s, quality(s), cost(s))``. Sweeping
``s`` from 0 to 1 traces the *routing curve*. We compute it exactly, at every group boundary of the sorted
scores, rather than at a handful of thresholds: prompts with tied scores are indistinguishable to the
router, so inside a tied group the curve is the straight line between the group's ends (the expected
value of routing a random part of the group). A constant score is thus exactly the random router.

From the curve (``q_w``/``q_s`` = mean quality of always-weak/always-strong):

* AUC = ∫₀¹ quality(s) ds (RouteLLM's ``np.trapz(accuracy, strong_percentage / 100)``);
* PGR(s) = (quality(s) − q_w) / (q_s − q_w), the performance gap recovered;
* APGR = ∫₀¹ PGR(s) ds = (AUC − q_w) / (q_s − q_w);
* CPT(x) = the smallest share of strong calls at which PGR reaches x (RouteLLM interpolates
  ``np.interp`` on the curve; we take the first crossing of the piecewise-linear curve, which is the same
  on a monotone curve and well defined on a non-monotone one).

N-model routing (RouterBench). Each router setting gives a point (mean cost, mean quality). The
*non-decreasing convex hull* of a set of points is their upper concave hull up to its highest point, then
flat (a mix of two settings is reachable by routing at random between them, and more money never has to buy
less quality). AIQ = ∫ hull(c) dc / (c_max − c_min) over the cost range of the points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sizewise.checks import check_choice as check_choice  # shared with the N-model routers; re-exported
from sizewise.errors import DataError
from sizewise.evaluation.hull import mixture_frontier  # one hull for every frontier, tested against Qhull


@dataclass(frozen=True)
class RoutingCurve:
    """The exact two-model routing curve: points sorted by ``share`` from 0 to 1.

    ``cost`` is None when costs are unknown. ``q_weak``/``q_strong`` and ``c_weak``/``c_strong`` are the
    always-weak and always-strong baselines (the curve's two ends). ``threshold[k]`` is the score at and
    above which prompts go to the strong model at point ``k`` (``inf`` at share 0; None when unknown).
    """

    share: np.ndarray
    quality: np.ndarray
    cost: np.ndarray | None
    q_weak: float
    q_strong: float
    c_weak: float | None = None
    c_strong: float | None = None
    threshold: np.ndarray | None = None

    def quality_at(self, share: float | np.ndarray) -> np.ndarray:
        """Quality at any share of strong calls (linear between points)."""
        return np.interp(share, self.share, self.quality)


def _vector(values: object, name: str, n: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if n is not None and array.size != n:
        raise DataError(f"{name} has {array.size} values, expected {n}")
    if np.isnan(array).any():
        raise DataError(f"{name} contains NaN at position {int(np.flatnonzero(np.isnan(array))[0])}")
    return array


def routing_curve(
    scores: object,
    q_weak: object,
    q_strong: object,
    c_weak: object | None = None,
    c_strong: object | None = None,
) -> RoutingCurve:
    """The exact curve of a score ordering (higher score = strong model first), ties averaged.

    Points sit at the end of each group of tied scores: share ``k/n``, quality
    ``(Σ q_weak + Σ_{top k} (q_strong − q_weak)) / n``, and the same for cost when given.
    """
    s = _vector(scores, "scores")
    n = s.size
    if n == 0:
        raise DataError("cannot build a routing curve from zero prompts")
    qw, qs = _vector(q_weak, "weak quality", n), _vector(q_strong, "strong quality", n)
    order = np.argsort(-s, kind="stable")
    sorted_scores = s[order]
    # last index of each tied group in the sorted order
    ends = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), n - 1]  # inf-safe, unlike diff
    counts = np.r_[0, ends + 1]

    def accumulate(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
        gain = np.cumsum((strong - weak)[order])
        return (weak.sum() + np.r_[0.0, gain[ends]]) / n

    cost = None
    cw_mean = cs_mean = None
    if c_weak is not None and c_strong is not None:
        cw, cs = _vector(c_weak, "weak cost", n), _vector(c_strong, "strong cost", n)
        cost = accumulate(cw, cs)
        cw_mean, cs_mean = float(cw.mean()), float(cs.mean())
    return RoutingCurve(
        share=counts / n,
        quality=accumulate(qw, qs),
        cost=cost,
        q_weak=float(qw.mean()),
        q_strong=float(qs.mean()),
        c_weak=cw_mean,
        c_strong=cs_mean,
        threshold=np.r_[np.inf, sorted_scores[ends]],
    )


def random_curve(
    q_weak: object, q_strong: object, c_weak: object | None = None, c_strong: object | None = None
) -> RoutingCurve:
    """The random router's expected curve: the straight line from always-weak to always-strong."""
    return routing_curve(np.zeros(np.asarray(q_weak).size), q_weak, q_strong, c_weak, c_strong)


def oracle_curve(
    q_weak: object, q_strong: object, c_weak: object | None = None, c_strong: object | None = None
) -> RoutingCurve:
    """The oracle's curve: prompts ordered by the strong model's true gain ``q_strong − q_weak``."""
    gain = np.asarray(q_strong, dtype=float) - np.asarray(q_weak, dtype=float)
    return routing_curve(gain, q_weak, q_strong, c_weak, c_strong)


def auc(curve: RoutingCurve) -> float:
    """Area under quality vs share of strong calls over [0, 1] (RouteLLM's AUC)."""
    return float(np.trapezoid(curve.quality, curve.share))


def gap(curve: RoutingCurve) -> float:
    """``q_strong − q_weak``; PGR-based metrics are undefined (NaN) when it is not positive."""
    return curve.q_strong - curve.q_weak


def pgr(curve: RoutingCurve) -> np.ndarray:
    """Performance gap recovered at each point: ``(quality − q_weak) / (q_strong − q_weak)``."""
    g = gap(curve)
    return (curve.quality - curve.q_weak) / g if g > 0 else np.full(curve.quality.shape, np.nan)


def apgr(curve: RoutingCurve) -> float:
    """Average performance gap recovered: ``(AUC − q_weak) / (q_strong − q_weak)``; 0.5 for random."""
    g = gap(curve)
    return (auc(curve) - curve.q_weak) / g if g > 0 else float("nan")


def cpt(curve: RoutingCurve, x: float) -> float:
    """Call-performance threshold: the least share of strong calls where PGR first reaches ``x``.

    ``x`` in [0, 1] (0.5 means CPT(50%)); linear inside a segment, NaN when the gap is not positive.
    """
    if not 0 <= x <= 1:
        raise DataError(f"CPT level must lie in [0, 1], got {x}")
    g = gap(curve)
    if g <= 0:
        return float("nan")
    target = curve.q_weak + x * g
    q, s = curve.quality, curve.share
    # numerical slack so the exact end point (PGR 1) always counts as reached
    reached = np.flatnonzero(q >= target - 1e-12 * max(1.0, abs(target)))
    first = int(reached[0])
    if first == 0:
        return float(s[0])
    q0, q1, s0, s1 = q[first - 1], q[first], s[first - 1], s[first]
    return float(s0 + (target - q0) / (q1 - q0) * (s1 - s0))


def nondecreasing_hull(cost: object, quality: object) -> tuple[np.ndarray, np.ndarray]:
    """RouterBench's non-decreasing convex hull of (cost, quality) points, sorted by cost.

    The upper concave hull up to the best-quality point; beyond it the hull stays flat at that quality up
    to the largest cost (returned as a last point when it lies further right).
    """
    c, q = _vector(cost, "cost"), _vector(quality, "quality")
    if c.size == 0 or c.size != q.size:
        raise DataError(f"need matching, non-empty cost and quality points ({c.size} vs {q.size})")
    kept = [(float(c[i]), float(q[i])) for i in mixture_frontier(c, q)]
    if kept[-1][0] < float(c.max()):
        kept.append((float(c.max()), kept[-1][1]))
    arr = np.asarray(kept)
    return arr[:, 0], arr[:, 1]


def aiq(cost: object, quality: object) -> float:
    """Average improvement in quality (RouterBench): area under the non-decreasing hull / cost range.

    NaN when all points have the same cost (no range to average over).
    """
    hc, hq = nondecreasing_hull(cost, quality)
    span = hc[-1] - hc[0]
    return float(np.trapezoid(hq, hc) / span) if span > 0 else float("nan")


def cost_at_quality(cost: object, quality: object, target: float, reference_cost: float) -> float:
    """Cheapest cost on the non-decreasing hull that reaches ``target`` quality, over ``reference_cost``.

    With ``target`` and ``reference_cost`` of the strong (or best single) model this is "cost at equal
    quality": 0.4 means the router matches it for 40% of its cost. NaN when the target is never reached.
    """
    if not isinstance(target, int | float | np.number) or not np.isfinite(target):
        raise DataError(f"target quality must be a finite number, got {target!r}")
    hc, hq = nondecreasing_hull(cost, quality)
    slack = 1e-12 * max(1.0, abs(target))
    reached = np.flatnonzero(hq >= target - slack)
    if reached.size == 0 or reference_cost <= 0:
        return float("nan")
    first = int(reached[0])
    if first == 0:
        return float(hc[0] / reference_cost)
    c0, c1, q0, q1 = hc[first - 1], hc[first], hq[first - 1], hq[first]
    return float((c0 + (target - q0) / (q1 - q0) * (c1 - c0)) / reference_cost)


def routed_point(choice: object, quality: object, cost: object | None = None) -> tuple[float, float | None]:
    """Mean (quality, cost) when prompt ``i`` goes to model ``choice[i]`` (N-model routing).

    ``quality``/``cost`` have shape ``(prompts, models)``; cost is None when unknown.
    """
    try:
        q = np.asarray(quality, dtype=float)
        idx = np.asarray(choice, dtype=int).reshape(-1)
    except (TypeError, ValueError):
        raise DataError("choice must be model indices and quality a matrix of numbers") from None
    check_choice(idx, q.shape)
    rows = np.arange(idx.size)
    mean_q = float(_vector(q[rows, idx], "chosen quality").mean())
    mean_c = None if cost is None else float(_vector(np.asarray(cost, dtype=float)[rows, idx], "chosen cost").mean())
    return mean_q, mean_c


def summarize(curve: RoutingCurve) -> dict[str, float | None]:
    """Every scalar metric of a two-model curve, ``None`` where undefined (no gap, no cost)."""

    def clean(value: float) -> float | None:
        return None if value is None or not np.isfinite(value) else float(value)

    out: dict[str, float | None] = {
        "apgr": clean(apgr(curve)),
        "cpt20": clean(cpt(curve, 0.2)),
        "cpt50": clean(cpt(curve, 0.5)),
        "cpt80": clean(cpt(curve, 0.8)),
        "auc": clean(auc(curve)),
        "aiq": None,
        "cost_at_strong_quality": None,
    }
    if curve.cost is not None and curve.c_strong is not None:
        out["aiq"] = clean(aiq(curve.cost, curve.quality))
        out["cost_at_strong_quality"] = clean(
            cost_at_quality(curve.cost, curve.quality, curve.q_strong, curve.c_strong)
        )
    return out
