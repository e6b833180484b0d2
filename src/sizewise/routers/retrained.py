"""``retrained``: an incumbent router blended with a model fitted on a deployment's own outcomes.

score(x) = (1 - beta) * z(base(x)) + beta * z(fresh(x)), beta = n / (n + shrink), where ``base`` is the
incumbent's own router (kept whole in the file), ``z`` standardises a score on the outcomes, and
``fresh`` = c * z(base(x)) + w . phi(x) + b is a ridge regression of the strong model's gain on the
incumbent's score and ``phi`` (the static embedding plus the cheap text features, standardised; only
``w`` is penalised, by ``ridge``; by default chosen by 5-fold cross-validation on the outcomes from
:data:`RIDGE_GRID`: 274 features on a few hundred noisy verdicts overfit at a light penalty, and how light
is too light depends on the traffic). With n outcomes the fresh model weighs n / (n + shrink): 100 outcomes
move the ranking only a little (shrink 300: a quarter), thousands can overrule the incumbent. Blending
standardised scores rather than shrinking ``w`` alone is what bounds the move: a free ``c`` near zero
would otherwise hand the ranking to a tiny correction, whatever its size.

A retrain of a retrained router refits from the same base on all outcomes collected so far (the
Bayesian update from the same prior with more data), so the file never grows a chain of corrections.
Built by :func:`sizewise.learn.retrain.refit`; ``fit`` alone works too, loading ``incumbent`` (a router
file path, or ``default`` for the shipped router) or, with none, fitting the correction alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from sizewise.errors import ConfigError
from sizewise.routers._learned import check_embedding, check_number, check_prompts, embed_prompts, pair_outcomes
from sizewise.routers.base import Router, load_router, register
from sizewise.routers.features import text_features

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable

#: Arrays of the base router are stored under this prefix in the same file.
BASE_PREFIX = "base."
#: Penalties the default ``ridge=None`` chooses from, by cross-validated squared error of the gain.
RIDGE_GRID = (10.0, 100.0, 1000.0, 10000.0)


def features(prompts: Sequence[str], embedding: str = "static") -> np.ndarray:
    """phi: the prompt embedding and the text features, unscaled."""
    texts = check_prompts(prompts)
    return np.hstack([embed_prompts(texts, embedding), text_features(texts)]).astype(np.float64)


def ridge_with_offset(
    offset: np.ndarray, x: np.ndarray, y: np.ndarray, shrink: float, weights: np.ndarray | None = None
) -> tuple[float, float, np.ndarray]:
    """(c, b, w) minimising sum weights * (y - c*offset - b - x.w)^2 + shrink * |w|^2 (c and b unpenalised).

    ``x`` is standardised by the caller; weights are rescaled to sum to n so ``shrink`` keeps its meaning.
    """
    n = len(y)
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=float) * n / float(np.sum(weights))
    design = np.hstack([offset[:, None], np.ones((n, 1)), x])
    gram = design.T @ (design * weights[:, None])
    penalty = np.full(design.shape[1], float(shrink))
    penalty[:2] = 1e-9  # c and b stay free; the jitter keeps a constant offset solvable
    solution = np.linalg.solve(gram + np.diag(penalty), design.T @ (weights * y))
    return float(solution[0]), float(solution[1]), solution[2:]


def choose_ridge(
    offset: np.ndarray, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, folds: int = 5
) -> float:
    """The penalty of :data:`RIDGE_GRID` with the least cross-validated (weighted) squared error."""
    n = len(y)
    if n < 2 * folds:
        return RIDGE_GRID[-1]  # too few to compare: the most cautious
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    fold = np.random.default_rng(0).permutation(np.arange(n) % folds)
    errors = []
    for penalty in RIDGE_GRID:
        error = 0.0
        for k in range(folds):
            train, test = fold != k, fold == k
            c, b, coef = ridge_with_offset(offset[train], x[train], y[train], penalty, w[train])
            error += float((w[test] * (y[test] - c * offset[test] - b - x[test] @ coef) ** 2).sum())
        errors.append(error)
    return RIDGE_GRID[int(np.argmin(errors))]


@register
class RetrainedRouter(Router):
    """An incumbent router's score blended with a ridge model of the outcomes, weighted toward the incumbent."""

    name = "retrained"
    #: The incumbent's own router (None when fitted without one); learned, so it ends in ``_``.
    base_: Router | None

    def __init__(
        self,
        incumbent: str | None = None,
        shrink: float = 300.0,
        ridge: float | None = None,
        embedding: str = "static",
    ) -> None:
        self.incumbent = incumbent
        self.shrink = shrink
        self.ridge = ridge
        self.embedding = embedding

    def _check_params(self) -> None:
        check_number(self.name, "shrink", self.shrink, 0)
        if self.ridge is not None:
            check_number(self.name, "ridge", self.ridge, 0, strict=True)
        check_embedding(self.embedding)
        if self.incumbent is not None and not isinstance(self.incumbent, str):
            raise ConfigError(f"retrained: incumbent must be a router file path or 'default', got {self.incumbent!r}")

    def _load_incumbent(self) -> Router | None:
        if self.incumbent is None:
            return None
        if self.incumbent == "default":
            from importlib.resources import files

            return load_router(Path(str(files("sizewise.routers").joinpath("pretrained", "default.zip"))))
        return load_router(self.incumbent)

    def fit(
        self,
        table: OutcomeTable,
        weak: str | None = None,
        strong: str | None = None,
        *,
        incumbent: Router | None = None,
        weights: np.ndarray | None = None,
        base_scores: np.ndarray | None = None,
        phi: np.ndarray | None = None,
    ) -> Self:
        """Fit on ``table``'s (weak, strong) outcomes, shrunk toward ``incumbent`` (default: the ``incumbent``
        parameter loaded). ``weights``: one per table row (inverse selection probabilities); ``base_scores``
        and ``phi``: the base router's scores and :func:`features` of the table's rows, when the caller has them
        (a retrain fits several folds on the same requests)."""
        self._check_params()
        given = incumbent if incumbent is not None else self._load_incumbent()
        # A retrained incumbent is refitted from its own base on all outcomes (the same prior, more data).
        base = given.base_ if isinstance(given, RetrainedRouter) and given.base_ is not None else given
        self.weak_, self.strong_, texts, q_weak, q_strong = pair_outcomes(table, weak, strong)
        known = ~(np.isnan(table.column(self.weak_)) | np.isnan(table.column(self.strong_)))
        if weights is not None:
            weights = np.asarray(weights, dtype=float)[known]
        self.base_ = base
        raw = features(texts, self.embedding) if phi is None else np.asarray(phi, dtype=float)[known]
        self.x_mean_ = raw.mean(axis=0)
        self.x_scale_ = np.where(raw.std(axis=0) > 1e-9, raw.std(axis=0), 1.0)
        x = (raw - self.x_mean_) / self.x_scale_
        if base is None:
            offset = np.zeros(len(texts))
        elif base_scores is None:
            offset = np.asarray(base.score(texts), dtype=float)
        else:
            offset = np.asarray(base_scores, dtype=float)[known]
        self.z_mean_ = float(offset.mean())
        self.z_scale_ = float(offset.std()) if offset.std() > 1e-12 else 1.0
        offset = (offset - self.z_mean_) / self.z_scale_
        gain = q_strong - q_weak
        self.ridge_ = float(self.ridge) if self.ridge is not None else choose_ridge(offset, x, gain, weights)
        self.c_, self.b_, self.w_ = ridge_with_offset(offset, x, gain, self.ridge_, weights)
        if base is None:
            self.c_ = 0.0
        fresh = self.c_ * offset + x @ self.w_ + self.b_
        self.f_mean_ = float(fresh.mean())
        self.f_scale_ = float(fresh.std()) if fresh.std() > 1e-12 else 1.0
        self.n_outcomes_ = len(texts)
        self.beta_ = 1.0 if base is None else self.n_outcomes_ / (self.n_outcomes_ + float(self.shrink))
        self.fitted_ = True
        return self

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        self.check_fitted()
        texts = check_prompts(prompts)
        if not texts:
            return np.zeros(0)
        base = np.zeros(len(texts)) if self.base_ is None else np.asarray(self.base_.score(texts), dtype=float)
        return self.score_from(base, features(texts, self.embedding))

    def score_from(self, base_scores: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Scores from the base router's scores and :func:`features` (what ``score`` computes first)."""
        base = (np.asarray(base_scores, dtype=float) - self.z_mean_) / self.z_scale_
        x = (np.asarray(phi, dtype=float) - self.x_mean_) / self.x_scale_
        fresh = (self.c_ * base + x @ self.w_ + self.b_ - self.f_mean_) / self.f_scale_
        return (1.0 - self.beta_) * base + self.beta_ * fresh

    # -- persistence: the base router's own parameters, state and arrays travel inside this file -------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {
            "weak": self.weak_,
            "strong": self.strong_,
            "c": self.c_,
            "b": self.b_,
            "z_mean": self.z_mean_,
            "z_scale": self.z_scale_,
            "n_outcomes": self.n_outcomes_,
            "ridge": self.ridge_,
            "f_mean": self.f_mean_,
            "f_scale": self.f_scale_,
            "beta": self.beta_,
            "base": None,
        }
        arrays = {"w": self.w_, "x_mean": self.x_mean_, "x_scale": self.x_scale_}
        if self.base_ is not None:
            base_meta, base_arrays = self.base_._state()
            meta["base"] = {
                "name": self.base_.name,
                "params": self.base_.get_params(),
                "state": base_meta,
                "provenance": self.base_._provenance(),
            }
            arrays.update({BASE_PREFIX + key: value for key, value in base_arrays.items()})
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        from sizewise.routers._learned import array
        from sizewise.routers.base import router_class

        self.weak_, self.strong_ = str(meta["weak"]), str(meta["strong"])
        self.c_, self.b_ = float(meta["c"]), float(meta["b"])
        self.z_mean_, self.z_scale_ = float(meta["z_mean"]), float(meta["z_scale"])
        self.n_outcomes_ = int(meta["n_outcomes"])
        self.ridge_ = float(meta["ridge"])
        self.f_mean_, self.f_scale_, self.beta_ = float(meta["f_mean"]), float(meta["f_scale"]), float(meta["beta"])
        self.w_ = array(arrays, "w", (None,))
        self.x_mean_ = array(arrays, "x_mean", (len(self.w_),))
        self.x_scale_ = array(arrays, "x_scale", (len(self.w_),))
        base = meta.get("base")
        self.base_ = None
        if base is not None:
            cls = router_class(str(base["name"]))
            router = cls(**base["params"])
            router._check_params()
            inner = {k[len(BASE_PREFIX) :]: v for k, v in arrays.items() if k.startswith(BASE_PREFIX)}
            router._set_state(base["state"], inner)
            router._check_provenance(base.get("provenance") or {})  # its embedding must be installed too
            router.provenance_ = base.get("provenance") or {}
            router.fitted_ = True
            self.base_ = router
