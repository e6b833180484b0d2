"""``ensemble``: several learned routers combined into one score.

Every member scores "predicted gain of the strong model over the weak one", but on different scales
(a gain, a win probability) and with partly different errors (embeddings, TF-IDF, text features).
Each member's score is mapped to its quantile in a reference distribution (saved as 1,001 quantiles, so
a prompt's score does not depend on the other prompts of its batch), and the quantiles are combined:

* ``combine="rank-mean"``: the plain mean; the reference is the members' scores on their own training
  prompts. One fit per member.
* ``combine="stack"``: weights from a non-negative least-squares fit of the gain on out-of-fold member
  quantiles (``inner_folds`` folds inside ``fit``, grouped by question or text so a repeated prompt never
  scores itself); the reference is those out-of-fold scores. ``inner_folds + 1`` fits per member.

Saved as one file: the members' own states nested in the JSON part, their arrays prefixed ``m<i>.``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from sizewise.errors import ConfigError, DataError
from sizewise.routers._learned import array, check_embedding, check_number, check_seed, pair_outcomes
from sizewise.routers.base import Router, register, router_class

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path

COMBINES = ("rank-mean", "stack")
#: Quantiles kept per member: enough that interpolation between them keeps the order of new scores.
N_QUANTILES = 1001
_GRID = np.linspace(0.0, 1.0, N_QUANTILES)


def _member(name: str, embedding: str, seed: int) -> Router:
    """A new member router; ``embedding`` and ``seed`` go to the members that take them."""
    if name == EnsembleRouter.name:
        raise ConfigError("ensemble: an ensemble cannot be its own member")
    cls = router_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    params: dict[str, Any] = {}
    if "embedding" in accepted:
        params["embedding"] = embedding
    if "seed" in accepted:
        params["seed"] = seed
    return cls(**params)


def _groups(table: OutcomeTable) -> np.ndarray:
    """Group label per row: the MT-Bench question when there is one, else the prompt text."""
    if "question_id" in table.prompts:
        return table.prompts["question_id"].astype(str).to_numpy()
    return np.asarray(table.texts, dtype=object)


def _quantile_of(scores: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Where each score falls in a reference distribution given by its quantiles, in [0, 1]."""
    return np.interp(np.asarray(scores, dtype=np.float64), quantiles, _GRID)


