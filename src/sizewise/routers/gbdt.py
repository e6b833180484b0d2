"""``gbdt``: LightGBM on prompt embeddings plus cheap text features (length, digits, code, language, turns).

It regresses the strong model's gain ``q_strong - q_weak`` directly (squared error), whose
conditional mean is the ideal routing score. ``target="difficulty"`` regresses instead one minus the
mean quality of every model in the table: a score that names no model, so a router fitted on one pool
of models can rank the prompts of a pair it has no outcomes for (transfer); on a pair it has outcomes
for, the gain ranks better. Saved as LightGBM's own text model string inside the
JSON part of the router file (no pickle); prediction walks the trees in numpy
(:mod:`sizewise.routers._forest`) so loading and scoring do not import LightGBM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from sizewise.errors import ConfigError
from sizewise.routers._forest import Forest
from sizewise.routers._learned import (
    check_embedding,
    check_number,
    check_prompts,
    check_seed,
    embed_prompts,
    embedding_dim,
    pair_meta,
    pair_outcomes,
    set_pair_meta,
)
from sizewise.routers.base import Router, register
from sizewise.routers.features import FEATURE_NAMES, text_features

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path

TARGETS = ("gain", "difficulty")


def _features(prompts: Sequence[str], embedding: str) -> np.ndarray:
    texts = check_prompts(prompts)
    return np.hstack([embed_prompts(texts, embedding), text_features(texts)]).astype(np.float64)


@register
class GBDTRouter(Router):
    """Gradient-boosted trees (LightGBM) predicting the strong model's gain."""

    name = "gbdt"

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        seed: int = 0,
        embedding: str = "minilm",
        target: str = "gain",
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed
        self.embedding = embedding
        self.target = target

    def _check_params(self) -> None:
        check_number(self.name, "n_estimators", self.n_estimators, 1, integer=True)
        check_number(self.name, "learning_rate", self.learning_rate, 0, strict=True)
        check_number(self.name, "num_leaves", self.num_leaves, 2, integer=True)
        check_number(self.name, "min_child_samples", self.min_child_samples, 0, integer=True)
        check_seed(self.name, self.seed)
        if self.target not in TARGETS:
            raise ConfigError(f"gbdt: target must be one of {', '.join(TARGETS)}, got {self.target!r}")

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        import lightgbm as lgb

        self._check_params()
        dim = embedding_dim(check_embedding(self.embedding))
        self.weak_, self.strong_, texts, q_weak, q_strong = pair_outcomes(table, weak, strong)
        x = _features(texts, self.embedding)
        params = {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": min(self.min_child_samples, max(len(texts) // 4, 1)),
            "feature_fraction": 0.5,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,  # LightGBM threads thrash on small, shared machines
            "verbose": -1,
        }
        data = lgb.Dataset(
            x, label=self._label(table, q_weak, q_strong), feature_name=[f"e{i}" for i in range(dim)] + FEATURE_NAMES
        )
        self.model_string_ = lgb.train(params, data, num_boost_round=self.n_estimators).model_to_string()
        self.forest_ = Forest(self.model_string_)
        self.fitted_ = True
        return self

    def _label(self, table: OutcomeTable, q_weak: np.ndarray, q_strong: np.ndarray) -> np.ndarray:
        if self.target == "gain":
            return q_strong - q_weak
        both = ~(np.isnan(table.column(self.weak_)) | np.isnan(table.column(self.strong_)))
        return 1.0 - np.nanmean(table.quality[both], axis=1)  # the pair's qualities are known on these rows

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        self.check_fitted()
        x = _features(prompts, self.embedding)
        if len(x) == 0:
            return np.zeros(0)
        return self.forest_.predict(x)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {**pair_meta(self), "booster": self.model_string_}, {}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        set_pair_meta(self, meta)
        text = meta["booster"]
        if not isinstance(text, str):
            raise ValueError("booster is not a LightGBM model string")
        self.forest_ = Forest(text)  # raises ValueError on a damaged string
        self.model_string_ = text
        if self.forest_.n_features != embedding_dim(self.embedding) + len(FEATURE_NAMES):
            raise ValueError(f"LightGBM model has {self.forest_.n_features} features")
