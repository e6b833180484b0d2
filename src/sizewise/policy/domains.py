"""Domain routing: named routes from the catalog's ``routes:`` send a prompt to vertical models
(a code model for code, a medical model for clinical questions) before the size decision.

A route is defined by example prompts (and optionally a description, used as one more example).
Its score mixes a similarity to the examples with a classifier fitted on them. The similarity has two
views of the examples, each scored as
``centroid_weight * cos(prompt, route centroid) + (1 - centroid_weight) * mean of the k nearest``:

* meaning: local all-MiniLM-L6-v2 embeddings (:func:`sizewise.embedding.embed`);
* words: TF-IDF of word uni- and bigrams, fitted on the routes' examples when the router is built
  (catches the vocabulary a domain shares, which a 256-token sentence embedding blurs).

The similarity is ``(1 - word_weight) * meaning + word_weight * words``. The classifier is a
multinomial logistic regression on the same two views (embedding and TF-IDF side by side), fitted on
the examples when the router is built (two routes at least); its probability of the route, rescaled so
that chance (1 / routes) is 0, is mixed in:
``score = (1 - classifier_weight) * similarity + classifier_weight * probability``. The best route
wins if its score reaches the route's ``threshold`` (or the router's default). The defaults are chosen
on held-out data by ``bench/domains.py`` (MMLU-Pro categories, see docs/results.md). Everything is
fitted once at construction; matching a prompt is one embedding and a few small products.

:class:`DomainFilter` runs after the hard constraints: it keeps only the matched route's models,
so the policy then makes its size decision among the models that serve that domain. When none of the
route's models survived the hard constraints, it keeps every candidate and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np

from sizewise.catalog.schema import ModelSpec, RouteSpec
from sizewise.checks import check_number
from sizewise.core.decision import FilterReport
from sizewise.core.text import last_user_text
from sizewise.errors import ConfigError, DataError
from sizewise.policy.types import RequestContext

#: Defaults chosen by ``bench/domains.py`` (30 examples per route) on the calibration part of
#: held-out MMLU-Pro and off-domain prompts; the threshold is the one balanced between in-domain and
#: off-domain accuracy, so a prompt that fits no route stays unrouted. A route's ``threshold`` overrides it.
DEFAULT_THRESHOLD = 0.34
DEFAULT_K = 1
DEFAULT_CENTROID_WEIGHT = 0.75
DEFAULT_WORD_WEIGHT = 0.35
DEFAULT_CLASSIFIER_WEIGHT = 0.25
DEFAULT_CLASSIFIER_C = 100.0

Embedder = Callable[[Sequence[str]], np.ndarray]


def _default_embed(texts: Sequence[str]) -> np.ndarray:
    from sizewise.embedding import embed

    return embed(texts)


@dataclass
class RouteMatch:
    """Which route a prompt hit (None: no route) and why."""

    route: str | None
    score: float
    threshold: float
    scores: dict[str, float] = field(default_factory=dict)
    #: Up to three nearest examples of the best route, with their similarity.
    nearest: list[tuple[str, float]] = field(default_factory=list)
    #: The best route's score split into its parts ("meaning", "words", "classifier" probability).
    parts: dict[str, float] = field(default_factory=dict)

    def reason(self) -> str:
        """One line: the route (or none), its similarity (and parts) and the threshold."""
        best = max(self.scores, key=lambda name: self.scores[name]) if self.scores else None
        detail = f" ({', '.join(f'{k} {v:.3f}' for k, v in self.parts.items())})" if self.parts else ""
        if self.route is None:
            if best is None:
                return "no routes defined"
            return f"no route: best {best!r} score {self.score:.3f}{detail} < threshold {self.threshold:.3f}"
        return f"route {self.route!r}: score {self.score:.3f}{detail} >= threshold {self.threshold:.3f}"


def _check_routes(routes: Sequence[RouteSpec]) -> list[RouteSpec]:
    """The routes as a list; a :class:`ConfigError` for an item that is not a route or a name used twice."""
    items = list(routes)
    seen: set[str] = set()
    for route in items:
        if not isinstance(route, RouteSpec):
            raise ConfigError(f"domain routes must be RouteSpec objects, got {type(route).__name__}")
        if route.name in seen:
            raise ConfigError(f"duplicate route name {route.name!r}")
        seen.add(route.name)
    return items


def _check_texts(texts: Sequence[str]) -> list[str]:
    """The prompts as a list; a :class:`DataError` for a bare string, a non-string or an empty prompt."""
    if isinstance(texts, str | bytes):
        raise DataError("domain routing takes a list of prompts, not a single string (use match_one)")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise DataError(f"prompt {i} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise DataError(f"prompt {i} is empty: there is nothing to match a route on")
    return items


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _dense(matrix: Any) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


class _View:
    """One representation of the examples (embeddings, or sparse TF-IDF rows): per-route centroid + k nearest."""

    def __init__(self, vectors: Any, owner: np.ndarray, n_routes: int) -> None:
        # TF-IDF stays sparse: a dense copy of thousands of examples x a bigram vocabulary is gigabytes.
        self.vectors = vectors.astype(np.float32)
        self.owner = owner
        self.slices = [np.flatnonzero(owner == j) for j in range(n_routes)]
        means = [_dense(vectors[s].mean(axis=0)).reshape(-1) for s in self.slices]
        self.centroids = _unit_rows(np.stack(means).astype(np.float32))

    def scores(self, queries: Any, k: int, centroid_weight: float) -> tuple[np.ndarray, np.ndarray]:
        """Route scores ``(n, routes)`` and per-example similarities ``(n, examples)``."""
        sims = _dense(queries @ self.vectors.T)
        out = np.empty((queries.shape[0], len(self.slices)), dtype=np.float32)
        for j, rows in enumerate(self.slices):
            part = sims[:, rows]
            kk = min(k, part.shape[1])
            out[:, j] = np.partition(part, part.shape[1] - kk, axis=1)[:, -kk:].mean(axis=1)
        if centroid_weight:
            out = centroid_weight * _dense(queries @ self.centroids.T) + (1 - centroid_weight) * out
        return out, sims


def _fit_classifier(vectors: np.ndarray, words: Any, owner: np.ndarray, c: float) -> Any:
    """Multinomial logistic regression on embedding and TF-IDF side by side (None: fewer than 2 routes)."""
    if len(np.unique(owner)) < 2:
        return None
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(_features(vectors, words), owner)


def _features(vectors: np.ndarray, words: Any) -> Any:
    from scipy import sparse

    dense = sparse.csr_matrix(vectors)
    return dense if words is None else sparse.hstack([dense, words], format="csr")


class DomainRouter:
    """Match prompts to routes: similarity (embeddings + TF-IDF words) mixed with a classifier's probability."""

    def __init__(
        self,
        routes: Sequence[RouteSpec],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        k: int = DEFAULT_K,
        centroid_weight: float = DEFAULT_CENTROID_WEIGHT,
        word_weight: float = DEFAULT_WORD_WEIGHT,
        classifier_weight: float = DEFAULT_CLASSIFIER_WEIGHT,
        classifier_c: float = DEFAULT_CLASSIFIER_C,
        embedder: Embedder | None = None,
    ) -> None:
        check_number("domain router", "threshold", threshold, -1, maximum=1)
        check_number("domain router", "k", k, 1, integer=True)
        weights = {
            "centroid_weight": centroid_weight,
            "word_weight": word_weight,
            "classifier_weight": classifier_weight,
        }
        for name, weight in weights.items():
            check_number("domain router", name, weight, 0, maximum=1)
        check_number("domain router", "classifier_c", classifier_c, 0, strict=True)
        if embedder is not None and not callable(embedder):
            raise ConfigError(f"domain router: embedder must be callable, got {type(embedder).__name__}")
        self.routes = _check_routes(routes)
        self.threshold = threshold
        self.k = k
        self.centroid_weight = centroid_weight
        self.word_weight = word_weight
        self.classifier_weight = classifier_weight
        self.classifier_c = classifier_c
        self._embed = embedder or _default_embed
        self._texts: list[str] = []
        owner: list[int] = []
        for j, route in enumerate(self.routes):
            examples = list(route.examples) + ([route.description] if route.description else [])
            self._texts.extend(examples)
            owner.extend([j] * len(examples))
        self._owner = np.asarray(owner, dtype=np.int64)
        self._meaning: _View | None = None
        self._words: _View | None = None
        self._tfidf: Any = None
        self._classifier: Any = None
        if not self._texts:
            return
        vectors = np.asarray(self._embed(self._texts), dtype=np.float32)
        self._meaning = _View(vectors, self._owner, len(self.routes))
        words = self._fit_words() if word_weight > 0 or classifier_weight > 0 else None
        if words is not None and word_weight > 0:
            self._words = _View(words, self._owner, len(self.routes))
        if classifier_weight > 0:
            self._classifier = _fit_classifier(vectors, words, self._owner, classifier_c)

    def _fit_words(self) -> Any:
        """The examples' TF-IDF matrix (sparse), or None when no example has a word."""
        # Imported here: scikit-learn costs ~0.5 s to import and only routers with routes need it.
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), dtype=np.float32)
        try:
            matrix = tfidf.fit_transform(self._texts)
        except ValueError:  # no word of two letters or more in any example: meaning only
            return None
        self._tfidf = tfidf
        return matrix

    def _score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Score ``(n, routes)``, per-example similarity ``(n, examples)`` and the score's parts."""
        assert self._meaning is not None
        queries = np.asarray(self._embed(list(texts)), dtype=np.float32)
        meaning, example_sims = self._meaning.scores(queries, self.k, self.centroid_weight)
        parts = {"meaning": meaning}
        score = meaning
        words_q: Any = self._tfidf.transform(list(texts)) if self._tfidf is not None else None
        if self._words is not None:
            words, word_sims = self._words.scores(words_q, self.k, self.centroid_weight)
            w = self.word_weight
            parts["words"] = words
            score, example_sims = (1 - w) * meaning + w * words, (1 - w) * example_sims + w * word_sims
        if self._classifier is not None:
            proba = np.zeros_like(score)
            proba[:, self._classifier.classes_] = self._classifier.predict_proba(_features(queries, words_q))
            # Above chance: a prompt that fits no route gets ~1/routes everywhere, which must score ~0
            # whatever the number of routes (with two routes a raw probability never drops below 0.5).
            chance = 1 / len(self.routes)
            proba = np.clip((proba - chance) / (1 - chance), 0.0, 1.0)
            parts["classifier"] = proba
            score = (1 - self.classifier_weight) * score + self.classifier_weight * proba
        return score, example_sims, parts

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """Route score of each text, shape ``(len(texts), len(routes))`` (what the threshold applies to)."""
        texts = _check_texts(texts)
        if not texts or self._meaning is None:
            return np.zeros((len(texts), len(self.routes)), dtype=np.float32)
        return self._score(texts)[0]

    def match(self, texts: Sequence[str]) -> list[RouteMatch]:
        """The route each text hits (or none), with every route's similarity and the nearest examples."""
        texts = _check_texts(texts)
        if not texts:
            return []
        if self._meaning is None:
            return [RouteMatch(None, float("nan"), self.threshold) for _ in texts]
        sims, example_sims, parts_of = self._score(texts)
        out = []
        for i, row in enumerate(sims):
            best = int(np.argmax(row))
            route = self.routes[best]
            threshold = route.threshold if route.threshold is not None else self.threshold
            score = float(row[best])
            parts = {name: float(values[i, best]) for name, values in parts_of.items()}
            rows = np.flatnonzero(self._owner == best)
            order = rows[np.argsort(-example_sims[i, rows])[:3]]
            out.append(
                RouteMatch(
                    route.name if score >= threshold else None,
                    score,
                    threshold,
                    {r.name: float(s) for r, s in zip(self.routes, row, strict=True)},
                    [(self._texts[j], float(example_sims[i, j])) for j in order],
                    parts,
                )
            )
        return out

    def match_one(self, text: str) -> RouteMatch:
        """:meth:`match` for one text."""
        return self.match([text])[0]


