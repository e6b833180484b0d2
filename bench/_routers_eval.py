"""Evaluation helpers of the learned-router benchmark (bench/routers.py): metrics, folds, out-of-fold scores."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from sizewise.evaluation.table import OutcomeTable


def _top_level_commas(spec: str) -> list[int]:
    """Positions of the commas of ``spec`` outside JSON brackets and strings."""
    depth, quoted, found = 0, False, []
    for i, char in enumerate(spec):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "[{":
            depth += 1
        elif not quoted and char in "]}":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            found.append(i)
    return found


def _split(spec: str, keep: bool) -> list[str]:
    """Split at top-level commas followed (``keep=True``) or not followed by ``key=``."""
    cuts = [i for i in _top_level_commas(spec) if bool(re.match(r"\w+=", spec[i + 1 :])) == keep]
    return [part for part in (spec[a + 1 : b] for a, b in zip([-1, *cuts], [*cuts, len(spec)], strict=True)) if part]


def split_routers(spec: str) -> list[str]:
    """Router names from ``--routers``: commas separate routers, except a comma before ``key=`` that
    separates one router's parameters (``ensemble:combine="stack",members=["knn","mf"],knn``)."""
    return _split(spec, keep=False)


# -- metrics (the harness's definitions: sizewise.evaluation.metrics) ------------------------------------
def pair_metrics(scores: np.ndarray, q_weak: np.ndarray, q_strong: np.ndarray) -> dict[str, float]:
    """APGR, CPT(50%), CPT(80%) of one score vector (ties averaged, CPT interpolated)."""
    from sizewise.evaluation import metrics

    curve = metrics.routing_curve(scores, q_weak, q_strong)
    return {"apgr": metrics.apgr(curve), "cpt50": metrics.cpt(curve, 0.5), "cpt80": metrics.cpt(curve, 0.8)}


def n_model_summary(
    points: list[tuple[float, float]], best_quality: float, best_cost: float
) -> dict[str, float | None]:
    """AIQ and the two MMLU-Pro goals from (quality, cost per 1k) operating points."""
    from sizewise.evaluation import metrics

    qs, cs = np.array([q for q, _ in points]), np.array([c for _, c in points])
    share = metrics.cost_at_quality(cs, qs, best_quality, best_cost)
    within = qs[cs <= best_cost * (1 + 1e-9)]
    return {
        "aiq": metrics.aiq(cs, qs),
        "cost_share_for_best_single_accuracy": None if np.isnan(share) else float(share),
        "best_accuracy_within_best_single_cost": float(within.max()) if within.size else None,
    }


# -- cross-validation ---------------------------------------------------------------------------
def folds_for(table: OutcomeTable, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """K folds fixed by seed; the turns of one MT-Bench question stay in one fold."""
    rng = np.random.default_rng(seed)
    groups = (
        table.prompts["question_id"].astype(str).to_numpy()
        if "question_id" in table.prompts
        else np.arange(len(table)).astype(str)
    )
    unique = rng.permutation(np.unique(groups))
    fold_of = {g: i % k for i, g in enumerate(unique)}
    labels = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(labels == i) for i in range(k)]


def make(name: str) -> Any:
    """A new router by registry name (``name:key=value,...`` sets parameters, values as JSON)."""
    import importlib

    from sizewise.routers import base as registry

    base, _, spec = name.partition(":")
    params = {k: json.loads(v) for k, v in (item.split("=", 1) for item in _split(spec, keep=True))}
    try:
        cls = registry.router_class(base)
    except ModuleNotFoundError:  # a router module listed in the registry is not in this checkout yet
        for module in ("knn", "embed_models", "mf", "gbdt"):
            importlib.import_module(f"sizewise.routers.{module}")
        cls = registry._REGISTRY[base]
    return cls(**params)


def oof_scores(
    name: str, table: OutcomeTable, folds: list[np.ndarray], extra: OutcomeTable | None = None
) -> np.ndarray:
    """Out-of-fold scores; ``extra`` rows (another table with the same pair) are added to every training fold."""
    scores = np.zeros(len(table))
    for test in folds:
        train = table.subset(np.setdiff1d(np.arange(len(table)), test))
        if extra is not None:
            train = concat([train, extra])
        router = make(name).fit(train)
        scores[test] = router.score_table(table.subset(test))
    return scores


def oof_quality(name: str, table: OutcomeTable, folds: list[np.ndarray]) -> np.ndarray:
    """Out-of-fold predicted quality of every model (N-model routers), one row per prompt."""
    pred = np.zeros(table.quality.shape)
    for test in folds:
        router = make(name).fit(table.subset(np.setdiff1d(np.arange(len(table)), test)))
        pred[test] = router.predict_quality(table.subset(test).texts)
    return pred


def n_model_points(
    pred: np.ndarray, costs: np.ndarray, table: OutcomeTable, grid_costs: np.ndarray
) -> list[tuple[float, float]]:
    """Realised (quality, cost per 1k) of max quality - lambda x ``costs`` over 120 lambdas from ``grid_costs``."""
    from sizewise.routers.multi import lambda_grid, max_utility, realised

    return [realised(max_utility(pred, costs, lam), table.quality, table.cost) for lam in lambda_grid(grid_costs, 120)]


def concat(tables: list[OutcomeTable], name: str = "pooled") -> OutcomeTable:
    """Stack tables with the same model columns (prompts renamed apart)."""
    import pandas as pd

    frames = []
    for i, t in enumerate(tables):
        frame = t.prompts[["prompt_id", "text"]].copy()
        frame["prompt_id"] = f"{i}:" + frame["prompt_id"].astype(str)
        frames.append(frame)
    cost = None if any(t.cost is None for t in tables) else np.vstack([t.cost for t in tables])  # type: ignore[misc]
    return OutcomeTable(
        name=name,
        prompts=pd.concat(frames, ignore_index=True),
        models=list(tables[0].models),
        quality=np.vstack([t.quality for t in tables]),
        cost=cost,
        pair=tables[0].pair,
    )


def as_pair(table: OutcomeTable, weak: str, strong: str, names: tuple[str, str]) -> OutcomeTable:
    """Two columns of ``table`` renamed to a common (weak, strong) pair of names."""
    sub = table.select_models([weak, strong])
    return OutcomeTable(table.name, sub.prompts, list(names), sub.quality, cost=sub.cost, pair=names)
