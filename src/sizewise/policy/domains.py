"""Domain routing: named routes from the catalog's ``routes:`` send a prompt to vertical models
(a code model for code, a medical model for clinical questions) before the size decision.

A route is defined by example prompts (and optionally a description, used as one more example).
A prompt is embedded locally (:func:`sizewise.embedding.embed`, all-MiniLM-L6-v2); its similarity to
a route is the mean cosine similarity of its ``k`` nearest examples of that route. The best route
wins if that similarity reaches the route's ``threshold`` (or the router's default, calibrated on
held-out data with :func:`calibrate_threshold`; ``bench/domains.py`` measures it on MMLU-Pro).

:class:`DomainFilter` runs after the hard constraints: it keeps only the matched route's models,
so the policy then makes its size decision among the models that serve that domain. When none of the
route's models survived the hard constraints, it keeps every candidate and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sizewise.catalog.schema import ModelSpec, RouteSpec
from sizewise.policy.types import FilterReport, RequestContext

#: Default similarity threshold, from ``bench/domains.py`` (calibrated on held-out MMLU-Pro and
#: off-domain prompts); a route's own ``threshold`` overrides it.
DEFAULT_THRESHOLD = 0.35
DEFAULT_K = 3

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

    def reason(self) -> str:
        """One line: the route (or none), its similarity and the threshold."""
        best = max(self.scores, key=lambda name: self.scores[name]) if self.scores else None
        if self.route is None:
            if best is None:
                return "no routes defined"
            return f"no route: best {best!r} similarity {self.score:.3f} < threshold {self.threshold:.3f}"
        return f"route {self.route!r}: similarity {self.score:.3f} >= threshold {self.threshold:.3f}"


class DomainRouter:
    """Match prompts to routes by embedding similarity (mean of the top-``k`` example similarities)."""

    def __init__(
        self,
        routes: Sequence[RouteSpec],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        k: int = DEFAULT_K,
        embedder: Embedder | None = None,
    ) -> None:
        self.routes = list(routes)
        self.threshold = threshold
        self.k = k
        self._embed = embedder or _default_embed
        self._examples: list[list[str]] = []
        self._vectors: list[np.ndarray] = []
        texts: list[str] = []
        for route in self.routes:
            examples = list(route.examples) + ([route.description] if route.description else [])
            self._examples.append(examples)
            texts.extend(examples)
        if texts:
            vectors = np.asarray(self._embed(texts), dtype=np.float32)
            start = 0
            for examples in self._examples:
                self._vectors.append(vectors[start : start + len(examples)])
                start += len(examples)

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """Route similarity of each text, shape ``(len(texts), len(routes))``."""
        if not texts or not self.routes:
            return np.zeros((len(texts), len(self.routes)), dtype=np.float32)
        queries = np.asarray(self._embed(list(texts)), dtype=np.float32)
        out = np.empty((len(texts), len(self.routes)), dtype=np.float32)
        for j, vectors in enumerate(self._vectors):
            sims = queries @ vectors.T
            k = min(self.k, sims.shape[1])
            top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
            out[:, j] = top.mean(axis=1)
        return out

    def match(self, texts: Sequence[str]) -> list[RouteMatch]:
        """The route each text hits (or none), with every route's similarity."""
        sims = self.similarities(texts)
        out = []
        for row, text in zip(sims, texts, strict=True):
            if not self.routes:
                out.append(RouteMatch(None, float("nan"), self.threshold))
                continue
            best = int(np.argmax(row))
            route = self.routes[best]
            threshold = route.threshold if route.threshold is not None else self.threshold
            score = float(row[best])
            match = RouteMatch(
                route.name if score >= threshold else None,
                score,
                threshold,
                {r.name: float(s) for r, s in zip(self.routes, row, strict=True)},
            )
            match.nearest = self._nearest(text, best)
            out.append(match)
        return out

    def _nearest(self, text: str, index: int) -> list[tuple[str, float]]:
        query = np.asarray(self._embed([text]), dtype=np.float32)[0]
        sims = self._vectors[index] @ query
        order = np.argsort(-sims)[:3]
        return [(self._examples[index][i], float(sims[i])) for i in order]

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
    best_idx = sims.argmax(axis=1)
    best = sims.max(axis=1)
    in_domain = np.array([label is not None for label in labels])
    correct_route = np.array([label is not None and label == i for label, i in zip(labels, best_idx, strict=True)])
    values = np.round(np.arange(0.0, 1.0, 0.01), 2) if grid is None else np.asarray(grid, dtype=float)
    scores = []
    for t in values:
        right = np.where(in_domain, correct_route & (best >= t), best < t)
        if balanced and in_domain.any() and (~in_domain).any():
            scores.append(float((right[in_domain].mean() + right[~in_domain].mean()) / 2))
        else:
            scores.append(float(right.mean()))
    i = int(np.argmax(scores))
    return float(values[i]), scores[i]


def last_user_text(messages: Sequence[dict[str, object]]) -> str:
    """The text of the last user message (the question a domain is judged on)."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
        return str(content or "")
    return ""


class DomainFilter:
    """Keep only the matched route's models (soft: keeps everything when none of them is left)."""

    name = "domain"

    def __init__(self, router: DomainRouter, models: Sequence[ModelSpec]) -> None:
        self.router = router
        self._names = {spec.name for spec in models}
        self._route_models = {route.name: set(route.models) for route in router.routes}

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        if ctx.model_field in self._names:
            return candidates, report  # the client named a model: no routing
        text = last_user_text(ctx.messages) or ctx.text
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