def calibrate_threshold(
    sims: np.ndarray, labels: Sequence[int | None], grid: Sequence[float] | None = None, *, balanced: bool = False
) -> tuple[float, float]:
    """The threshold maximising routing accuracy on held-out data, and that accuracy.

    ``sims``: route similarities ``(n, routes)`` (:meth:`DomainRouter.similarities`); ``labels``: the
    correct route index of each prompt, or None for a prompt that should hit no route. A prompt is
    right when its best route is its label and clears the threshold, or when its label is None and
    the best similarity stays below it. Ties go to the lowest threshold. ``balanced``: maximise the
    mean of in-domain and off-domain accuracy instead (so a few off-domain prompts still count).
    """
    sims, labels, values = _check_calibration(sims, labels, grid)
    best_idx = sims.argmax(axis=1)
    best = sims.max(axis=1)
    in_domain = np.array([label is not None for label in labels])
    correct_route = np.array([label is not None and label == i for label, i in zip(labels, best_idx, strict=True)])
    scores = []
    for t in values:
        right = np.where(in_domain, correct_route & (best >= t), best < t)
        if balanced and in_domain.any() and (~in_domain).any():
            scores.append(float((right[in_domain].mean() + right[~in_domain].mean()) / 2))
        else:
            scores.append(float(right.mean()))
    i = int(np.argmax(scores))
    return float(values[i]), scores[i]


