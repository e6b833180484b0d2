"""Routers that look up similar past prompts: ``sw-ranking`` (RouteLLM's similarity-weighted
ranking, on local embeddings) and ``knn`` (mean outcome of the k nearest prompts).

Both keep the training prompts' embeddings (float32, so a loaded router scores exactly as the saved
one) and their outcome rows, so they also predict a quality for every model in the table
(``predict_quality``).
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
    embed_prompts,
    embedding_dim,
    pair_outcomes,
)
from sizewise.routers.base import Router, register
from sizewise.routers.prefix import learn_shared, readable, shared_from_meta, shared_to_meta

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path

_QUERY_CHUNK = 1024


class _NeighbourRouter(Router):
    """Fit stores embeddings and outcomes; subclasses define the neighbour weights."""

    embedding: str
    #: Prompt text most training prompts shared, dropped before embedding (None: a file from before).
    shared_: tuple[str, str] | None

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        self._check_params()
        check_embedding(self.embedding)
        self.weak_, self.strong_, _, _, _ = pair_outcomes(table, weak, strong)
        keep = ~np.all(np.isnan(table.quality), axis=1)
        texts = [t for t, k in zip(table.texts, keep, strict=True) if k]
        self.shared_ = learn_shared(texts)  # a shared system prompt / few-shot block must not blind the encoder
        self.embeddings_ = embed_prompts(readable(texts, self.shared_, self.embedding), self.embedding)
        self.quality_ = np.asarray(table.quality[keep], dtype=np.float32)
        self.models_ = list(table.models)
        self.fitted_ = True
        return self

    def _weights(self, sims: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_quality(self, prompts: Sequence[str]) -> np.ndarray:
        """Predicted quality of every model in ``models_`` for each prompt: shape ``(n, len(models_))``."""
        self.check_fitted()
        queries = embed_prompts(readable(prompts, self.shared_, self.embedding), self.embedding)
        out = np.zeros((len(queries), len(self.models_)), dtype=np.float64)
        known = ~np.isnan(self.quality_)
        filled = np.where(known, self.quality_, 0.0)
        for start in range(0, len(queries), _QUERY_CHUNK):
            weights = self._weights(queries[start : start + _QUERY_CHUNK] @ self.embeddings_.T)
            # Per model, average only over neighbours where that model's outcome is known.
            out[start : start + _QUERY_CHUNK] = (weights @ filled) / np.maximum(weights @ known, 1e-12)
        return out

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        quality = self.predict_quality(prompts)
        return quality[:, self.models_.index(self.strong_)] - quality[:, self.models_.index(self.weak_)]

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"weak": self.weak_, "strong": self.strong_, "models": self.models_, **shared_to_meta(self.shared_)}
        return meta, {"embeddings": self.embeddings_, "quality": self.quality_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.models_ = [str(m) for m in meta["models"]]
        self.weak_, self.strong_ = str(meta["weak"]), str(meta["strong"])
        self.shared_ = shared_from_meta(meta)
        self.embeddings_ = array(arrays, "embeddings", (None, embedding_dim(self.embedding))).astype(np.float32)
        self.quality_ = array(arrays, "quality", (len(self.embeddings_), len(self.models_)), finite=False)
        self.quality_ = self.quality_.astype(np.float32)
        if self.weak_ not in self.models_ or self.strong_ not in self.models_:
            raise ValueError("weak/strong model not among the saved models")


@register
class SWRankingRouter(_NeighbourRouter):
    """RouteLLM's similarity-weighted ranking: every past prompt votes with weight
    ``gamma ** (10 * sim / max_sim)``, so the closest prompts dominate but all count."""

    name = "sw-ranking"

    def __init__(self, gamma: float = 10.0, embedding: str = "minilm") -> None:
        self.gamma = gamma
        self.embedding = embedding

    def _check_params(self) -> None:
        check_number(self.name, "gamma", self.gamma, 1, strict=True)

    def _weights(self, sims: np.ndarray) -> np.ndarray:
        top = np.maximum(sims.max(axis=1, keepdims=True), 1e-6)
        # gamma ** (10 s / top), shifted by its maximum so it cannot overflow.
        return np.exp(np.log(self.gamma) * 10.0 * (sims / top - 1.0))


@register
class KNNRouter(_NeighbourRouter):
    """Mean outcome of the ``k`` most similar past prompts, weighted by similarity."""

    name = "knn"

    def __init__(self, k: int = 100, embedding: str = "minilm") -> None:
        self.k = k
        self.embedding = embedding

    def _check_params(self) -> None:
        check_number(self.name, "k", self.k, 1, integer=True)

    def _weights(self, sims: np.ndarray) -> np.ndarray:
        k = min(self.k, sims.shape[1])
        if k <= 0:
            raise DataError("knn: no stored prompts")
        kth = np.partition(sims, sims.shape[1] - k, axis=1)[:, sims.shape[1] - k][:, None]
        return np.where(sims >= kth, np.maximum(sims, 0.0) + 1e-3, 0.0)
