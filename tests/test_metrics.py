"""Routing metrics on small hand-computed cases (ties, an exactly random router, hulls, costs)."""

from __future__ import annotations

import numpy as np
import pytest

from sizewise.errors import DataError
from sizewise.evaluation import metrics as m

# Four prompts; gains of the strong model [1, 1, 0, 0]; prompts 1 and 2 tied.
SCORES = [2.0, 1.0, 1.0, 0.0]
Q_WEAK = [0.0, 0.0, 0.0, 1.0]
Q_STRONG = [1.0, 1.0, 0.0, 1.0]


def test_curve_points_average_tied_groups():
    curve = m.routing_curve(SCORES, Q_WEAK, Q_STRONG)
    # group ends at 1, 3 and 4 prompts: qualities (1 + cumulative gain) / 4
    np.testing.assert_allclose(curve.share, [0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(curve.quality, [0.25, 0.5, 0.75, 0.75])
    assert (curve.q_weak, curve.q_strong) == (0.25, 0.75)


def test_tied_group_order_does_not_matter():
    swapped = [0, 2, 1, 3]  # swap the two tied prompts
    a = m.routing_curve(SCORES, Q_WEAK, Q_STRONG)
    b = m.routing_curve(*(np.asarray(x)[swapped] for x in (SCORES, Q_WEAK, Q_STRONG)))
    np.testing.assert_allclose(a.quality, b.quality)


def test_hand_computed_auc_apgr_cpt():
    curve = m.routing_curve(SCORES, Q_WEAK, Q_STRONG)
    # trapezoids: 0.25*(0.25+0.5)/2 + 0.5*(0.5+0.75)/2 + 0.25*0.75 = 0.59375
    assert m.auc(curve) == pytest.approx(0.59375)
    assert m.apgr(curve) == pytest.approx((0.59375 - 0.25) / 0.5)  # 0.6875
    assert m.cpt(curve, 0.2) == pytest.approx(0.1)  # target 0.35 on the first segment
    assert m.cpt(curve, 0.5) == pytest.approx(0.25)  # target 0.5 exactly at a point
    assert m.cpt(curve, 0.8) == pytest.approx(0.55)  # target 0.65: 0.25 + 0.15/0.25*0.5
    np.testing.assert_allclose(m.pgr(curve), [0, 0.5, 1, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exactly_random_router(seed):
    rng = np.random.default_rng(seed)
    q_weak, q_strong = rng.random(50) < 0.4, rng.random(50) < 0.8
    for curve in (m.random_curve(q_weak, q_strong), m.routing_curve(np.full(50, 3.0), q_weak, q_strong)):
        assert m.apgr(curve) == pytest.approx(0.5, abs=1e-12)
        assert m.cpt(curve, 0.5) == pytest.approx(0.5, abs=1e-12)
        assert m.cpt(curve, 0.2) == pytest.approx(0.2, abs=1e-12)
        assert m.auc(curve) == pytest.approx((q_weak.mean() + q_strong.mean()) / 2)


def test_oracle_beats_everything_and_can_exceed_one():
    q_weak, q_strong = [1, 0, 0, 1], [0, 1, 1, 1]
    oracle = m.oracle_curve(q_weak, q_strong)
    np.testing.assert_allclose(oracle.quality, [0.5, 1.0, 1.0, 0.75])
    assert m.apgr(oracle) > 1  # the weak model wins prompt 0: the oracle beats always-strong
    worst = m.routing_curve([1, -1, -1, 0], q_weak, q_strong)
    assert m.apgr(worst) < 0.5 < m.apgr(oracle)


def test_no_gap_gives_undefined_not_a_crash():
    curve = m.routing_curve([1, 0], [1, 1], [1, 1])
    assert np.isnan(m.apgr(curve)) and np.isnan(m.cpt(curve, 0.5))
    summary = m.summarize(curve)
    assert summary["apgr"] is None and summary["auc"] == pytest.approx(1.0)


def test_cost_curve_follows_the_routed_model():
    curve = m.routing_curve(SCORES, Q_WEAK, Q_STRONG, c_weak=[1, 1, 1, 1], c_strong=[5, 5, 5, 9])
    # strong share 0 → 1, then + (4)/4, + (4+4)/4, + 8/4
    np.testing.assert_allclose(curve.cost, [1.0, 2.0, 4.0, 6.0])
    assert (curve.c_weak, curve.c_strong) == (1.0, 6.0)


def test_nondecreasing_hull_and_aiq():
    cost, quality = [0, 1, 2, 3, 4], [0.2, 0.6, 0.5, 0.9, 0.8]
    hc, hq = m.nondecreasing_hull(cost, quality)
    # (2, 0.5) lies under the chord, (4, 0.8) past the best point is lifted to 0.9
    np.testing.assert_allclose(hc, [0, 1, 3, 4])
    np.testing.assert_allclose(hq, [0.2, 0.6, 0.9, 0.9])
    assert m.aiq(cost, quality) == pytest.approx((0.4 + 1.5 + 0.9) / 4)
    assert m.cost_at_quality(cost, quality, 0.75, reference_cost=3) == pytest.approx(2 / 3)
    assert np.isnan(m.cost_at_quality(cost, quality, 0.95, reference_cost=3))


def test_aiq_of_random_is_mean_of_ends():
    rng = np.random.default_rng(0)
    qw, qs = rng.random(20) < 0.3, rng.random(20) < 0.9
    curve = m.random_curve(qw, qs, np.full(20, 1.0), np.full(20, 3.0))
    assert m.aiq(curve.cost, curve.quality) == pytest.approx((qw.mean() + qs.mean()) / 2)
    assert m.summarize(curve)["cost_at_strong_quality"] == pytest.approx(1.0)


def test_summary_of_good_router_is_cheaper_than_strong():
    curve = m.routing_curve(SCORES, Q_WEAK, Q_STRONG, c_weak=[1] * 4, c_strong=[5] * 4)
    summary = m.summarize(curve)
    # quality 0.75 first reached at share 0.75: cost 1 + 0.75*4 = 4 out of 5
    assert summary["cost_at_strong_quality"] == pytest.approx(0.8)
    assert set(summary) == {"apgr", "cpt20", "cpt50", "cpt80", "auc", "aiq", "cost_at_strong_quality"}


def test_routed_point_for_n_models():
    quality = np.array([[0, 1, 1], [1, 1, 0]], dtype=float)
    cost = np.array([[1, 2, 3], [1, 2, 3]], dtype=float)
    assert m.routed_point([0, 0], quality, cost) == (0.5, 1.0)
    assert m.routed_point([2, 1], quality, cost) == (1.0, 2.5)
    with pytest.raises(DataError, match="out of range"):
        m.routed_point([3, 0], quality, cost)
    with pytest.raises(DataError, match="no prompts: choice is empty"):  # was NaN and a 'Mean of empty slice'
        m.routed_point([], np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(DataError, match="choice must be model indices"):
        m.routed_point(["first", "second"], quality, cost)


def test_cost_at_quality_refuses_a_target_that_is_not_a_number():
    for target in (float("nan"), "0.9"):
        with pytest.raises(DataError, match="target quality must be a finite number"):
            m.cost_at_quality([1.0, 2.0], [0.5, 0.9], target, reference_cost=2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scores", "q_weak", "message"),
    [([np.nan, 1], [0, 1], "NaN"), ([1, 2, 3], [0, 1], "expected 3"), ([], [], "zero prompts")],
)
def test_bad_input_is_a_clear_error(scores, q_weak, message):
    with pytest.raises(DataError, match=message):
        m.routing_curve(scores, q_weak, [1] * len(q_weak))


def test_cpt_level_out_of_range():
    with pytest.raises(DataError, match="CPT level"):
        m.cpt(m.random_curve([0, 1], [1, 1]), 1.5)
