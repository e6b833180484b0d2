"""The frontier of mixtures: which (cost, quality) operating points are worth running, and how to draw it.

Sending a random part of the traffic to operating point A and the rest to B costs and scores the mix of
the two, so every mix of A and B lies on the straight segment between them in (cost, quality), and every
mix of a set of points lies in their convex hull. The part worth paying for is the hull's upper-left edge:
from the cheapest point (the best of equal cost) up to the best point (the cheapest of equal quality),
concave. A point under that edge is beaten by a mix of its neighbours, so it is never on the frontier,
even when no single point is both cheaper and better (the Pareto front keeps such points).

On a log cost axis a mix of two points is not a straight line: :func:`mixture_path` samples it there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sizewise.errors import DataError


def _points(cost: object, quality: object) -> tuple[np.ndarray, np.ndarray]:
    try:
        c = np.asarray(cost, dtype=float).reshape(-1)
        q = np.asarray(quality, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise DataError("cost and quality must be numbers") from None
    if c.size == 0 or c.size != q.size:
        raise DataError(f"need matching, non-empty cost and quality points ({c.size} vs {q.size})")
    if not (np.isfinite(c).all() and np.isfinite(q).all()):
        raise DataError("cost and quality must be finite numbers (no NaN or infinity)")
    return c, q


def mixture_frontier(cost: object, quality: object) -> list[int]:
    """Indices of the points on the frontier of mixtures (the vertices of the upper-left hull), cheapest first.

    Points lying exactly on a segment between two frontier points (collinear) are not vertices: the mix
    of their neighbours already reaches them. Duplicates count once (the first given).
    """
    c, q = _points(cost, quality)
    order = np.lexsort((np.arange(c.size), -q, c))  # by cost, best quality first, then input order
    hull: list[int] = []
    for i in order:
        if hull and c[i] == c[hull[-1]]:
            continue  # same cost, no better: dominated (or a duplicate)
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (c[b] - c[a]) * (q[i] - q[a]) - (q[b] - q[a]) * (c[i] - c[a])
            # b on or below the chord a -> i (a tolerance relative to the sizes involved, for rounding)
            slack = 1e-12 * (abs(c[b] - c[a]) * abs(q[i] - q[a]) + abs(q[b] - q[a]) * abs(c[i] - c[a]))
            if cross >= -slack:
                hull.pop()
            else:
                break
        hull.append(int(i))
    best = max(range(len(hull)), key=lambda k: (q[hull[k]], -k))  # the first (cheapest) of the best
    return hull[: best + 1]


def mixture_path(
    cost: Sequence[float] | np.ndarray,
    quality: Sequence[float] | np.ndarray,
    *,
    log_x: bool = False,
    floor: float | None = None,
    steps: int = 32,
) -> tuple[list[float], list[float]]:
    """The polyline that draws the mixes between consecutive frontier points on the plotted axes.

    ``cost``/``quality``: the frontier's points, cheapest first. With a linear cost axis that is the
    points themselves. On a log axis each segment is sampled at ``steps`` costs spaced evenly in log,
    each at the quality of that mix; costs below ``floor`` (a log axis cannot show 0) start at ``floor``.
    """
    c, q = _points(cost, quality)
    if np.any(np.diff(c) < 0):
        raise DataError("frontier points must be sorted by cost, cheapest first")
    if not log_x:
        return c.tolist(), q.tolist()
    low = floor if floor is not None else (float(c[c > 0].min()) if (c > 0).any() else 1.0)
    if low <= 0:
        raise DataError(f"a log axis needs a positive floor, got {low}")
    xs, ys = [max(float(c[0]), low)], [float(q[0])]
    for (c0, q0), (c1, q1) in zip(zip(c[:-1], q[:-1], strict=True), zip(c[1:], q[1:], strict=True), strict=True):
        if c1 <= low or c1 == c0:  # both ends show at one cost: only the later one
            xs[-1], ys[-1] = low, float(q1)
            continue
        grid = np.geomspace(max(c0, low), c1, steps + 1)[1:]
        xs += grid.tolist()
        ys += (q0 + (grid - c0) / (c1 - c0) * (q1 - q0)).tolist()
    return xs, ys
