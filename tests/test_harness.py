"""The evaluation harness: fixed folds, exact random baseline, transfer, unknown quality, costs."""

from __future__ import annotations

import numpy as np
import pytest

from learned_helpers import planted_pair, table_from
from sizewise.errors import ConfigError, DataError, UnknownModelError, UnknownNameError
from sizewise.evaluation.harness import evaluate, fold_indices
from sizewise.routers.base import make_router


@pytest.fixture(scope="module")
def table():
    return planted_pair(300, seed=2)


def test_folds_are_fixed_by_seed():
    a, b, c = fold_indices(50, 5, seed=1), fold_indices(50, 5, seed=1), fold_indices(50, 5, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    # every prompt is held out exactly once
    assert sorted(np.concatenate([test for _, test in a]).tolist()) == list(range(50))


def test_random_is_exactly_half_and_learned_router_beats_it(table):
    result = evaluate(table, ["random", "tfidf-logreg", "oracle"], cv=4, seed=0)
    by_name = {r.name: r for r in result.results}
    assert by_name["random"].metrics["apgr"] == pytest.approx(0.5, abs=1e-9)
    assert by_name["random"].metrics["cpt50"] == pytest.approx(0.5, abs=1e-9)
    assert 0.6 < by_name["tfidf-logreg"].metrics["apgr"] < by_name["oracle"].metrics["apgr"]
    assert len(by_name["tfidf-logreg"].fold_apgr) == 4
    assert by_name["tfidf-logreg"].metrics["cost_at_strong_quality"] < 1.0
    assert result.n_prompts == 300 and result.n_dropped == 0


def test_same_seed_same_numbers(table):
    a = evaluate(table, ["tfidf-logreg"], cv=3, seed=7).results[0].metrics
    b = evaluate(table, ["tfidf-logreg"], cv=3, seed=7).results[0].metrics
    assert a == b


def test_fixed_share_baselines_are_single_points(table):
    result = evaluate(table, ["always-small", "always-large"], cv=3)
    small, large = result.results
    assert small.curve.share.tolist() == [0.0] and large.curve.share.tolist() == [1.0]
    assert small.metrics["quality"] == pytest.approx(np.mean(table.column("small")))
    assert small.metrics["apgr"] is None
    assert large.metrics["cost_at_strong_quality"] == pytest.approx(1.0)


def test_transfer_fits_on_the_other_table(table):
    other = planted_pair(200, seed=9)
    result = evaluate(table, ["tfidf-logreg"], train_table=other)
    assert result.mode.startswith("transfer") and result.results[0].fold_apgr == []
    assert result.results[0].metrics["apgr"] > 0.6


def test_fitted_router_is_only_scored(table, monkeypatch):
    # Fitted elsewhere, it must be scored as it is: a refit (per fold, or on this table) would fail here.
    router = make_router("tfidf-logreg").fit(planted_pair(200, seed=9))
    expected = evaluate(table, [router], cv=3).results[0].metrics["apgr"]

    def refit(*_args, **_kwargs):
        raise AssertionError("the harness refitted a router it was given fitted")

    monkeypatch.setattr(router, "fit", refit)
    monkeypatch.setattr(router, "clone", refit)  # the harness refits clones
    assert evaluate(table, [router], cv=3).results[0].metrics["apgr"] == pytest.approx(expected)


def test_unknown_quality_rows_are_dropped_and_costs_optional():
    base = planted_pair(120, seed=4)
    quality = base.quality.copy()
    quality[:10, 1] = np.nan
    table = table_from(base.texts, quality, base.models)  # no cost column
    result = evaluate(table, ["random"], cv=3)
    assert (result.n_prompts, result.n_dropped) == (110, 10)
    metrics = result.results[0].metrics
    assert metrics["aiq"] is None and metrics["cost_at_strong_quality"] is None
    assert metrics["apgr"] == pytest.approx(0.5)
    assert "cost" not in result.results[0].to_json()["curve"]


def test_bad_input(table):
    with pytest.raises(ConfigError, match="at least 2"):
        evaluate(table, ["random"], cv=1)
    with pytest.raises(ConfigError, match="more folds"):
        evaluate(table.subset(np.arange(3)), ["random"], cv=5)
    with pytest.raises(UnknownNameError, match="unknown router"):
        evaluate(table, ["no-such-router"])
    with pytest.raises(UnknownModelError, match="gpt-9"):
        evaluate(table, ["random"], strong="gpt-9")
    with pytest.raises(DataError, match="empty"):
        evaluate(table.subset(np.arange(0)), ["random"])
