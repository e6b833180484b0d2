"""Per-prompt cost of every model, predicted from the prompt: the other half of an N-model decision.

A price sheet gives the mean cost of a model, but what one request costs depends on how much the
model writes, and that varies with the prompt (MMLU-Pro: Gemini-1.5-Pro's 90th-percentile cost per
question is about 9x its 10th, because some questions draw long chains of thought; bench/routers.py). A
router that knows which prompts are expensive for which model can spend where it is cheap.

:class:`CostPredictor` regresses each model's log cost on the prompt embedding and the cheap text
features (ridge, closed form), and predicts ``exp(mean + residual variance / 2)``, the mean of the
log-normal. Pass it to :class:`sizewise.routers.multi.MultiModelChooser` as ``cost_model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from sizewise.errors import ConfigError, DataError, NotFittedError, RouterFileError
from sizewise.routers._learned import array, check_embedding, check_number, check_prompts, embed_prompts, embedding_dim
from sizewise.routers.features import FEATURE_NAMES, text_features
from sizewise.routers.persist import load_bundle, save_bundle

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path

KIND = "cost-model"


def _features(prompts: Sequence[str], embedding: str) -> np.ndarray:
    texts = check_prompts(prompts)
    counts = np.log1p(np.abs(text_features(texts)))  # lengths and counts act multiplicatively on cost
    return np.hstack([embed_prompts(texts, embedding), counts, np.ones((len(texts), 1))]).astype(np.float64)


class CostPredictor:
    """Predicted USD per request of every model in ``models_`` for a prompt (ridge on log cost)."""

    def __init__(self, alpha: float = 1.0, embedding: str = "minilm") -> None:
        self.alpha = alpha
        self.embedding = embedding

    def fit(self, table: OutcomeTable) -> Self:
        """Learn from the table's per-prompt costs (cells with no or non-positive cost are skipped)."""
        check_number("cost model", "alpha", self.alpha, 0, strict=True)
        check_embedding(self.embedding)
        from sizewise.core.table import OutcomeTable  # fitting only: predicting never imports pandas

        if not isinstance(table, OutcomeTable):
            raise DataError(f"fit needs an OutcomeTable, got {type(table).__name__}")
        if table.cost is None:
            raise DataError(f"table {table.name!r} has no costs")
        table.require_nonempty()
        x = _features(table.texts, self.embedding)
        self.models_ = list(table.models)
        self.coef_ = np.zeros((x.shape[1], len(self.models_)))
        self.log_var_ = np.zeros(len(self.models_))
        penalty = self.alpha * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0  # the intercept is not shrunk
        for j, model in enumerate(self.models_):
            cost = np.asarray(table.cost[:, j], dtype=float)
            known = np.isfinite(cost) & (cost > 0)
            if known.sum() < 2:
                raise DataError(f"table {table.name!r}: fewer than 2 known positive costs for {model}")
            xs, ys = x[known], np.log(cost[known])
            self.coef_[:, j] = np.linalg.solve(xs.T @ xs + penalty, xs.T @ ys)
            self.log_var_[j] = float(np.var(ys - xs @ self.coef_[:, j]))
        self.fitted_ = True
        return self

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError("cost model is not fitted: call fit() or load() first")

    def predict(self, prompts: Sequence[str]) -> np.ndarray:
        """USD per request, shape ``(n, len(models_))``."""
        self._check_fitted()
        return np.exp(_features(prompts, self.embedding) @ self.coef_ + self.log_var_ / 2)

    def save(self, path: str | Path) -> Path:
        """Write the fitted model (zip of JSON + npz, no pickle)."""
        self._check_fitted()
        meta = {"params": self.get_params(), "models": self.models_}
        return save_bundle(path, KIND, "ridge-log-cost", meta, {"coef": self.coef_, "log_var": self.log_var_})

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a file written by ``save``; a clear :class:`RouterFileError` for a corrupt or foreign one."""
        _, meta, arrays = load_bundle(path, KIND, "ridge-log-cost")
        try:
            model = cls(**meta["params"])
            check_number("cost model", "alpha", model.alpha, 0, strict=True)
            model.models_ = [str(m) for m in meta["models"]]
            width = embedding_dim(model.embedding) + len(FEATURE_NAMES) + 1
            model.coef_ = array(arrays, "coef", (width, len(model.models_))).astype(np.float64)
            model.log_var_ = array(arrays, "log_var", (len(model.models_),)).astype(np.float64)
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise RouterFileError(f"{path}: cost model file does not match this version ({error})") from None
        model.fitted_ = True
        return model

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (scikit-learn style)."""
        return {"alpha": self.alpha, "embedding": self.embedding}
