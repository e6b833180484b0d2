"""Cross-validation must not reward or punish fold offsets: the scores of different fits are ranked
within their own fold before the folds are pooled, and the mean of the per-fold APGRs is reported."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pytest

from learned_helpers import table_from
from sizewise.core.table import OutcomeTable
from sizewise.evaluation.harness import evaluate, fold_indices, fold_ranks
from sizewise.routers.base import Router


class MeanGainRouter(Router):
    """Scores every prompt with the strong model's mean gain on its training data: no prompt signal,
    only an offset that differs from fit to fit (the folds' training sets differ)."""

    name = "mean-gain"

    def __init__(self) -> None:
        """No parameters."""

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        """Remember the mean gain of ``strong`` over ``weak``."""
        weak, strong = table.weak_strong(weak, strong)
        self.gain_ = float(np.mean(table.column(strong) - table.column(weak)))
        self.fitted_ = True
        return self

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """The same score for every prompt."""
        return np.full(len(prompts), self.gain_)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"gain": self.gain_}, {}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.gain_ = float(meta["gain"])


def uneven_folds_table(n: int = 203, cv: int = 5) -> OutcomeTable:
    """Outcomes whose strong-model gain differs a lot between the folds of ``fold_indices(n, cv, 0)``:
    a fold's held-out gain is then anti-correlated with its training gain, as on real benchmarks."""
    rng = np.random.default_rng(1)
    quality = np.zeros((n, 2))
    for k, (_, test) in enumerate(fold_indices(n, cv, seed=0)):
        quality[test, 1] = rng.random(test.size) < 0.35 + 0.12 * k  # strong right more often in later folds
        quality[test, 0] = rng.random(test.size) < 0.15
    return table_from([f"question {i}" for i in range(n)], quality, ["weak", "strong"])


@pytest.fixture
def mean_gain(monkeypatch: pytest.MonkeyPatch) -> str:
    """``mean-gain`` registered for one test only."""
    from sizewise.routers.base import ROUTERS

    monkeypatch.setitem(ROUTERS.classes, MeanGainRouter.name, MeanGainRouter)
    return MeanGainRouter.name


def test_a_router_constant_within_each_fold_scores_exactly_half(mean_gain: str) -> None:
    result = evaluate(uneven_folds_table(), [mean_gain], cv=5, seed=0).results[0]
    assert result.fold_apgr == pytest.approx([0.5] * 5)
    assert result.metrics["apgr_fold_mean"] == pytest.approx(0.5)
    # Pooled raw scores would order the folds by their training gain: far from 0.5 on this table.
    assert result.metrics["apgr"] == pytest.approx(0.5, abs=1e-9)


def test_pooled_raw_scores_would_leak_the_offsets() -> None:
    """The table above does make raw pooling wrong (so the test before can fail for its reason)."""
    from sizewise.evaluation import metrics

    table = uneven_folds_table()
    raw = np.zeros(len(table))
    for train, test in fold_indices(len(table), 5, seed=0):
        raw[test] = MeanGainRouter().fit(table.subset(train)).score(table.subset(test).texts)
    curve = metrics.routing_curve(raw, table.column("weak"), table.column("strong"))
    assert abs(metrics.summarize(curve)["apgr"] - 0.5) > 0.05


def test_fold_ranks_keep_the_order_within_a_fold_and_tie_constants_at_half() -> None:
    np.testing.assert_allclose(fold_ranks(np.array([3.0, 1.0, 2.0, 2.0])), [0.875, 0.125, 0.5, 0.5])
    for size in (7, 8):
        np.testing.assert_allclose(fold_ranks(np.full(size, 0.3)), 0.5)


def test_a_real_router_keeps_its_skill_and_reports_the_fold_mean() -> None:
    from learned_helpers import planted_pair

    result = evaluate(planted_pair(300, seed=2), ["tfidf-logreg"], cv=4, seed=0).results[0]
    assert result.metrics["apgr"] > 0.6
    assert result.metrics["apgr_fold_mean"] == pytest.approx(np.mean(result.fold_apgr))


def test_transfer_has_no_fold_mean() -> None:
    from learned_helpers import planted_pair

    result = evaluate(planted_pair(120, seed=2), ["tfidf-logreg"], train_table=planted_pair(120, seed=5)).results[0]
    assert "apgr_fold_mean" not in result.metrics
