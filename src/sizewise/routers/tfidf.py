"""``tfidf-logreg``: TF-IDF word n-grams + logistic regression, the simplest learned router.

Label (RouteLLM's "strong wins"): 1 when the strong model's quality is strictly higher than the weak
model's on that prompt, 0 otherwise. Ties (both right, both wrong, equal judge scores) count as 0: the
weak model was good enough, so paying for the strong one bought nothing. The score is the predicted
probability that the strong model wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from sizewise.errors import DataError
from sizewise.routers._learned import (
    array,
    check_number,
    check_prompts,
    check_seed,
    pair_meta,
    pair_outcomes,
    set_pair_meta,
    sigmoid,
)
from sizewise.routers.base import Router, register

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path


@register
class TfidfLogRegRouter(Router):
    """TF-IDF (1..``ngram_max``-grams, sublinear tf, at most ``max_features`` terms) + L2 logistic regression."""

    name = "tfidf-logreg"

    def __init__(
        self, C: float = 1.0, max_features: int = 50_000, ngram_max: int = 2, min_df: int = 1, seed: int = 0
    ) -> None:
        self.C = C
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.seed = seed

    def _vectorizer(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(
            ngram_range=(1, self.ngram_max),
            max_features=self.max_features,
            min_df=self.min_df,
            sublinear_tf=True,
            dtype=np.float64,
        )

    def _check_params(self) -> None:
        check_number(self.name, "C", self.C, 0, strict=True)
        for param in ("max_features", "ngram_max", "min_df"):
            check_number(self.name, param, getattr(self, param), 1, integer=True)
        check_seed(self.name, self.seed)

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        """Learn P(strong model strictly better | prompt) on the prompts where both qualities are known."""
        from sklearn.linear_model import LogisticRegression

        self._check_params()
        self.weak_, self.strong_, texts, q_weak, q_strong = pair_outcomes(table, weak, strong)
        labels = (q_strong > q_weak).astype(int)
        vectorizer = self._vectorizer()
        try:
            features = vectorizer.fit_transform(texts)
        except ValueError as error:  # no word of two letters or more (or none in min_df prompts)
            raise DataError(f"{self.name}: no usable words in the table's prompts ({error})") from None
        self.vocabulary_ = [term for term, _ in sorted(vectorizer.vocabulary_.items(), key=lambda item: item[1])]
        self.idf_ = np.asarray(vectorizer.idf_, dtype=float)
        if labels.min() == labels.max():
            # one class only: a constant score (the log-odds of a smoothed base rate)
            rate = (labels.sum() + 0.5) / (labels.size + 1.0)
            self.coef_ = np.zeros(len(self.vocabulary_))
            self.intercept_ = float(np.log(rate / (1 - rate)))
        else:
            model = LogisticRegression(C=self.C, max_iter=1000, random_state=self.seed).fit(features, labels)
            self.coef_ = np.asarray(model.coef_[0], dtype=float)
            self.intercept_ = float(model.intercept_[0])
        self.fitted_ = True
        return self

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """Predicted probability that the strong model beats the weak one."""
        self.check_fitted()
        items = check_prompts(prompts)
        if not items:
            return np.zeros(0)
        logits = self._fitted_vectorizer().transform(items) @ self.coef_ + self.intercept_
        return np.asarray(sigmoid(np.asarray(logits, dtype=float)))

    def _fitted_vectorizer(self) -> Any:
        # Rebuilding the 50k-term vocabulary dict took ~10 ms per call; build it once per fitted state.
        cached = getattr(self, "_vectorizer_cache", None)
        if cached is not None and cached[0] is self.idf_:
            return cached[1]
        vectorizer = self._vectorizer()
        vectorizer.vocabulary_ = {term: i for i, term in enumerate(self.vocabulary_)}
        vectorizer.idf_ = self.idf_
        self._vectorizer_cache = (self.idf_, vectorizer)
        return vectorizer

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {**pair_meta(self), "vocabulary": self.vocabulary_, "intercept": self.intercept_}
        return meta, {"idf": self.idf_, "coef": self.coef_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        set_pair_meta(self, meta)
        self.vocabulary_ = [str(term) for term in meta["vocabulary"]]
        self.intercept_ = float(meta["intercept"])
        n = len(self.vocabulary_)
        self.idf_ = array(arrays, "idf", (n,)).astype(float)
        self.coef_ = array(arrays, "coef", (n,)).astype(float)
