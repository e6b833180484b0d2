"""Cascade maths on recorded outcomes: cost accounting, sweeps, calibration to held-out targets, hybrid."""

from __future__ import annotations

import json
from pathlib import Path

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


# -- cut answers (finish_reason "length"): escalated offline as the gateway does ----------------------


def test_a_sure_but_cut_answer_is_escalated_below_the_top() -> None:
    quality = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    cost = np.array([[1.0, 10.0, 100.0]] * 3)
    scores = np.full((3, 2), 0.99)  # the scorer is sure of every answer
    cut = np.array([[True, False, False], [False, True, False], [True, True, True]])
    outcome = run_cascade(quality, cost, scores, [0.5, 0.5], cut=cut)
    # Row 0: cut tiny answer escalated, whole mid answer accepted; row 2: the top answer is kept even cut.
    assert outcome.step.tolist() == [1, 0, 2]
    assert outcome.cost.tolist() == [11.0, 1.0, 111.0]
    assert outcome.quality.tolist() == [1.0, 1.0, 0.0]
    assert run_cascade(quality, cost, scores, [0.5, 0.5]).step.tolist() == [0, 0, 0]  # without the rule
    with pytest.raises(DataError, match="cut must have shape"):
        run_cascade(quality, cost, scores, [0.5, 0.5], cut=np.zeros((3, 1), bool))


def _sure_but_cut(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 2-model ladder where a third of the weak answers are cut, always wrong, and scored sure."""
    quality, cost, scores = synthetic(n, 2, seed)
    cut = np.random.default_rng(seed + 1).random(n) < 1 / 3
    quality[cut, 0], scores[cut, 0] = 0.0, 0.99
    return quality, cost, scores, np.c_[cut, np.zeros(n, bool)]


def test_calibration_counts_cut_answers_as_escalated() -> None:
    quality, cost, scores, cut = _sure_but_cut(6000, seed=3)
    cal, held = slice(0, 3000), slice(3000, 6000)
    target = 0.95 * float(quality[cal, 1].mean())
    thresholds = calibrate(quality[cal], cost[cal], scores[cal], target_quality=target, cut=cut[cal])
    outcome = run_cascade(quality[held], cost[held], scores[held], thresholds, cut=cut[held])
    assert outcome.mean_quality >= target - 0.03
    assert not (outcome.step[cut[held, 0]] == 0).any()
    # Calibrated as if cut answers counted, the same cascade (run as the gateway does) spends more than it needs.
    blind = calibrate(quality[cal], cost[cal], scores[cal], target_quality=target)
    assert run_cascade(quality[held], cost[held], scores[held], blind, cut=cut[held]).mean_cost > outcome.mean_cost


def test_an_escalation_share_includes_the_cut_answers() -> None:
    quality, cost, scores, cut = _sure_but_cut(8000, seed=5)
    thresholds = calibrate(quality[:4000], cost[:4000], scores[:4000], escalation=0.5, cut=cut[:4000])
    outcome = run_cascade(quality[4000:], cost[4000:], scores[4000:], thresholds, cut=cut[4000:])
    assert abs(outcome.escalation - 0.5) <= 0.02
    assert escalation_thresholds(scores, 0.2, cut)[0] == -np.inf  # a third is cut: more than the share


def test_collected_tables_record_which_answers_were_cut(tmp_path: Path) -> None:
    from sizewise.cascade.collect import load_collected
    from sizewise.cascade.policy import ladder_cut

    def row(prompt_id: str, model: str, finish: str | None) -> str:
        base = {"prompt_id": prompt_id, "model": model, "text": "2+2?", "gold": "4", "response": "4", "correct": True}
        return json.dumps(base | {"tokens_in": 5, "tokens_out": 1, "latency": 0.1, "finish_reason": finish}) + "\n"

    path = tmp_path / "c.jsonl"
    path.write_text(row("a", "s", "length") + row("a", "b", "stop") + row("b", "s", "stop") + row("b", "b", None))
    table = load_collected(path)
    assert ladder_cut(table, ["s", "b"]).tolist() == [[True, False], [False, False]]
    table.meta.pop("finish_reasons")  # a table that never recorded it: nothing counts as cut
    assert not ladder_cut(table, ["s", "b"]).any()
