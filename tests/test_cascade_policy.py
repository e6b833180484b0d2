"""Cascade maths on recorded outcomes: cost accounting, sweeps, calibration to held-out targets, hybrid."""

from __future__ import annotations

import numpy as np
import pytest

from sizewise.cascade.policy import (
    calibrate,
    cost_at_quality,
    escalation_thresholds,
    pareto,
    quality_at_cost,
    run_cascade,
    sweep,
)
from sizewise.errors import ConfigError, DataError


def synthetic(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ladder where bigger models are better and dearer, and the scorer is informative but noisy."""
    rng = np.random.default_rng(seed)
    skill = rng.normal(size=n)
    quality = np.stack([(skill + rng.normal(0, 1, n) > 0.8 - 0.7 * j).astype(float) for j in range(m)], axis=1)
    cost = np.tile([10.0**j for j in range(m)], (n, 1)) * rng.uniform(0.8, 1.2, (n, m))
    scores = np.clip(quality[:, :-1] * 0.3 + rng.uniform(0, 0.7, (n, m - 1)), 0, 1)
    return quality, cost, scores


def test_cost_counts_every_model_called() -> None:
    quality = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    cost = np.array([[1.0, 10.0, 100.0]] * 3)
    scores = np.array([[0.9, 0.9], [0.1, 0.9], [0.1, 0.1]])
    outcome = run_cascade(quality, cost, scores, [0.5, 0.5])
    assert outcome.step.tolist() == [0, 1, 2]
    assert outcome.cost.tolist() == [1.0, 11.0, 111.0]
    assert outcome.quality.tolist() == [1.0, 1.0, 1.0]
    assert outcome.escalation == pytest.approx(2 / 3)
    hybrid = run_cascade(
        quality, cost, scores, [0.5, 0.5], router_scores=np.array([0.0, 0.0, 0.9]), router_threshold=0.5
    )
    assert hybrid.cost.tolist() == [1.0, 11.0, 100.0] and hybrid.direct.tolist() == [False, False, True]


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5, 0.8])
@pytest.mark.parametrize("m", [2, 3])
def test_escalation_share_holds_on_held_out_data(share: float, m: int) -> None:
    quality, cost, scores = synthetic(8000, m, seed=int(share * 10) + m)
    calibration, held_out = slice(0, 4000), slice(4000, 8000)
    thresholds = calibrate(quality[calibration], cost[calibration], scores[calibration], escalation=share)
    outcome = run_cascade(quality[held_out], cost[held_out], scores[held_out], thresholds)
    assert abs(float(np.mean(outcome.step > 0)) - share) <= 0.02
    if m == 3:  # the same share applies at the second step, among those that reached it
        reached = outcome.step >= 1
        assert abs(float(np.mean(outcome.step[reached] > 1)) - share) <= 0.03


def test_calibrate_to_quality_and_budget_on_held_out() -> None:
    quality, cost, scores = synthetic(6000, 2, seed=9)
    cal, held = slice(0, 3000), slice(3000, 6000)
    target = float(quality[cal, 1].mean())
    thresholds = calibrate(quality[cal], cost[cal], scores[cal], target_quality=target)
    outcome = run_cascade(quality[held], cost[held], scores[held], thresholds)
    assert outcome.mean_quality >= target - 0.03
    assert outcome.mean_cost < cost[held, 1].mean() + cost[held, 0].mean()
    budget = 0.5 * float(cost[cal, 1].mean())
    thresholds = calibrate(quality[cal], cost[cal], scores[cal], budget=budget)
    assert run_cascade(quality[held], cost[held], scores[held], thresholds).mean_cost <= budget * 1.05


def test_sweep_front_and_lookups() -> None:
    quality, cost, scores = synthetic(2000, 3, seed=1)
    front = pareto(sweep(quality, cost, scores, points=9))
    costs = [p["cost"] for p in front]
    qualities = [p["quality"] for p in front]
    assert costs == sorted(costs) and qualities == sorted(qualities)
    assert quality_at_cost(front, float(cost[:, 0].mean()) * 1.001) == pytest.approx(quality[:, 0].mean(), abs=1e-9)
    assert np.isnan(cost_at_quality(front, 1.1))
    assert escalation_thresholds(scores, 0.0)[0] == -np.inf


def test_bad_input_is_a_clear_error() -> None:
    quality, cost, scores = synthetic(10, 2, seed=0)
    with pytest.raises(ConfigError, match="needs 1 thresholds"):
        run_cascade(quality, cost, scores, [0.1, 0.2])
    with pytest.raises(DataError, match="at least 2 models"):
        run_cascade(quality[:, :1], cost[:, :1], scores[:, :0], [])
    with pytest.raises(ConfigError, match="exactly one"):
        calibrate(quality, cost, scores, budget=1.0, escalation=0.2)