def _nonnegative_weights(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative least squares of the centred target on the centred features, summing to 1."""
    from scipy.optimize import nnls

    x = features - features.mean(axis=0)
    weights, _ = nnls(x, target - target.mean())
    total = weights.sum()
    # No member helps on held-out prompts (tiny or signal-free tables): fall back to equal weights.
    return weights / total if total > 0 else np.full(features.shape[1], 1.0 / features.shape[1])


@register
class EnsembleRouter(Router):
    """Quantile-mapped member scores, averaged (``rank-mean``) or stacked with non-negative weights."""

    name = "ensemble"

    def __init__(
        self,
        members: Sequence[str] = ("gbdt", "embed-logreg", "knn", "tfidf-logreg"),
        embedding: str = "minilm",
        combine: str = "rank-mean",
        inner_folds: int = 3,
        seed: int = 0,
    ) -> None:
        self.members = members
        self.embedding = embedding
        self.combine = combine
        self.inner_folds = inner_folds
        self.seed = seed

    def _check_params(self) -> None:
        self._member_names()

    def _member_names(self) -> list[str]:
        check_embedding(self.embedding)
        check_seed(self.name, self.seed)
        if self.combine not in COMBINES:
            raise ConfigError(f"ensemble: combine must be one of {', '.join(COMBINES)}, got {self.combine!r}")
        members: Any = self.members
        if isinstance(members, str):
            names = [members]
        elif isinstance(members, Sequence):
            names = list(members)
        else:
            names = []
        if not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"ensemble: members must be a non-empty list of router names, got {self.members!r}")
        check_number(self.name, "inner_folds", self.inner_folds, 2, integer=True)
        return names

    def _new_members(self, names: list[str]) -> list[Router]:
        return [_member(n, self.embedding, self.seed) for n in names]

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        names = self._member_names()
        self.weak_, self.strong_, texts, q_weak, q_strong = pair_outcomes(table, weak, strong)
        known = ~(np.isnan(table.column(self.weak_)) | np.isnan(table.column(self.strong_)))
        if self.combine == "stack":
            oof = self._out_of_fold(table, names, known)
            self.quantiles_ = np.quantile(oof, _GRID, axis=0).T
            features = np.column_stack([_quantile_of(oof[:, i], q) for i, q in enumerate(self.quantiles_)])
            self.weights_ = _nonnegative_weights(features, q_strong - q_weak)
        self.members_ = [m.fit(table, self.weak_, self.strong_) for m in self._new_members(names)]
        if self.combine == "rank-mean":
            # Reference: the members' scores on their own training prompts (no refitting needed).
            own = np.column_stack([m.score(texts) for m in self.members_])
            self.quantiles_ = np.quantile(own, _GRID, axis=0).T
            self.weights_ = np.full(len(names), 1.0 / len(names))
        self.fitted_ = True
        return self

    def _out_of_fold(self, table: OutcomeTable, names: list[str], known: np.ndarray) -> np.ndarray:
        """Member scores of the prompts with both qualities known, each from members not trained on it."""
        groups = _groups(table)
        unique = np.random.default_rng(self.seed).permutation(np.unique(groups[known]))
        if len(unique) < self.inner_folds:
            raise DataError(f"ensemble: {len(unique)} distinct prompts, fewer than inner_folds={self.inner_folds}")
        fold_of = {g: i % self.inner_folds for i, g in enumerate(unique)}
        # Rows with an unknown quality still train the members (N-model ones use them), never the combiner.
        labels = np.array([fold_of.get(g, -1) for g in groups])
        rows = np.arange(len(table))
        scores = np.zeros((len(table), len(names)))
        for fold in range(self.inner_folds):
            test = rows[known & (labels == fold)]
            train = table.subset(rows[labels != fold])
            held_out = [table.texts[i] for i in test]
            for j, member in enumerate(self._new_members(names)):
                scores[test, j] = member.fit(train, self.weak_, self.strong_).score(held_out)
        return scores[known]

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """Weighted mean of the members' score quantiles: in [0, 1], higher needs the strong model more."""
        self.check_fitted()
        out = np.zeros(0)
        for member, quantiles, weight in zip(self.members_, self.quantiles_, self.weights_, strict=True):
            part = weight * _quantile_of(member.score(prompts), quantiles)
            out = part if out.size == 0 else out + part
        return out

    @property
    def models_(self) -> list[str]:
        """The models whose quality :meth:`predict_quality` predicts (those of the N-model members)."""
        return list(self._quality_members()[0][0].models_)

    def _quality_members(self) -> list[tuple[Any, float]]:
        self.check_fitted()
        members = [(m, float(w)) for m, w in zip(self.members_, self.weights_, strict=True) if hasattr(m, "models_")]
        if not members:
            raise ConfigError(
                "ensemble: no member predicts per-model quality; use knn, sw-ranking, embed-logreg, embed-mlp or mf"
            )
        return members

    def predict_quality(self, prompts: Sequence[str]) -> np.ndarray:
        """Weighted mean of the per-model quality predicted by the members that predict it (N-model routing).

        Qualities are averaged as they are (not as quantiles): they share one scale, and a model's
        absolute predicted quality is what the N-model rules compare with a target or a price.
        """
        members = self._quality_members()
        total = sum(w for _, w in members)
        weights = [w / total if total > 0 else 1.0 / len(members) for _, w in members]
        return np.asarray(sum(w * m.predict_quality(prompts) for (m, _), w in zip(members, weights, strict=True)))

    # -- persistence: members' own states nested in this file --------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        members, arrays = [], {"quantiles": self.quantiles_, "weights": self.weights_}
        for i, member in enumerate(self.members_):
            meta, member_arrays = member._state()
            members.append({"name": member.name, "params": member.get_params(), "state": meta})
            arrays.update({f"m{i}.{key}": value for key, value in member_arrays.items()})
        return {"weak": self.weak_, "strong": self.strong_, "members": members}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        names = self._member_names()
        self.weak_, self.strong_ = str(meta["weak"]), str(meta["strong"])
        saved = meta["members"]
        if [m["name"] for m in saved] != names:
            raise ValueError(f"saved members {[m['name'] for m in saved]} are not the parameters' {names}")
        self.members_ = []
        for i, entry in enumerate(saved):
            member = router_class(names[i])(**entry["params"])
            member._check_params()
            if member.get_params().get("embedding", self.embedding) != self.embedding:
                raise ValueError(f"member {names[i]} uses embedding {member.get_params()['embedding']!r}")
            prefix = f"m{i}."
            member._set_state(entry["state"], {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
            member.fitted_ = True
            self.members_.append(member)
        self.quantiles_ = array(arrays, "quantiles", (len(names), N_QUANTILES)).astype(np.float64)
        self.weights_ = array(arrays, "weights", (len(names),)).astype(np.float64)
        if not (np.isfinite(self.quantiles_).all() and np.isfinite(self.weights_).all()):
            raise ValueError("non-finite quantiles or weights")
