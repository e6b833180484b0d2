"""Pick a two-model router's threshold for a target, and say what it will deliver.

Targets: a share of strong-model calls, a quality level (a fraction of the strong model's mean
quality, e.g. 0.95), or a cost budget in USD per 1,000 requests. The threshold is chosen on one
part of the user's outcome table and the expected share, quality and cost are measured on the
other (held-out) part, with a bootstrap 95% interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from sizewise.errors import ConfigError, DataError
from sizewise.routers._learned import check_number

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path


@dataclass
class CalibrationResult:
    """A chosen threshold and what it does on held-out prompts (means; ``*_ci`` are 95% bootstrap intervals)."""

    target: str
    threshold: float
    share: float
    quality: float
    cost_per_1k: float | None
    share_ci: tuple[float, float]
    quality_ci: tuple[float, float]
    cost_ci: tuple[float, float] | None
    weak: str
    strong: str
    weak_quality: float
    strong_quality: float
    weak_cost_per_1k: float | None
    strong_cost_per_1k: float | None
    n_calibration: int
    n_heldout: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _cut(sorted_desc: np.ndarray, k: int) -> float:
    """A threshold sending exactly the top ``k`` of ``sorted_desc`` to the strong model (midpoint between ranks)."""
    if k <= 0:
        return float(np.nextafter(sorted_desc[0], np.inf)) if len(sorted_desc) else np.inf
    if k >= len(sorted_desc):
        return float(sorted_desc[-1])
    return float((sorted_desc[k - 1] + sorted_desc[k]) / 2)


def _target(name: str, value: object) -> float:
    """``value`` as a float; a :class:`ConfigError` unless it is a finite number."""
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _vectors(scores: object, **outcomes: object) -> tuple[np.ndarray, ...]:
    """``scores`` and the per-prompt ``outcomes`` as float vectors of one length (at least one prompt, no NaN)."""
    vectors: dict[str, np.ndarray] = {}
    for key, values in {"scores": scores, **outcomes}.items():
        name = key.replace("_", " ")
        try:
            vector = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"{name} must be numbers") from None
        if vector.ndim != 1 or vector.size == 0:
            raise DataError(f"{name} must be a non-empty list of numbers, one per prompt; got shape {vector.shape}")
        if np.isnan(vector).any():
            raise DataError(f"{name} hold NaN")
        vectors[name] = vector
    if len({v.size for v in vectors.values()}) > 1:
        sizes = ", ".join(f"{name} {v.size}" for name, v in vectors.items())
        raise DataError(f"need one value per prompt everywhere; got {sizes}")
    return tuple(vectors.values())


def threshold_for_share(scores: np.ndarray, share: float) -> float:
    """Threshold at which ``share`` of these scores are >= it."""
    if not 0 <= _target("target share", share) <= 1:
        raise ConfigError(f"target share must lie in [0, 1], got {share}")
    (values,) = _vectors(scores)
    ordered = np.sort(values)[::-1]
    return _cut(ordered, round(share * len(ordered)))


def threshold_for_quality(scores: np.ndarray, q_weak: np.ndarray, q_strong: np.ndarray, target: float) -> float:
    """Lowest strong share whose mean quality reaches ``target`` (absolute); all-strong if none does."""
    target = _target("target quality", target)
    scores, q_weak, q_strong = _vectors(scores, weak_quality=q_weak, strong_quality=q_strong)
    order = np.argsort(-scores, kind="stable")
    curve = (q_weak.sum() + np.r_[0.0, np.cumsum((q_strong - q_weak)[order])]) / len(order)
    reached = np.flatnonzero(curve >= target - 1e-12)
    k = int(reached[0]) if reached.size else len(order)
    return _cut(scores[order], k)


def threshold_for_budget(scores: np.ndarray, c_weak: np.ndarray, c_strong: np.ndarray, budget_per_1k: float) -> float:
    """Highest strong share whose mean cost per 1,000 requests stays within the budget."""
    budget_per_1k = _target("budget per 1k requests", budget_per_1k)
    scores, c_weak, c_strong = _vectors(scores, weak_cost=c_weak, strong_cost=c_strong)
    order = np.argsort(-scores, kind="stable")
    cost = (c_weak.sum() + np.r_[0.0, np.cumsum((c_strong - c_weak)[order])]) / len(order) * 1000
    within = np.flatnonzero(cost <= budget_per_1k + 1e-12)
    if not within.size:
        raise ConfigError(
            f"budget {budget_per_1k} USD per 1k requests is below the weak model's own cost ({cost[0]:.4f})"
        )
    return _cut(scores[order], int(within[-1]))


def bootstrap(
    routed: np.ndarray, quality: np.ndarray, cost: np.ndarray | None, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float] | None]:
    """95% percentile intervals of share, quality and cost per 1k, resampling prompts."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(routed), size=(n_boot, len(routed)))

    def interval(values: np.ndarray) -> tuple[float, float]:
        means = values[idx].mean(axis=1)
        return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))

    return {
        "share": interval(routed.astype(float)),
        "quality": interval(quality),
        "cost": interval(cost * 1000) if cost is not None else None,
    }


