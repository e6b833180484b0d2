"""N-model decision: given a predicted quality and a price for every model, pick one per prompt.

Two rules: the cheapest model whose predicted quality meets a target (falling back to the best
predicted model), or the model maximising ``quality - lam * cost_per_1k`` (cost in USD per 1,000
requests). ``calibrate_lambda`` picks ``lam`` on held-out outcomes for a quality target or a budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sizewise.checks import check_choice
from sizewise.errors import ConfigError, DataError
from sizewise.routers._learned import check_number

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path


def model_costs(table: OutcomeTable, models: Sequence[str]) -> np.ndarray:
    """Mean cost per request of each model in USD per 1,000 requests (from the table's cost cells)."""
    if table.cost is None:
        raise DataError(f"table {table.name!r} has no costs")
    costs = np.array([np.nanmean(table.column(m, "cost")) for m in models]) * 1000
    if np.isnan(costs).any():
        raise DataError(f"table {table.name!r}: no known cost for some of {list(models)}")
    return costs


def _numbers(what: str, values: object) -> np.ndarray:
    """``values`` as a float array; a :class:`DataError` unless all are finite numbers."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numbers") from None
    if not np.isfinite(array).all():
        raise DataError(f"{what} must be finite numbers, not NaN or infinite")
    return array


def _costs(values: object) -> np.ndarray:
    costs = _numbers("costs", values)
    if (costs < 0).any():
        raise DataError("costs must not be negative")
    return costs


def _check(pred: np.ndarray, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, costs = _numbers("predicted quality", pred), _costs(costs)
    if pred.ndim != 2 or pred.shape[1] == 0 or costs.shape not in {(pred.shape[1],), pred.shape}:
        raise DataError(f"predicted quality {pred.shape} and costs {costs.shape} do not match")
    return pred, np.broadcast_to(costs, pred.shape)


def _finite(name: str, value: object) -> float:
    """``value`` as a float; a :class:`ConfigError` unless it is a finite number."""
    check_number("N-model policy", name, value, -math.inf)
    return float(value)  # type: ignore[arg-type]


def cheapest_meeting(pred: np.ndarray, costs: np.ndarray, target: float) -> np.ndarray:
    """Per prompt, the index of the cheapest model with predicted quality >= ``target``, else the best predicted."""
    pred, costs = _check(pred, costs)
    ok = pred >= _finite("target", target)
    masked = np.where(ok, costs, np.inf)
    return np.where(ok.any(axis=1), masked.argmin(axis=1), pred.argmax(axis=1))


def max_utility(pred: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """Per prompt, the index of the model maximising ``pred - lam * cost`` (ties go to the cheaper model)."""
    pred, costs = _check(pred, costs)
    utility = pred - _finite("lam", lam) * costs - 1e-12 * costs
    return utility.argmax(axis=1)


def realised(choice: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    """Mean true quality and cost per 1k requests of the chosen cells (NaN cells are skipped)."""
    picks = np.asarray(choice)
    if picks.ndim != 1 or picks.dtype.kind not in "iu":
        raise DataError("choice must be one model index per prompt (an integer array)")
    if cost.shape != quality.shape:
        raise DataError(f"choice: quality and cost tables differ in shape ({quality.shape} vs {cost.shape})")
    check_choice(picks, quality.shape)
    rows = np.arange(len(picks))
    q, c = quality[rows, picks], cost[rows, picks] * 1000
    return float(np.nanmean(q)), float(np.nanmean(c))


def lambda_grid(costs: np.ndarray, n: int = 60) -> np.ndarray:
    """Trade-off weights spanning "always the best predicted" (0) to "always the cheapest"."""
    positive = _costs(costs)
    if positive.size == 0:
        raise DataError("no model costs to span")
    spread = max(float(positive.max() - positive.min()), 1e-9)
    return np.r_[0.0, np.geomspace(1e-4 / spread, 10.0 / spread, n - 1)]


@dataclass
class TradeoffPoint:
    """One operating point of an N-model policy."""

    lam: float
    quality: float
    cost_per_1k: float


def tradeoff_curve(pred: np.ndarray, costs: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> list[TradeoffPoint]:
    """Realised quality and cost of ``max_utility`` over :func:`lambda_grid`."""
    return [
        TradeoffPoint(float(lam), *realised(max_utility(pred, costs, lam), quality, cost)) for lam in lambda_grid(costs)
    ]


def calibrate_lambda(
    pred: np.ndarray,
    costs: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    target_quality: float | None = None,
    budget_per_1k: float | None = None,
) -> TradeoffPoint:
    """The largest ``lam`` (cheapest point) whose realised quality meets ``target_quality`` (absolute),
    or the best-quality point within ``budget_per_1k``."""
    if (target_quality is None) == (budget_per_1k is None):
        raise ConfigError("give exactly one of target quality or budget per 1k requests")
    pred, _ = _check(pred, costs)
    if np.shape(quality) != pred.shape or np.shape(cost) != pred.shape:
        raise DataError(
            f"outcomes {np.shape(quality)} and costs {np.shape(cost)} do not match predictions {pred.shape}"
        )
    curve = tradeoff_curve(pred, costs, quality, cost)
    if target_quality is not None:
        meeting = [p for p in curve if p.quality >= target_quality]
        return min(meeting, key=lambda p: p.cost_per_1k) if meeting else max(curve, key=lambda p: p.quality)
    within = [p for p in curve if p.cost_per_1k <= budget_per_1k + 1e-12]  # type: ignore[operator]
    if not within:
        raise ConfigError(f"budget {budget_per_1k} USD per 1k requests is below the cheapest model's cost")
    return max(within, key=lambda p: p.quality)


class MultiModelChooser:
    """Choose among N models with a router that has ``predict_quality`` and ``models_`` (in-process, offline;
    the gateway's ``multi-<router>-<target>`` policy is :class:`sizewise.policy.multi_routing.MultiRouterPolicy`).

    ``costs`` maps model name to USD per 1,000 requests (e.g. from :func:`model_costs` or a price sheet).
    With a ``cost_model`` (:class:`sizewise.routers.cost.CostPredictor` fitted on the same models) the
    decision uses each prompt's predicted cost instead, so it can spend where a model is cheap.
    Give ``lam`` for the utility rule, or ``target`` for the cheapest-meeting-target rule.
    """

    def __init__(
        self,
        router: Any,
        costs: dict[str, float] | None = None,
        lam: float | None = None,
        target: float | None = None,
        cost_model: Any | None = None,
    ) -> None:
        if (lam is None) == (target is None):
            raise ConfigError("give exactly one of lam or target")
        if not hasattr(router, "predict_quality"):
            raise ConfigError(f"router {getattr(router, 'name', router)!r} cannot predict per-model quality")
        if costs is None and cost_model is None:
            raise ConfigError("give costs per model or a cost model")
        if costs is not None and not isinstance(costs, dict):
            raise ConfigError(f"costs must map model names to USD per 1,000 requests, got {type(costs).__name__}")
        for what, est in (("router", router), ("cost model", cost_model)):
            if est is not None and not hasattr(est, "models_"):
                raise ConfigError(f"the {what} is not fitted: call fit() or load() first")
        _finite("lam" if lam is not None else "target", lam if lam is not None else target)
        known = set(costs or {}) if cost_model is None else set(cost_model.models_)
        missing = [m for m in router.models_ if m not in known]
        if missing:
            raise ConfigError(f"no cost for models {missing}")
        self.router, self.lam, self.target, self.cost_model = router, lam, target, cost_model
        self.models = list(router.models_)
        self.costs = _costs([costs[m] for m in self.models]) if costs is not None else None
        # The cost model's columns in the router's model order.
        self._cost_columns = [cost_model.models_.index(m) for m in self.models] if cost_model is not None else []

    def prompt_costs(self, prompts: Sequence[str]) -> np.ndarray:
        """USD per 1,000 requests of every model for each prompt: predicted, or the fixed ``costs``."""
        if self.cost_model is None:
            assert self.costs is not None
            return np.broadcast_to(self.costs, (len(prompts), len(self.models)))
        return np.asarray(self.cost_model.predict(prompts))[:, self._cost_columns] * 1000

    def choose_index(self, prompts: Sequence[str]) -> np.ndarray:
        """Index into ``models`` of the chosen model per prompt."""
        pred = self.router.predict_quality(prompts)
        costs = self.prompt_costs(prompts)
        if self.lam is not None:
            return max_utility(pred, costs, self.lam)
        return cheapest_meeting(pred, costs, float(self.target))  # type: ignore[arg-type]

    def choose(self, prompts: Sequence[str]) -> list[str]:
        """The chosen model name per prompt."""
        return [self.models[i] for i in self.choose_index(prompts)]
