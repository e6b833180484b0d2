"""The scorer contract: how confident are we that a model's answer is good? A value in [0, 1].

A scorer sees the prompt *and* the answer (a router sees only the prompt). Scorers are
:class:`sizewise.learn.Estimator` objects like the routers (scikit-learn's contract: parameters in
``__init__``, ``fit(answers, correct)`` returns self, learned state ends in ``_``, ``save``/``load``
through :mod:`sizewise.learn.persist`, kind ``"scorer"``). Scorers that need extra model calls (more
samples, a verifier) do them in ``enrich`` so offline evaluation can replay recorded calls and the
gateway can make live ones.

Adding a scorer: one module with a :class:`Scorer` subclass decorated with ``@register``, plus its
module name in ``SCORER_MODULES`` (or, from another package, an entry point in the
``sizewise.scorers`` group).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from sizewise.errors import DataError, RouterFileError
from sizewise.learn.estimator import Estimator
from sizewise.learn.persist import saved_array
from sizewise.learn.registry import Registry

if TYPE_CHECKING:
    from sizewise.backends.base import Backend, ChatRequest

SCORER_MODULES = [
    "sizewise.cascade.scorers.logprob",
    "sizewise.cascade.scorers.consistency",
    "sizewise.cascade.scorers.verifier",
    "sizewise.cascade.scorers.answer_classifier",
]
#: Entry-point group through which other packages add scorers.
ENTRY_POINT_GROUP = "sizewise.scorers"

SCORERS: Registry[Scorer] = Registry("scorer", SCORER_MODULES, ENTRY_POINT_GROUP)
_REGISTRY = SCORERS.classes


@dataclass
class Answer:
    """One model answer as a scorer sees it; optional fields are filled by ``enrich`` or a recorded table."""

    prompt: str
    text: str
    model: str = ""
    logprobs: list[float] | None = None
    #: Extra samples of the same prompt (consistency scorer).
    samples: list[str] | None = None
    #: P("yes") from a verifier model, normalised against "no" (verifier scorer).
    verdict: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> Answer:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def check_answers(answers: Sequence[Answer]) -> list[Answer]:
    """The answers as a list; a :class:`DataError` for anything that is not an :class:`Answer`."""
    items = [] if isinstance(answers, str | bytes) else list(answers)
    if isinstance(answers, str | bytes) or not all(isinstance(a, Answer) for a in items):
        raise DataError("answers must be a list of Answer objects")
    return items


def check_labels(answers: Sequence[Answer], correct: Sequence[float] | np.ndarray) -> tuple[list[Answer], np.ndarray]:
    """Checked ``(answers, labels)`` to fit on: as many labels in [0, 1] as answers, at least one."""
    items = check_answers(answers)
    try:
        labels = np.asarray(correct, dtype=float)
    except (TypeError, ValueError):
        raise DataError("correct must be numbers in [0, 1]") from None
    if not items or labels.shape != (len(items),):
        raise DataError(f"need one label per answer: {len(items)} answers, labels of shape {labels.shape}")
    if np.isnan(labels).any() or (labels < 0).any() or (labels > 1).any():
        raise DataError("correct must lie in [0, 1] (1 right, 0 wrong), with no NaN")
    return items, labels


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: make a scorer available by its ``name``."""
    return SCORERS.register(cls)


def scorer_names() -> list[str]:
    """Every registered scorer name."""
    return SCORERS.names()


def scorer_class(name: str) -> type[Scorer]:
    """The scorer class registered as ``name``."""
    return SCORERS.get(name)


def make_scorer(name: str, **params: Any) -> Scorer:
    """A new scorer by registry name; a :class:`ConfigError` for a parameter it does not take."""
    return SCORERS.make(name, **params)


def load_scorer(path: str | Path) -> Scorer:
    """Load any saved scorer; the file says which class it is."""
    return SCORERS.load(path)


class Scorer(Estimator):
    """Base class. Subclasses set ``name`` and implement ``score`` (and ``fit`` when they learn)."""

    estimator_kind: ClassVar[str] = "scorer"
    #: False for scorers that work without training (consistency, verifier).
    needs_fit: ClassVar[bool] = True
    #: True for scorers whose ``enrich`` calls a model (consistency, verifier): ``collect`` can record those calls.
    calls_models: ClassVar[bool] = False

    def fit(self, answers: Sequence[Answer], correct: Sequence[float] | np.ndarray) -> Self:
        """Learn from answers labelled right (1) or wrong (0). Default: nothing to learn (labels checked)."""
        check_labels(answers, correct)
        self.fitted_ = True
        return self

    @abstractmethod
    def score(self, answers: Sequence[Answer]) -> np.ndarray:
        """Confidence in [0, 1] that each answer is good. Shape ``(len(answers),)``."""

    async def enrich(self, answer: Answer, request: ChatRequest, own: Backend, next_up: Backend | None) -> Answer:
        """Make the extra model calls this scorer needs (live use). Default: none."""
        return answer


def sigmoid(values: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), overflow-safe."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(values, dtype=float)))


class LinearHead:
    """Standardise features, logistic regression; stored as arrays so a saved scorer needs no pickle."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, c: float = 1.0) -> LinearHead:
        """Fit on ``features`` (n, d) and 0/1 ``labels``; a constant label gives a constant head."""
        from sklearn.linear_model import LogisticRegression

        features = np.asarray(features, dtype=float)
        labels = (np.asarray(labels, dtype=float) >= 0.5).astype(int)
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale[scale < 1e-9] = 1.0
        if labels.min() == labels.max():
            rate = float(np.clip(labels.mean(), 1e-3, 1 - 1e-3))
            return cls(mean, scale, np.zeros(features.shape[1]), float(np.log(rate / (1 - rate))))
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit((features - mean) / scale, labels)
        return cls(mean, scale, model.coef_[0].astype(float), float(model.intercept_[0]))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """P(correct) for each row."""
        return sigmoid(((np.asarray(features, dtype=float) - self.mean) / self.scale) @ self.coef + self.intercept)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The head as arrays for ``save_bundle``."""
        return {
            f"{prefix}mean": self.mean,
            f"{prefix}scale": self.scale,
            f"{prefix}coef": self.coef,
            f"{prefix}intercept": np.array([self.intercept]),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], width: int, prefix: str = "") -> LinearHead:
        """Inverse of :meth:`arrays` for a head on ``width`` features; a :class:`RouterFileError` for a
        missing, misshapen, NaN or infinite array, or a scale that is not positive."""
        mean, scale, coef = (
            saved_array(arrays, f"{prefix}{key}", (width,), kind="scorer").astype(float)
            for key in ("mean", "scale", "coef")
        )
        intercept = saved_array(arrays, f"{prefix}intercept", (1,), kind="scorer")
        if (scale <= 0).any():
            raise RouterFileError(f"scorer file array {prefix + 'scale'!r} must be positive")
        return cls(mean, scale, coef, float(intercept[0]))