def calibrate(
    router: Any,
    table: OutcomeTable,
    *,
    weak: str | None = None,
    strong: str | None = None,
    target_share: float | None = None,
    target_quality: float | None = None,
    budget_per_1k: float | None = None,
    holdout: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
) -> CalibrationResult:
    """Choose the threshold on a random ``1 - holdout`` part of ``table``, report on the rest.

    Exactly one target: ``target_share`` (0-1), ``target_quality`` (fraction of the strong model's
    mean quality on the calibration part) or ``budget_per_1k`` (USD). ``holdout=0`` uses the whole
    table for both (no honest interval: only for tiny tables).
    """
    given = [t is not None for t in (target_share, target_quality, budget_per_1k)]
    if sum(given) != 1:
        raise ConfigError("give exactly one target: target share, target quality or budget per 1k requests")
    for name, value in (("target share", target_share), ("target quality", target_quality), ("budget", budget_per_1k)):
        if value is not None and (not isinstance(value, Real) or isinstance(value, bool)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
    check_number("calibrate", "holdout", holdout, 0)
    check_number("calibrate", "n_boot", n_boot, 1, integer=True)
    if not 0 <= holdout < 1:
        raise ConfigError(f"holdout must lie in [0, 1), got {holdout}")
    if target_quality is not None and not 0 < target_quality <= 1.5:
        raise ConfigError(
            f"target quality is a fraction of the strong model's quality (e.g. 0.95), got {target_quality}"
        )
    # The router's own pair names apply when the table has them (the pretrained router's are generic).
    own = (getattr(router, "weak_", None), getattr(router, "strong_", None))
    if own[0] in table.models and own[1] in table.models:
        weak, strong = weak or own[0], strong or own[1]
    weak, strong = table.weak_strong(weak, strong)
    q_weak, q_strong = table.column(weak), table.column(strong)
    known = ~(np.isnan(q_weak) | np.isnan(q_strong))
    if budget_per_1k is not None:
        if not 0 <= budget_per_1k < math.inf:
            raise ConfigError(f"budget per 1k requests must be a number >= 0, got {budget_per_1k}")
        priced = table.cost is not None
        if priced:
            priced_rows = ~(np.isnan(table.column(weak, "cost")) | np.isnan(table.column(strong, "cost")))
            priced = bool(priced_rows.any())
            known &= priced_rows
        if not priced:
            raise DataError(f"table {table.name!r} has no costs for {weak} and {strong}: cannot calibrate to a budget")
    rows = np.flatnonzero(known)
    if len(rows) < 4:
        raise DataError(f"table {table.name!r}: need at least 4 prompts with known outcomes to calibrate")
    rng = np.random.default_rng(seed)
    rows = rng.permutation(rows)
    n_cal = len(rows) if holdout == 0 else max(2, round(len(rows) * (1 - holdout)))
    cal, held = rows[:n_cal], (rows if holdout == 0 else rows[n_cal:])
    scores = np.asarray(router.score_table(table.subset(rows)), dtype=float)
    if np.isnan(scores).any():
        raise DataError(f"router {getattr(router, 'name', router)!r} gave NaN scores on table {table.name!r}")
    position = {r: i for i, r in enumerate(rows)}
    s_cal = scores[[position[r] for r in cal]]
    s_held = scores[[position[r] for r in held]]
    has_cost = (
        table.cost is not None
        and not np.isnan(table.cost[:, [table.index_of(weak), table.index_of(strong)]][rows]).any()
    )
    c_weak = table.column(weak, "cost") if has_cost else None
    c_strong = table.column(strong, "cost") if has_cost else None

    if target_share is not None:
        threshold, label = threshold_for_share(s_cal, target_share), f"share of strong calls {target_share:g}"
    elif target_quality is not None:
        absolute = target_quality * float(q_strong[cal].mean())
        threshold = threshold_for_quality(s_cal, q_weak[cal], q_strong[cal], absolute)
        label = f"quality {target_quality:g} x strong"
    else:
        assert c_weak is not None and c_strong is not None and budget_per_1k is not None
        threshold = threshold_for_budget(s_cal, c_weak[cal], c_strong[cal], budget_per_1k)
        label = f"budget {budget_per_1k:g} USD per 1k requests"

    routed = s_held >= threshold
    quality = np.where(routed, q_strong[held], q_weak[held])
    cost = np.where(routed, c_strong[held], c_weak[held]) if c_weak is not None and c_strong is not None else None
    ci = bootstrap(routed, quality, cost, n_boot=n_boot, seed=seed)
    return CalibrationResult(
        target=label,
        threshold=float(threshold),
        share=float(routed.mean()),
        quality=float(quality.mean()),
        cost_per_1k=None if cost is None else float(cost.mean() * 1000),
        share_ci=ci["share"],  # type: ignore[arg-type]
        quality_ci=ci["quality"],  # type: ignore[arg-type]
        cost_ci=ci["cost"],
        weak=weak,
        strong=strong,
        weak_quality=float(q_weak[held].mean()),
        strong_quality=float(q_strong[held].mean()),
        weak_cost_per_1k=None if c_weak is None else float(c_weak[held].mean() * 1000),
        strong_cost_per_1k=None if c_strong is None else float(c_strong[held].mean() * 1000),
        n_calibration=len(cal),
        n_heldout=len(held),
    )