def _check_calibration(
    sims: object, labels: Sequence[int | None], grid: Sequence[float] | None
) -> tuple[np.ndarray, list[int | None], np.ndarray]:
    """Checked ``(sims, labels, grid)`` for :func:`calibrate_threshold`; a :class:`DataError` naming the problem."""
    try:
        matrix = np.asarray(sims, dtype=float)
    except (TypeError, ValueError):
        raise DataError("route similarities must be a numeric array of shape (prompts, routes)") from None
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise DataError(f"route similarities must have shape (prompts, routes), at least 1 x 1; got {matrix.shape}")
    if np.isnan(matrix).any():
        raise DataError("route similarities contain NaN")
    items = [] if isinstance(labels, str | bytes) else list(labels)
    if len(items) != len(matrix):
        raise DataError(f"need one label per prompt: {len(matrix)} rows of similarities, {len(items)} labels")
    for label in items:
        ok = label is None or (isinstance(label, Integral) and not isinstance(label, bool))
        if not ok or (label is not None and not 0 <= label < matrix.shape[1]):
            raise DataError(f"a label is a route index in 0..{matrix.shape[1] - 1} or None, got {label!r}")
    if grid is None:
        return matrix, items, np.round(np.arange(0.0, 1.0, 0.01), 2)
    try:
        values = np.asarray(grid, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise DataError("the threshold grid must be a list of numbers") from None
    if values.size == 0 or np.isnan(values).any():
        raise DataError("the threshold grid must hold at least one number, and no NaN")
    return matrix, items, values


class DomainFilter:
    """Keep only the matched route's models (soft: keeps everything when none of them is left)."""

    name = "domain"
    #: Matching embeds the prompt (MiniLM, tens of ms): off the event loop.
    blocking = True

    def __init__(self, router: DomainRouter, models: Sequence[ModelSpec]) -> None:
        self.router = router
        self._names = {spec.name for spec in models}
        self._route_models = {route.name: set(route.models) for route in router.routes}

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        if ctx.model_field in self._names:
            return candidates, report  # the client named a model: no routing
        text = last_user_text(ctx.messages) or ctx.text
        if not text.strip():
            return candidates, report  # nothing to match a route on (an image-only message, say)
        match = self.router.match_one(text)
        ctx.extras["domain"] = {"route": match.route, "similarity": round(match.score, 4)}
        if match.route is None:
            return candidates, report
        members = self._route_models[match.route]
        kept = [spec for spec in candidates if spec.name in members]
        if not kept:
            report.note = f"{match.reason()}; none of its models passed the earlier filters, route ignored"
            return candidates, report
        report.note = match.reason()
        for spec in candidates:
            if spec.name not in members:
                report.removed[spec.name] = f"not a model of route {match.route!r}"
        return kept, report
