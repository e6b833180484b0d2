"""The routing policies ``sizewise choose`` measures against single models.

Each is fitted on one half of the prompts and measured on the other (never on the prompts it was
fitted on): *domain routes* (each category to the cheapest model meeting the target on it) and a
*two-model router* (thresholds swept, the threshold chosen on the fitting half) and an *N-model
router* over every eligible model (its quality target chosen on part of the fitting half).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sizewise.core.table import OutcomeTable

if TYPE_CHECKING:
    from sizewise.evaluation.choose import ModelRow


@dataclass
class PolicyResult:
    """A routing policy measured on the held-out prompts."""

    kind: str
    description: str
    quality: float
    cost_per_1k: float
    config: dict[str, Any]
    curve: list[tuple[float, float]] = field(default_factory=list)
    #: The setting behind each curve point (a router's score threshold, an N-model router's quality target).
    settings: list[float] = field(default_factory=list)


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def _cost(table: OutcomeTable) -> np.ndarray:
    return np.nan_to_num(table.cost, nan=0.0) if table.cost is not None else np.zeros_like(table.quality)


def domain_policy(
    table: OutcomeTable,
    rows: list[ModelRow],
    target: float,
    seed: int = 0,
    *,
    route_sample: int = 0,
    route_examples: int = 30,
) -> PolicyResult | None:
    """Per category, the cheapest eligible model meeting ``target`` on the fitting half (else the best).

    With ``route_sample`` > 0 the policy is measured as the gateway would run it: ``route_examples``
    fitting prompts per category become route examples, and a sample of held-out prompts is matched by
    :class:`~sizewise.policy.domains.DomainRouter` (unmatched prompts go to the best eligible model).
    Otherwise each prompt's true category is used: an upper bound.
    """
    if "category" not in table.prompts.columns:
        return None
    eligible = [j for j, row in enumerate(rows) if row.eligible]
    if len(eligible) < 2:
        return None
    fit, held = _split(len(table.prompts), seed)
    categories = table.prompts["category"].astype(str).to_numpy()
    texts = table.prompts["text"].astype(str).to_numpy()
    quality, cost = np.nan_to_num(table.quality, nan=0.0), _cost(table)
    chosen: dict[str, int] = {}
    for category in sorted(set(categories)):
        rows_fit = fit[categories[fit] == category]
        if len(rows_fit) == 0:
            continue
        q, c = quality[rows_fit].mean(axis=0), cost[rows_fit].mean(axis=0)
        good = [j for j in eligible if q[j] >= target]
        chosen[category] = min(good, key=lambda j: (c[j], -q[j])) if good else max(eligible, key=lambda j: q[j])
    fallback = max(eligible, key=lambda j: rows[j].quality)
    rng = np.random.default_rng(seed)
    examples = {
        category: texts[rng.permutation(fit[categories[fit] == category])[:route_examples]].tolist()
        for category in chosen
    }
    routes = [{"name": c, "models": [table.models[j]], "examples": examples[c]} for c, j in chosen.items()]
    summary = ", ".join(f"{c} -> {table.models[j]}" for c, j in chosen.items())
    if route_sample > 0:
        from sizewise.catalog.schema import RouteSpec
        from sizewise.policy.domains import DomainRouter

        sample = np.sort(rng.choice(held, size=min(route_sample, len(held)), replace=False))
        router = DomainRouter([RouteSpec.model_validate(route) for route in routes])
        matched = [m.route for m in router.match(texts[sample].tolist())]
        picks = np.array([chosen[m] if m is not None else fallback for m in matched])
        oracle = np.array([chosen.get(c, fallback) for c in categories[sample]])
        q_held = float(quality[sample, picks].mean())
        c_held = float(cost[sample, picks].mean()) * 1000
        hit = float(np.mean([m == c for m, c in zip(matched, categories[sample], strict=True)]))
        description = (
            f"per-category routes: {summary}. Measured as the gateway runs it on {len(sample)} held-out prompts: "
            f"embedding routes ({route_examples} examples each) recognised the category of {hit:.0%}; with the true "
            f"category the same routes would reach quality {float(quality[sample, oracle].mean()):.3f}"
        )
    else:
        picks = np.array([chosen.get(category, fallback) for category in categories[held]])
        q_held = float(quality[held, picks].mean())
        c_held = float(cost[held, picks].mean()) * 1000
        description = (
            f"per-category routes: {summary}. Measured with each prompt's true category: an upper bound, since the "
            "gateway recognises domains by embedding similarity (use --route-sample to measure that)"
        )
    return PolicyResult("domain routes", description, q_held, c_held, {"routes": routes})


def router_policy(
    table: OutcomeTable,
    rows: list[ModelRow],
    target: float,
    router: str,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> PolicyResult | None:
    """A two-model router between the cheapest eligible model and the best, thresholds swept.

    ``router``: ``heuristic`` (the gateway's untrained default scorer) or a registry name, fitted on half
    of the fitting prompts and its threshold chosen on the other half (the gateway then needs that
    router saved as a file: ``sizewise train``).
    """
    eligible = sorted((r for r in rows if r.eligible), key=lambda r: (r.cost_per_1k, -r.quality))
    if len(eligible) < 2:
        return None
    weak, strong = eligible[0].model, max(eligible, key=lambda r: r.quality).model
    if weak == strong:
        return None
    fit, held = _split(len(table.prompts), seed)
    calib = fit  # the prompts the threshold is chosen on
    if router == "heuristic":  # the gateway's built-in, untrained scorer
        from sizewise.policy.routing import HeuristicScorer

        model: Any = HeuristicScorer()
    else:
        from sizewise.routers.base import make_router

        # Fitted on half of the fitting prompts; the threshold is chosen on the other half, since a
        # router's scores on its own training prompts (a k-NN finds the prompt itself) flatter it.
        model = make_router(router, **(params or {})).fit(table.subset(fit[::2]), weak, strong)
        calib = fit[1::2]
    texts = table.prompts["text"].astype(str).to_numpy()
    w, s = table.models.index(weak), table.models.index(strong)
    quality, cost = np.nan_to_num(table.quality, nan=0.0), _cost(table)

    def outcome(rows: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
        strong_rows = scores >= threshold
        q = float(np.where(strong_rows, quality[rows, s], quality[rows, w]).mean())
        return float(np.where(strong_rows, cost[rows, s], cost[rows, w]).mean()) * 1000, q

    # The threshold is chosen on the calibration prompts, then measured on the held-out half.
    calib_scores = np.asarray(model.score(texts[calib].tolist()), dtype=float)
    held_scores = np.asarray(model.score(texts[held].tolist()), dtype=float)
    grid = np.unique(np.quantile(np.concatenate([calib_scores, held_scores]), np.linspace(0, 1, 41)))
    chosen_threshold = None
    for threshold in grid:  # ascending: strong share falls, so the last that meets the target is cheapest
        if outcome(calib, calib_scores, float(threshold))[1] >= target:
            chosen_threshold = float(threshold)
    if chosen_threshold is None:
        chosen_threshold = float(grid[0])
    swept = sorted((outcome(held, held_scores, float(t)), float(t)) for t in grid)
    c_held, q_held = outcome(held, held_scores, chosen_threshold)
    best = (c_held, q_held, chosen_threshold)
    config = {"gateway": {"ladder": [weak, strong], "router": router, "threshold": round(best[2], 6)}}
    description = f"router {router!r}: {weak} / {strong}, threshold {best[2]:.4g}"
    curve, settings = [point for point, _ in swept], [t for _, t in swept]
    return PolicyResult("router", description, best[1], best[0], config, curve, settings)


def multi_router_policy(
    table: OutcomeTable,
    rows: list[ModelRow],
    target: float,
    router: str,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> PolicyResult | None:
    """N-model routing as the gateway's ``multi-<router>-<t>`` runs it, over every eligible model.

    The router is fitted on half of the fitting prompts, ``t`` is chosen on the other half (the
    cheapest ``t`` whose quality reaches ``target`` there), and the result is measured on the held-out
    prompts. None when fewer than three models are eligible or the router predicts no per-model quality.
    """
    from sizewise.routers.base import make_router
    from sizewise.routers.multi import cheapest_meeting

    eligible = [r.model for r in rows if r.eligible]
    if router == "heuristic" or len(eligible) < 3:  # the heuristic scores a pair; it predicts no quality
        return None
    model: Any = make_router(router, **(params or {}))
    if not hasattr(model, "predict_quality"):
        return None
    sub = table.select_models(eligible)
    fit, held = _split(len(sub.prompts), seed)
    train, calib = fit[::2], fit[1::2]
    model.fit(sub.subset(train))
    texts = sub.prompts["text"].astype(str).to_numpy()
    quality, cost = np.nan_to_num(sub.quality, nan=0.0), _cost(sub)
    order = np.array([sub.models.index(m) for m in model.models_])  # router columns -> table columns
    prices = cost[train].mean(axis=0)[order]
    pred = {"calib": model.predict_quality(texts[calib].tolist()), "held": model.predict_quality(texts[held].tolist())}

    def outcome(rows_: np.ndarray, predicted: np.ndarray, t: float) -> tuple[float, float]:
        picks = order[cheapest_meeting(predicted, prices, t)]
        return float(cost[rows_, picks].mean()) * 1000, float(quality[rows_, picks].mean())

    grid = np.round(np.linspace(0.0, 1.0, 41), 3)
    calib_points = [outcome(calib, pred["calib"], float(t)) for t in grid]
    meeting = [(c, float(t)) for (c, q), t in zip(calib_points, grid, strict=True) if q >= target]
    chosen = min(meeting)[1] if meeting else float(grid[-1])
    c_held, q_held = outcome(held, pred["held"], chosen)
    swept = sorted((outcome(held, pred["held"], float(t)), float(t)) for t in grid)
    config = {"gateway": {"router_dir": "routers", "default_policy": f"multi-{router}-{chosen:g}"}}
    rule = "the model predicted best" if chosen >= 1 else f"the cheapest model predicted to reach {chosen:g}"
    description = (
        f"N-model router {router!r} over {len(eligible)} models: per prompt {rule} (gateway model field "
        f"multi-{router}-{chosen:g}; train it with `sizewise train --router {router} --table DATA --out "
        f"routers/{router}.zip`)"
    )
    curve, settings = [point for point, _ in swept], [t for _, t in swept]
    return PolicyResult("N-model router", description, q_held, c_held, config, curve, settings)
