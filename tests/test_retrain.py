"""Retraining on a deployment's own outcomes: shrunk toward the incumbent, promoted only through the paired
guard, recalibrated on the traffic, with provenance in the file (#22 item 4)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from learned_helpers import apgr, planted_pair, prompts, table_from
from sizewise.errors import ConfigError
from sizewise.evaluation.table import OutcomeTable
from sizewise.learn.retrain import (
    Outcomes,
    Target,
    calibration,
    paired_comparison,
    parse_target,
    provenance,
    refit,
    retrain,
    weighted_threshold,
)
from sizewise.routers.base import load_router
from sizewise.routers.retrained import RetrainedRouter


def misled_table(n: int, seed: int) -> OutcomeTable:
    """Traffic of another deployment: there the weak model fails chat and aces math and code."""
    rng = np.random.default_rng(seed + 7)
    texts, topics = prompts(n, seed)
    weak = rng.random(n) < np.where(topics == 2, 0.15, 0.95)
    strong = rng.random(n) < 0.9
    return table_from(texts, np.c_[weak, strong].astype(float), ["small", "large"])


@pytest.fixture(scope="module")
def wrong_incumbent() -> RetrainedRouter:
    """An incumbent that ranks this deployment's prompts backwards."""
    return RetrainedRouter().fit(misled_table(600, seed=3))


@pytest.fixture(scope="module")
def right_incumbent() -> RetrainedRouter:
    """An incumbent trained on this deployment's kind of traffic."""
    return RetrainedRouter().fit(planted_pair(600, seed=3))


@pytest.fixture(scope="module")
def traffic() -> OutcomeTable:
    return planted_pair(2000, seed=11)


@pytest.fixture(scope="module")
def test_set() -> OutcomeTable:
    return planted_pair(500, seed=12)


def rho(a: RetrainedRouter, b: RetrainedRouter, table: OutcomeTable) -> float:
    return float(spearmanr(a.score(table.texts), b.score(table.texts))[0])


def test_a_hundred_outcomes_move_the_incumbent_only_a_little(wrong_incumbent, traffic, test_set):
    few = traffic.subset(np.arange(100))
    shrunk = refit(wrong_incumbent, few, shrink=300)
    unshrunk = refit(wrong_incumbent, few, shrink=0)  # the same fit without the pull toward the incumbent
    assert rho(shrunk, wrong_incumbent, test_set) > 0.8
    assert rho(unshrunk, wrong_incumbent, test_set) < 0.3
    assert shrunk.beta_ == pytest.approx(100 / 400)


def test_thousands_of_outcomes_overrule_a_wrong_incumbent_and_the_guard_promotes(wrong_incumbent, traffic, test_set):
    assert apgr(wrong_incumbent.score(test_set.texts), test_set) < 0.4
    result = retrain(wrong_incumbent, traffic.subset(np.arange(1500)), Target("share", 0.5), n_boot=500)
    assert result.promote, result.comparison.reason
    assert result.comparison.ci[0] > 0 and result.comparison.n == 1500
    assert apgr(result.candidate.score(test_set.texts), test_set) > 0.6  # from below 0.4: the data overrule it
    assert result.candidate.base_ is wrong_incumbent  # it had no base of its own: shrunk toward it


@pytest.mark.parametrize("seed", range(4))
def test_the_guard_refuses_a_candidate_fitted_on_noise(right_incumbent, seed):
    """Outcomes with no link to the prompts: a candidate may look better by chance, but never shown so."""
    noise = planted_pair(400, seed=20 + seed, shuffle=True)
    result = retrain(right_incumbent, noise, Target("share", 0.5), n_boot=500, seed=seed)
    assert not result.promote, result.comparison.reason
    assert "not shown better" in result.comparison.reason


def test_the_guard_needs_enough_judged_requests(wrong_incumbent, traffic):
    result = retrain(wrong_incumbent, traffic.subset(np.arange(40)), Target("share", 0.5), n_boot=200)
    assert not result.promote and "at least 50" in result.comparison.reason


