"""Per-model quality predictors on prompt embeddings: ``embed-logreg`` and ``embed-mlp``.

Both predict a quality for every model of the training table (``predict_quality``), and score a
prompt by the predicted gain of the strong model over the weak one. Prediction is plain numpy
over the saved weights, so loading needs no scikit-learn and takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from sizewise.routers._learned import (
    array,
    check_embedding,
    check_number,
    check_seed,
    embed_prompts,
    embedding_dim,
    pair_outcomes,
    sigmoid,
)
from sizewise.routers.base import Router, register
from sizewise.routers.prefix import learn_shared, readable, shared_from_meta, shared_to_meta

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path


class _PerModelRouter(Router):
    """Shared fit bookkeeping and the two-model score from ``predict_quality``."""

    embedding: str
    #: Prompt text most training prompts shared, dropped before embedding (None: a file from before).
    shared_: tuple[str, str] | None

    def _prepare(self, table: OutcomeTable, weak: str | None, strong: str | None) -> tuple[np.ndarray, np.ndarray]:
        self._check_params()
        check_embedding(self.embedding)
        self.weak_, self.strong_, _, _, _ = pair_outcomes(table, weak, strong)
        keep = ~np.all(np.isnan(table.quality), axis=1)
        self.models_ = list(table.models)
        texts = [t for t, k in zip(table.texts, keep, strict=True) if k]
        self.shared_ = learn_shared(texts)  # a shared system prompt / few-shot block must not blind the encoder
        x = embed_prompts(readable(texts, self.shared_, self.embedding), self.embedding).astype(np.float64)
        return x, np.asarray(table.quality[keep], dtype=np.float64)

    def predict_quality(self, prompts: Sequence[str]) -> np.ndarray:
        """Predicted quality of every model in ``models_``: shape ``(n, len(models_))``."""
        self.check_fitted()
        x = embed_prompts(readable(prompts, self.shared_, self.embedding), self.embedding)
        return self._predict(x.astype(np.float64))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        quality = self.predict_quality(prompts)
        return quality[:, self.models_.index(self.strong_)] - quality[:, self.models_.index(self.weak_)]

    def _meta(self) -> dict[str, Any]:
        return {"weak": self.weak_, "strong": self.strong_, "models": self.models_, **shared_to_meta(self.shared_)}

    def _set_meta(self, meta: dict[str, Any]) -> None:
        self.models_ = [str(m) for m in meta["models"]]
        self.weak_, self.strong_ = str(meta["weak"]), str(meta["strong"])
        self.shared_ = shared_from_meta(meta)
        if self.weak_ not in self.models_ or self.strong_ not in self.models_:
            raise ValueError("weak/strong model not among the saved models")


@register
class EmbedLogRegRouter(_PerModelRouter):
    """One logistic regression per model on the embedding, trained on soft labels (quality in [0, 1])."""

    name = "embed-logreg"

    def __init__(self, C: float = 1.0, embedding: str = "minilm") -> None:
        self.C = C
        self.embedding = embedding

    def _check_params(self) -> None:
        check_number(self.name, "C", self.C, 0, strict=True)

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        from sklearn.linear_model import LogisticRegression

        x, quality = self._prepare(table, weak, strong)
        coef = np.zeros((len(self.models_), x.shape[1]))
        intercept = np.zeros(len(self.models_))
        for j in range(len(self.models_)):
            known = ~np.isnan(quality[:, j])
            q = quality[known, j]
            if q.size == 0:
                continue
            if np.all(q == q[0]):  # one class only: a constant predictor
                intercept[j] = np.log(np.clip(q[0], 1e-3, 1 - 1e-3) / np.clip(1 - q[0], 1e-3, 1 - 1e-3))
                continue
            # Soft labels: each prompt is a positive with weight q and a negative with weight 1 - q.
            xx = np.vstack([x[known], x[known]])
            yy = np.r_[np.ones(q.size), np.zeros(q.size)]
            model = LogisticRegression(C=self.C, max_iter=1000)
            model.fit(xx, yy, sample_weight=np.r_[q, 1 - q] + 1e-9)
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
        self.coef_, self.intercept_ = coef, intercept
        self.fitted_ = True
        return self

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x @ self.coef_.T + self.intercept_)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self._meta(), {"coef": self.coef_, "intercept": self.intercept_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._set_meta(meta)
        self.coef_ = array(arrays, "coef", (len(self.models_), embedding_dim(self.embedding))).astype(np.float64)
        self.intercept_ = array(arrays, "intercept", (len(self.models_),)).astype(np.float64)


@register
class EmbedMLPRouter(_PerModelRouter):
    """A small multi-output MLP (scikit-learn, early stopping) from the embedding to every model's quality."""

    name = "embed-mlp"

    def __init__(self, hidden: int = 128, alpha: float = 1e-3, seed: int = 0, embedding: str = "minilm") -> None:
        self.hidden = hidden
        self.alpha = alpha
        self.seed = seed
        self.embedding = embedding

    def _check_params(self) -> None:
        check_number(self.name, "hidden", self.hidden, 1, integer=True)
        check_number(self.name, "alpha", self.alpha, 0)
        check_seed(self.name, self.seed)

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        from sklearn.neural_network import MLPRegressor

        x, quality = self._prepare(table, weak, strong)
        # Unknown cells get the model's mean (0.5 for a model with no known cell), so they pull the
        # prediction towards it and nothing else. Summed by hand: nanmean warns on an all-NaN column.
        known = ~np.isnan(quality)
        counts = known.sum(axis=0)
        means = np.where(counts > 0, np.where(known, quality, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.5)
        target = np.where(np.isnan(quality), means, quality)
        model = MLPRegressor(
            hidden_layer_sizes=(self.hidden,),
            alpha=self.alpha,
            early_stopping=len(x) >= 50,
            max_iter=300,
            random_state=self.seed,
        )
        model.fit(x, target)
        self.w1_, self.w2_ = model.coefs_
        self.b1_, self.b2_ = model.intercepts_
        self.fitted_ = True
        return self

    def _predict(self, x: np.ndarray) -> np.ndarray:
        hidden = np.maximum(x @ self.w1_ + self.b1_, 0.0)
        out = hidden @ self.w2_ + self.b2_
        return np.clip(out.reshape(len(x), len(self.models_)), 0.0, 1.0)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self._meta(), {"w1": self.w1_, "b1": self.b1_, "w2": self.w2_, "b2": self.b2_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._set_meta(meta)
        m = len(self.models_)
        self.w1_ = array(arrays, "w1", (embedding_dim(self.embedding), self.hidden)).astype(np.float64)
        self.b1_ = array(arrays, "b1", (self.hidden,)).astype(np.float64)
        self.w2_ = array(arrays, "w2", (self.hidden, m)).astype(np.float64)
        self.b2_ = array(arrays, "b2", (m,)).astype(np.float64)
