"""The frontier of mixtures (sizewise.evaluation.hull): checked against scipy's ConvexHull on random points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from sizewise.errors import DataError
from sizewise.evaluation.hull import mixture_frontier, mixture_path


def scipy_frontier(cost: np.ndarray, quality: np.ndarray) -> set[tuple[float, float]]:
    """The frontier's vertices by another road: Qhull's vertices of the points plus three that close the
    dominated region (below the cheapest, right of the best, and the corner between), those three removed."""
    low, right = quality.min() - 1.0, cost.max() + 1.0
    extra = np.array([[cost.min(), low], [right, low], [right, quality.max()]])
    points = np.vstack([np.column_stack([cost, quality]), extra])
    vertices = ConvexHull(points).vertices
    return {(float(points[v, 0]), float(points[v, 1])) for v in vertices if v < cost.size}


@pytest.mark.parametrize("seed", range(60))
def test_random_points_match_scipy_convex_hull(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 40))
    cost, quality = rng.random(n) * 10 ** rng.uniform(-4, 2), rng.random(n)
    front = mixture_frontier(cost, quality)
    assert {(float(cost[i]), float(quality[i])) for i in front} == scipy_frontier(cost, quality)
    assert np.all(np.diff(cost[front]) > 0) and np.all(np.diff(quality[front]) > 0)  # cheapest first, rising
    # No point lies above the frontier's polyline (mixes of its vertices): nothing beats a mix.
    inside = (cost >= cost[front][0]) & (cost <= cost[front][-1])
    assert np.all(quality[inside] <= np.interp(cost[inside], cost[front], quality[front]) + 1e-12)


def test_a_point_under_the_hull_is_never_on_the_frontier_though_pareto_optimal() -> None:
    # b is Pareto-optimal (cheaper than c, better than a) but the half-half mix of a and c beats it.
    cost, quality = [0.0, 1.0, 2.0], [0.5, 0.6, 0.9]
    assert mixture_frontier(cost, quality) == [0, 2]
    assert mixture_frontier([0.0, 1.0, 2.0], [0.5, 0.8, 0.9]) == [0, 1, 2]  # above the chord: kept


def test_collinear_points_keep_only_the_ends() -> None:
    cost = np.array([3.0, 0.0, 1.0, 2.0])
    assert mixture_frontier(cost, 0.1 + 0.2 * cost) == [1, 0]
    assert mixture_frontier([1.0, 1.0, 1.0], [0.2, 0.7, 0.7]) == [1]  # one cost: the best, first given
    assert mixture_frontier([5.0], [0.3]) == [0]


def test_dearer_and_worse_points_are_cut() -> None:
    # cheapest point first even when poor; the dearest but not better point is left out
    assert mixture_frontier([0.1, 1.0, 5.0, 9.0], [0.2, 0.8, 0.8, 0.5]) == [0, 1]


@pytest.mark.parametrize(
    ("cost", "quality", "message"),
    [([], [], "non-empty"), ([1.0], [0.1, 0.2], "matching"), ([np.nan], [0.1], "finite"), (["x"], [1], "numbers")],
)
def test_bad_points_are_refused(cost: list, quality: list, message: str) -> None:
    with pytest.raises(DataError, match=message):
        mixture_frontier(cost, quality)


def test_the_path_on_a_log_axis_follows_the_mixes_not_straight_lines() -> None:
    cost, quality = [0.0, 0.1, 10.0], [0.4, 0.6, 0.9]
    xs, ys = mixture_path(cost, quality, log_x=True, floor=0.001, steps=16)
    assert xs[0] == 0.001 and xs[-1] == 10.0 and np.all(np.diff(xs) > 0)
    # every drawn point after the first (the free model, shown at the floor) is a real mix:
    # on the straight segment in linear cost
    assert ys[0] == 0.4 and np.allclose(ys[1:], np.interp(xs[1:], cost, quality))
    # halfway along the log axis between 0.1 and 10 (cost 1), a mix has quality 0.6 + 0.3 * 0.9 / 9.9,
    # far below the 0.75 a straight line on the log axis would show
    assert np.interp(1.0, xs, ys) == pytest.approx(0.6 + 0.3 * 0.9 / 9.9, abs=0.01)
    assert mixture_path(cost, quality) == ([0.0, 0.1, 10.0], [0.4, 0.6, 0.9])
    with pytest.raises(DataError, match="sorted"):
        mixture_path([1.0, 0.5], [0.1, 0.2])


def test_chooses_frontier_leaves_out_a_model_a_mix_beats() -> None:
    from types import SimpleNamespace

    from sizewise.evaluation.choose.frontier import pareto

    rows = [
        SimpleNamespace(model=name, cost_per_1k=c, quality=q, eligible=ok)
        for name, c, q, ok in [("small", 0.1, 0.5, True), ("mid", 1.0, 0.55, True), ("big", 2.0, 0.9, True),
                               ("huge", 0.5, 0.99, False)]
    ]  # fmt: skip
    assert pareto(rows) == ["small", "big"]  # mid is Pareto-optimal, but a mix of small and big beats it
    assert pareto([r for r in rows if not r.eligible]) == []


def test_routing_curve_carries_the_threshold_of_each_point() -> None:
    from sizewise.evaluation.metrics import routing_curve

    curve = routing_curve([0.9, 0.1, 0.5, 0.5], [0, 0, 0, 1], [1, 1, 1, 1])
    assert curve.share.tolist() == [0.0, 0.25, 0.75, 1.0]
    assert curve.threshold is not None and curve.threshold.tolist() == [np.inf, 0.9, 0.5, 0.1]
