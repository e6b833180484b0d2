"""Run routers on an outcome table and measure them: K-fold cross-validation or transfer.

Cross-validation: the prompts with a known quality for both models are split into ``cv`` folds
(``sklearn.model_selection.KFold``, shuffled with ``seed``, so the folds are the same for every router
and every run). Each router is cloned and fitted on K−1 folds and scores the held-out fold; each
fold's scores become ranks within that fold (:func:`fold_ranks`), and the ranks of all prompts make
one routing curve. Raw scores of different fits are not comparable: pooled, an offset between folds
(a router constant within each fold) would read as skill or as harm. ``apgr_fold_mean`` (the mean of
the per-fold APGRs) is reported beside the pooled APGR. Transfer (``train_on``): fit once on another
table, score every prompt of this one. A router loaded from a file is only scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sizewise.core.table import OutcomeTable
from sizewise.errors import ConfigError, DataError
from sizewise.evaluation import metrics
from sizewise.progress import Progress
from sizewise.routers.base import Router, make_router


@dataclass
class RouterResult:
    """One router's out-of-fold curve, scalar metrics, and per-fold APGR."""

    name: str
    curve: metrics.RoutingCurve
    metrics: dict[str, float | None]
    fold_apgr: list[float | None] = field(default_factory=list)
    fixed_share: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``sizewise eval --json`` writes for this router."""
        points = {"share": self.curve.share.tolist(), "quality": self.curve.quality.tolist()}
        if self.curve.cost is not None:
            points["cost"] = self.curve.cost.tolist()
        if self.curve.threshold is not None:  # JSON has no infinity: share 0 (no prompt is strong) reads null
            points["threshold"] = [float(t) if np.isfinite(t) else None for t in self.curve.threshold]
        return {"router": self.name, **self.metrics, "fold_apgr": self.fold_apgr, "curve": points}


@dataclass
class EvalResult:
    """Everything one ``sizewise eval`` run measured."""

    dataset: str
    weak: str
    strong: str
    n_prompts: int
    n_dropped: int
    mode: str
    results: list[RouterResult]
    random: metrics.RoutingCurve
    oracle: metrics.RoutingCurve

    def to_json(self) -> dict[str, Any]:
        """The whole run as JSON (routers in order, then the setup)."""
        return {
            "dataset": self.dataset,
            "weak": self.weak,
            "strong": self.strong,
            "prompts": self.n_prompts,
            "dropped_unknown_quality": self.n_dropped,
            "mode": self.mode,
            "weak_quality": self.random.q_weak,
            "strong_quality": self.random.q_strong,
            "weak_cost": self.random.c_weak,
            "strong_cost": self.random.c_strong,
            "routers": [r.to_json() for r in self.results],
        }


def known_pair(table: OutcomeTable, weak: str, strong: str) -> tuple[OutcomeTable, int]:
    """The rows of ``table`` where both models' quality is known, and how many were dropped."""
    table.require_nonempty()
    known = ~(np.isnan(table.column(weak)) | np.isnan(table.column(strong)))
    if known.sum() < 2:
        raise DataError(f"table {table.name!r}: fewer than 2 prompts with known quality for {weak} and {strong}")
    return (table if known.all() else table.subset(known)), int((~known).sum())