def test_fold_offsets_do_not_move_the_paired_comparison():
    """Out-of-fold scores of different folds may sit at different levels: each fold is ranked alone."""
    rng = np.random.default_rng(0)
    n = 300
    q_weak, q_strong = (rng.random(n) < 0.5).astype(float), (rng.random(n) < 0.8).astype(float)
    outcomes = Outcomes([f"p{i}" for i in range(n)], q_weak, q_strong)
    incumbent, candidate = rng.random(n), q_strong - q_weak + rng.random(n)
    folds = np.arange(n) % 5
    plain = paired_comparison(incumbent, candidate, folds, outcomes, 0.5, n_boot=200)
    shifted = paired_comparison(incumbent, candidate + 10.0 * folds, folds, outcomes, 0.5, n_boot=200)
    assert shifted.diff == pytest.approx(plain.diff) and shifted.changed == plain.changed


def test_recalibration_meets_the_target_on_the_traffic_with_weights():
    scores = np.linspace(0, 1, 100)
    outcomes = Outcomes(
        [f"p{i}" for i in range(100)], np.zeros(100), np.ones(100), weights=np.r_[np.ones(50), 3 * np.ones(50)]
    )
    threshold = weighted_threshold(scores, outcomes, Target("share", 0.5))
    routed = scores >= threshold
    assert np.average(routed, weights=outcomes.weights) == pytest.approx(0.5, abs=0.02)
    assert routed.sum() < 40  # the heavy half holds three quarters of the weight: fewer rows reach half of it
    quality = weighted_threshold(scores, outcomes, Target("quality", 0.9))
    assert np.average(scores >= quality, weights=outcomes.weights) == pytest.approx(0.9, abs=0.02)


def test_the_file_records_provenance_and_round_trips(wrong_incumbent, traffic, test_set, tmp_path):
    judged = traffic.subset(np.arange(300))
    result = retrain(wrong_incumbent, judged, parse_target("quality:0.95"), n_boot=200)
    path = result.candidate.save(tmp_path / "c.zip", provenance=provenance(result, judged, "v0001"))
    loaded = load_router(path)
    assert isinstance(loaded, RetrainedRouter)
    np.testing.assert_allclose(loaded.score(test_set.texts), result.candidate.score(test_set.texts))
    recorded = loaded.provenance_
    assert recorded["sizewise_version"] and recorded["parent"] == "v0001"
    assert recorded["training_data"]["digest"].startswith("sha256:") and recorded["training_data"]["n_judged"] == 300
    assert recorded["embedding"]["name"] == "static" and recorded["embedding"]["id"]
    assert loaded.threshold_ == pytest.approx(result.calibration["targets"]["quality_0.95"]["threshold"])
    other = provenance(result, traffic.subset(np.arange(1, 301)), "v0001")
    assert other["training_data"]["digest"] != recorded["training_data"]["digest"]


@pytest.mark.parametrize("text", ["share", "share:2", "quality:x", "speed:0.5", "budget:-1"])
def test_bad_targets_are_one_line_errors(text):
    with pytest.raises(ConfigError, match="target") as error:
        parse_target(text)
    assert "\n" not in str(error.value)


def test_the_candidate_is_calibrated_on_scores_of_requests_it_never_saw():
    """In-sample scores flatter a fitted router: the share a quality target needs comes from cross-fitted
    scores, and the threshold sends that share of the router's own scores to the strong model."""
    rng = np.random.default_rng(3)
    n = 400
    q_weak, q_strong = (rng.random(n) < 0.5).astype(float), np.ones(n)
    outcomes = Outcomes([f"p{i}" for i in range(n)], q_weak, q_strong)
    in_sample = q_strong - q_weak + 0.01 * rng.random(n)  # memorised: ranks every needy request first
    cross_fitted = rng.random(n)  # what it knows about requests it never saw: nothing
    target = Target("quality", 0.95)
    flattering = calibration(RetrainedRouter(), outcomes, target, scores=in_sample)["targets"]["quality_0.95"]
    honest = calibration(RetrainedRouter(), outcomes, target, scores=in_sample, heldout=cross_fitted)
    entry = honest["targets"]["quality_0.95"]
    assert flattering["share"] < 0.5 < 0.85 < entry["share"]  # 0.95 of the quality needs ~90% when blind
    assert np.mean(in_sample >= entry["threshold"]) == pytest.approx(entry["share"], abs=0.01)
