"""``mf``: matrix factorisation of prompt x model quality.

Predicted quality of model m on prompt x is ``sigmoid(b_m + v_m . (P e(x)))``: ``e(x)`` is the
prompt's embedding, ``P`` (rank x embedding width) a projection shared by all models, ``v_m`` and ``b_m`` the
model's factors. One router therefore serves every model it was trained on, and
:meth:`MFRouter.add_model` fits a new model's ``(v, b)`` from a few hundred labelled outcomes with
``P`` frozen. (RouteLLM's MF scores a model pair the same way but needs OpenAI embeddings.)
Trained with full-batch Adam on soft-label cross-entropy over the known cells, in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from sizewise.errors import DataError
from sizewise.routers._learned import (
    array,
    check_embedding,
    check_number,
    check_prompts,
    check_seed,
    embed_prompts,
    embedding_dim,
    pair_outcomes,
    sigmoid,
)
from sizewise.routers.base import Router, register

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path


def _adam(params: dict[str, np.ndarray], grad_fn: Any, steps: int, lr: float) -> None:
    """Minimise in place with Adam; ``grad_fn(params) -> dict of gradients``."""
    m = {k: np.zeros_like(v) for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in params.items()}
    for t in range(1, steps + 1):
        grads = grad_fn(params)
        for k, g in grads.items():
            m[k] = 0.9 * m[k] + 0.1 * g
            s[k] = 0.999 * s[k] + 0.001 * g * g
            params[k] -= lr * (m[k] / (1 - 0.9**t)) / (np.sqrt(s[k] / (1 - 0.999**t)) + 1e-8)


@register
class MFRouter(Router):
    """Low-rank prompt x model quality model on local embeddings; N-model via ``predict_quality``."""

    name = "mf"

    def __init__(
        self,
        rank: int = 32,
        l2: float = 1e-4,
        steps: int = 400,
        lr: float = 0.01,
        seed: int = 0,
        embedding: str = "minilm",
    ) -> None:
        self.rank = rank
        self.l2 = l2
        self.steps = steps
        self.lr = lr
        self.seed = seed
        self.embedding = embedding

    def _check_params(self) -> None:
        check_number(self.name, "rank", self.rank, 1, integer=True)
        check_number(self.name, "steps", self.steps, 1, integer=True)
        check_number(self.name, "l2", self.l2, 0)
        check_number(self.name, "lr", self.lr, 0, strict=True)
        check_seed(self.name, self.seed)

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        self._check_params()
        check_embedding(self.embedding)
        self.weak_, self.strong_, _, _, _ = pair_outcomes(table, weak, strong)
        keep = ~np.all(np.isnan(table.quality), axis=1)
        x = embed_prompts([t for t, k in zip(table.texts, keep, strict=True) if k], self.embedding).astype(np.float64)
        quality = np.asarray(table.quality[keep], dtype=np.float64)
        known = (~np.isnan(quality)).astype(np.float64)
        target = np.nan_to_num(quality)
        rng = np.random.default_rng(self.seed)
        n_models = quality.shape[1]
        # A model with no known outcome starts (and stays, it gets no gradient) at 0.5, not NaN.
        sums, counts = np.nansum(quality, axis=0), known.sum(axis=0)
        means = np.clip(np.divide(sums, counts, out=np.full(n_models, 0.5), where=counts > 0), 1e-3, 1 - 1e-3)
        params = {
            "P": rng.normal(0, 1.0 / np.sqrt(x.shape[1]), (self.rank, x.shape[1])),
            "V": rng.normal(0, 0.1, (n_models, self.rank)),
            "b": np.log(means / (1 - means)),
        }
        count = max(known.sum(), 1.0)

        def grads(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            z = x @ p["P"].T  # (n, rank)
            err = (sigmoid(z @ p["V"].T + p["b"]) - target) * known / count  # d(mean CE)/d(logit)
            dz = err @ p["V"]
            return {
                "P": dz.T @ x + self.l2 * p["P"],
                "V": err.T @ z + self.l2 * p["V"],
                "b": err.sum(axis=0),
            }

        _adam(params, grads, self.steps, self.lr)
        self.P_, self.V_, self.b_ = params["P"], params["V"], params["b"]
        self.models_ = list(table.models)
        self.fitted_ = True
        return self

    def predict_quality(self, prompts: Sequence[str]) -> np.ndarray:
        """Predicted quality of every model in ``models_``: shape ``(n, len(models_))``."""
        self.check_fitted()
        z = embed_prompts(prompts, self.embedding).astype(np.float64) @ self.P_.T
        return sigmoid(z @ self.V_.T + self.b_)

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        quality = self.predict_quality(prompts)
        return quality[:, self.models_.index(self.strong_)] - quality[:, self.models_.index(self.weak_)]

    def add_model(self, model: str, prompts: Sequence[str], quality: Sequence[float], C: float = 1.0) -> Self:
        """Add (or refit) ``model`` from its outcomes on ``prompts``, keeping the prompt projection fixed.

        A few hundred outcomes are enough: only ``rank + 1`` numbers are learned.
        """
        from sklearn.linear_model import LogisticRegression

        self.check_fitted()
        texts = check_prompts(prompts)
        q = np.asarray(quality, dtype=np.float64)
        if q.shape != (len(texts),) or np.isnan(q).any() or (q < 0).any() or (q > 1).any():
            raise DataError(f"add_model: need one quality in [0, 1] per prompt ({len(texts)} prompts)")
        z = embed_prompts(texts, self.embedding).astype(np.float64) @ self.P_.T
        if np.all(q == q[0]):
            v, b = np.zeros(self.rank), float(np.log(np.clip(q[0], 1e-3, 1 - 1e-3) / np.clip(1 - q[0], 1e-3, 1 - 1e-3)))
        else:
            clf = LogisticRegression(C=C, max_iter=1000)
            clf.fit(np.vstack([z, z]), np.r_[np.ones(q.size), np.zeros(q.size)], sample_weight=np.r_[q, 1 - q] + 1e-9)
            v, b = clf.coef_[0], float(clf.intercept_[0])
        if model in self.models_:
            j = self.models_.index(model)
            self.V_[j], self.b_[j] = v, b
        else:
            self.models_.append(model)
            self.V_ = np.vstack([self.V_, v])
            self.b_ = np.r_[self.b_, b]
        return self

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"weak": self.weak_, "strong": self.strong_, "models": self.models_}
        return meta, {"P": self.P_, "V": self.V_, "b": self.b_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.models_ = [str(m) for m in meta["models"]]
        self.weak_, self.strong_ = str(meta["weak"]), str(meta["strong"])
        if self.weak_ not in self.models_ or self.strong_ not in self.models_:
            raise ValueError("weak/strong model not among the saved models")
        self.P_ = array(arrays, "P", (self.rank, embedding_dim(self.embedding))).astype(np.float64)
        self.V_ = array(arrays, "V", (len(self.models_), self.rank)).astype(np.float64)
        self.b_ = array(arrays, "b", (len(self.models_),)).astype(np.float64)