def pair_costs(table: OutcomeTable, weak: str, strong: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-prompt costs of the pair, or (None, None) when the table's costs are missing or incomplete."""
    if table.cost is None:
        return None, None
    c_weak, c_strong = table.column(weak, "cost"), table.column(strong, "cost")
    if np.isnan(c_weak).any() or np.isnan(c_strong).any():
        return None, None
    return c_weak, c_strong


def fold_indices(n: int, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``cv`` (train, test) index pairs over ``n`` rows, fixed by ``seed``."""
    from sklearn.model_selection import KFold

    if cv < 2:
        raise ConfigError(f"--cv must be at least 2, got {cv}")
    if cv > n:
        raise ConfigError(f"--cv {cv} is more folds than the {n} prompts with known quality")
    return list(KFold(n_splits=cv, shuffle=True, random_state=seed).split(np.arange(n)))


def fold_ranks(scores: np.ndarray) -> np.ndarray:
    """Scores of one fold as mid-ranks in (0, 1), ties averaged: a fold-constant router maps to 0.5
    in every fold, whatever the fold's size, so pooled folds tie instead of ordering by fold."""
    from scipy.stats import rankdata

    return (rankdata(scores, method="average") - 0.5) / scores.size


def _check_scores(name: str, scores: np.ndarray, n: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if scores.size != n:
        raise DataError(f"router {name!r} returned {scores.size} scores for {n} prompts")
    if np.isnan(scores).any():
        raise DataError(f"router {name!r} returned NaN scores")
    return scores


def fit_fold(
    router: Router, data: OutcomeTable, train_idx: np.ndarray, test_idx: np.ndarray, weak: str, strong: str
) -> np.ndarray:
    """One fold: a clone of ``router`` fitted on the training rows; its raw scores of the test rows."""
    model = router.clone().fit(data.subset(train_idx), weak, strong)
    return _check_scores(router.name, model.score_table(data.subset(test_idx)), test_idx.size)


#: ``fold_map(data, weak, strong, [(router, train_idx, test_idx), ...])`` -> each fold's :func:`fit_fold` scores.
FoldMap = Callable[[OutcomeTable, str, str, list[tuple[Router, np.ndarray, np.ndarray]]], list[np.ndarray]]


def evaluate(
    table: OutcomeTable,
    routers: Sequence[str | Router],
    *,
    cv: int = 5,
    seed: int = 0,
    train_table: OutcomeTable | None = None,
    weak: str | None = None,
    strong: str | None = None,
    router_params: dict[str, dict[str, Any]] | None = None,
    progress: bool = False,
    fold_map: FoldMap | None = None,
) -> EvalResult:
    """Measure each router on ``table`` (names are made with ``make_router``; fitted Router objects are only scored).

    ``train_table`` switches from ``cv``-fold cross-validation to transfer. ``router_params`` maps a router
    name to constructor keywords (``seed``/``random_state`` are filled from ``seed`` where the router takes them).
    ``fold_map`` runs every (router, fold) fit elsewhere, all at once (``eval --ray``: one Ray task each); it
    returns what :func:`fit_fold` would, in order, so the numbers are the local run's.
    """
    weak, strong = table.weak_strong(weak, strong)
    data, dropped = known_pair(table, weak, strong)
    n = len(data)
    q_weak, q_strong = data.column(weak), data.column(strong)
    c_weak, c_strong = pair_costs(data, weak, strong)
    folds = None if train_table is not None else fold_indices(n, cv, seed)
    train_data = None
    if train_table is not None:
        train_table.weak_strong(weak, strong)  # both models must exist there too
        train_data, _ = known_pair(train_table, weak, strong)

    def build(spec: str | Router) -> Router:
        if isinstance(spec, Router):
            return spec
        params = dict((router_params or {}).get(spec, {}))
        router = make_router(spec)
        for key in ("seed", "random_state"):
            if key in router.get_params() and key not in params:
                params[key] = seed
        return make_router(spec, **params) if params else router

    built = [build(spec) for spec in routers]
    fitted = [isinstance(spec, Router) for spec in routers]
    steps = sum(1 if done or folds is None else len(folds) for done in fitted)
    jobs = [(i, k) for i, done in enumerate(fitted) if not done and folds is not None for k in range(len(folds))]
    mapped: dict[tuple[int, int], np.ndarray] = {}
    if fold_map is not None and folds is not None and jobs:
        parts = fold_map(data, weak, strong, [(built[i], *folds[k]) for i, k in jobs])
        mapped = {
            job: _check_scores(built[job[0]].name, part, folds[job[1]][1].size)
            for job, part in zip(jobs, parts, strict=True)
        }
    bar = Progress(steps, f"eval {data.name}", "fits", enabled=progress)
    results = []
    try:
        for index, (router, already) in enumerate(zip(built, fitted, strict=True)):
            bar.note(router.name)
            scores = np.zeros(n)
            fold_apgr: list[float | None] = []
            if already:
                scores = _check_scores(router.name, router.score_table(data), n)
                bar.update(1)
            elif folds is None:
                assert train_data is not None
                model = router.clone().fit(train_data, weak, strong)
                scores = _check_scores(router.name, model.score_table(data), n)
                bar.update(1)
            else:
                for k, (train_idx, test_idx) in enumerate(folds):
                    part = mapped.get((index, k))
                    if part is None:
                        part = fit_fold(router, data, train_idx, test_idx, weak, strong)
                    scores[test_idx] = fold_ranks(part)
                    if getattr(router, "fixed_share", None) is None:
                        curve = metrics.routing_curve(part, q_weak[test_idx], q_strong[test_idx])
                        fold_apgr.append(metrics.summarize(curve)["apgr"])
                    bar.update(1)
            results.append(_result(router, scores, q_weak, q_strong, c_weak, c_strong, fold_apgr))
    finally:
        bar.close()
    return EvalResult(
        dataset=table.name,
        weak=weak,
        strong=strong,
        n_prompts=n,
        n_dropped=dropped,
        mode="transfer from " + train_table.name if train_table is not None else f"{cv}-fold cv, seed {seed}",
        results=results,
        random=metrics.random_curve(q_weak, q_strong, c_weak, c_strong),
        oracle=metrics.oracle_curve(q_weak, q_strong, c_weak, c_strong),
    )


def _result(
    router: Router,
    scores: np.ndarray,
    q_weak: np.ndarray,
    q_strong: np.ndarray,
    c_weak: np.ndarray | None,
    c_strong: np.ndarray | None,
    fold_apgr: list[float | None],
) -> RouterResult:
    fixed = getattr(router, "fixed_share", None)
    if fixed is None:
        curve = metrics.routing_curve(scores, q_weak, q_strong, c_weak, c_strong)
        summary = metrics.summarize(curve)
        known = [a for a in fold_apgr if a is not None]
        if fold_apgr:  # cross-validation only: transfer and fitted routers have one fit, nothing to average
            summary["apgr_fold_mean"] = float(np.mean(known)) if known else None
        return RouterResult(router.name, curve, summary, fold_apgr)
    # always-small / always-large: one operating point, no curve to integrate
    full = metrics.routing_curve(np.zeros(len(scores)), q_weak, q_strong, c_weak, c_strong)
    at_end = fixed >= 1.0
    quality = full.q_strong if at_end else full.q_weak
    cost = (full.c_strong if at_end else full.c_weak) if full.cost is not None else None
    point = metrics.RoutingCurve(
        share=np.array([fixed]),
        quality=np.array([quality]),
        cost=None if cost is None else np.array([cost]),
        q_weak=full.q_weak,
        q_strong=full.q_strong,
        c_weak=full.c_weak,
        c_strong=full.c_strong,
    )
    values: dict[str, float | None] = dict.fromkeys(("apgr", "cpt20", "cpt50", "cpt80", "auc", "aiq"), None)
    values["cost_at_strong_quality"] = None
    if cost is not None and full.c_strong and quality >= full.q_strong:
        values["cost_at_strong_quality"] = float(cost / full.c_strong)
    values["quality"] = float(quality)
    return RouterResult(router.name, point, values, fold_apgr, fixed)
