"""``TaskStudent``: a small classifier that gives a big model's label for one narrow task, when sure.

An :class:`~sizewise.learn.Estimator` of kind ``task`` (scikit-learn's contract): ``fit(texts, labels)``
learns from a teacher's (normalised) answers; ``predict_proba`` gives class probabilities; ``answer(text)``
gives ``(label, confidence)`` only when the calibrated confidence reaches ``threshold_``, else None (ask
the teacher). ``fit`` sets ``threshold_`` from out-of-fold predictions on its own training data (so a
student is usable at once); :meth:`calibrate` resets it on held-out teacher answers and reports coverage.

The model: the part of the prompt that varies (a shared few-shot prefix and closing question are learned
and dropped, :mod:`sizewise.routers.prefix`), featurised by :mod:`sizewise.distill.features`, then a
logistic regression (``class_weight`` none: the teacher's own label frequencies are what it must match).
Confidences are the top class probability mapped by an isotonic fit on out-of-fold predictions
(:mod:`sizewise.distill.calibration`); the threshold counts one extra disagreement and ``margin`` (default 1)
standard deviations of the disagreement count, so it holds on new answers, not only on those it was chosen on.
Files are the estimators' safe zip (JSON + arrays, no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sizewise.distill.calibration import ConfidenceMap, choose_threshold, coverage_agreement
from sizewise.distill.features import FEATURES, Analysed, Featuriser, analyse, embedding_of, parts
from sizewise.errors import ConfigError, DataError
from sizewise.learn.estimator import Estimator
from sizewise.learn.persist import saved_array
from sizewise.learn.registry import Registry, register
from sizewise.routers.prefix import learn_shared, varying_part

TASK_MODULES = ["sizewise.distill.student"]
#: Entry-point group through which other packages add task students.
ENTRY_POINT_GROUP = "sizewise.tasks"
TASKS: Registry[TaskStudent] = Registry("task", TASK_MODULES, ENTRY_POINT_GROUP)
#: Regularisation strengths tried when ``C`` is None, chosen by out-of-fold coverage at the target: a weak
#: penalty fits noisy teacher labels and grows over-confident, a strong one under-fits clean ones.
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """``texts`` as a list of strings; a :class:`DataError` for a bare string or a non-string item."""
    if isinstance(texts, str | bytes) or not all(isinstance(t, str) for t in texts):
        raise DataError(f"{what} must be a list of strings")
    return list(texts)


def check_labelled(texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Checked ``(texts, labels)``: as many string labels as texts, at least two distinct labels."""
    items = check_texts(texts)
    if isinstance(labels, str | bytes) or not all(isinstance(x, str) for x in labels):
        raise DataError("labels must be a list of label strings (drop unparseable answers first)")
    labels = list(labels)
    if len(labels) != len(items):
        raise DataError(f"{len(items)} texts but {len(labels)} labels")
    if len(set(labels)) < 2:
        raise DataError(f"a student needs answers of at least two labels; got {sorted(set(labels)) or 'none'}")
    return items, labels


@dataclass(frozen=True)
class Prepared:
    """Training texts read once: their TF-IDF term counts and embeddings (None where the features lack them)."""

    texts: list[str]
    counts: Analysed | None
    dense: np.ndarray | None

    def subset(self, rows: np.ndarray) -> Prepared:
        return Prepared(
            [self.texts[i] for i in rows],
            None if self.counts is None else [self.counts[i] for i in rows],
            None if self.dense is None else self.dense[rows],
        )


@register
class TaskStudent(Estimator):
    """A task model distilled from a teacher's labels; answers only when confident (see the module doc)."""

    estimator_kind: ClassVar[str] = "task"
    name: ClassVar[str] = "student"

    def __init__(
        self,
        features: str = "tfidf",
        C: float | None = None,
        target_agreement: float = 0.98,
        margin: float = 1.0,
        folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.C = C
        self.target_agreement = target_agreement
        self.margin = margin
        self.folds = folds
        self.seed = seed

    def _check_params(self) -> None:
        if self.features not in FEATURES:
            raise ConfigError(f"task 'student': features must be one of {', '.join(FEATURES)}, not {self.features!r}")
        if self.C is not None and (not isinstance(self.C, int | float) or not self.C > 0):
            raise ConfigError(f"task 'student': C must be a positive number or None (choose), not {self.C!r}")
        if not isinstance(self.target_agreement, int | float) or not 0.5 <= self.target_agreement < 1:
            raise ConfigError(f"task 'student': target_agreement must lie in [0.5, 1), not {self.target_agreement!r}")
        if not isinstance(self.margin, int | float) or not 0 <= self.margin <= 5:
            raise ConfigError(f"task 'student': margin must lie in [0, 5] (standard deviations), not {self.margin!r}")
        if not isinstance(self.folds, int) or self.folds < 2:
            raise ConfigError(f"task 'student': folds must be an integer >= 2, not {self.folds!r}")

    # -- learning ------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> TaskStudent:
        """Learn from ``labels`` (the teacher's, normalised); set ``threshold_`` from out-of-fold answers."""
        import sklearn.linear_model  # noqa: F401 - load its OpenMP/BLAS first: the limit binds only loaded ones
        from threadpoolctl import threadpool_limits

        # One BLAS thread: these fits are small, and on a busy machine (a gateway, other jobs) threaded BLAS
        # made each 30x slower in wall time (measured: 2.2 s vs 0.08 s for one fit on 800 prompts).
        with threadpool_limits(limits=1):
            return self._fit(texts, labels)

    def _fit(self, texts: Sequence[str], labels: Sequence[str]) -> TaskStudent:
        self._check_params()
        texts, labels = check_labelled(texts, labels)
        self.classes_ = sorted(set(labels))
        self.shared_ = learn_shared(texts)
        readable = varying_part(texts, *self.shared_)
        y = np.array([self.classes_.index(x) for x in labels])
        grid = C_GRID if self.C is None else (float(self.C),)
        counts = analyse(readable) if "tfidf" in parts(self.features) else None
        embedding = next((p for p in parts(self.features) if p != "tfidf"), None)
        dense = embedding_of(embedding, readable) if embedding else None
        raw = self._out_of_fold(Prepared(readable, counts, dense), y, grid)
        if raw is None:  # too few answers of some label to hold any out: no map, the grid's middle
            self.C_, top, agree = grid[len(grid) // 2], np.zeros(0), np.zeros(0)
            self.map_ = ConfidenceMap.identity()
        else:
            self.C_, self.map_, top, agree = _best_of(raw, y, grid, self.target_agreement, self.margin)
        self.featuriser_ = Featuriser.fit(self.features, readable, counts)
        X = self.featuriser_.transform(readable, counts, dense)
        self.coef_, self.intercept_ = self._logistic(X, y, self.C_)
        self.fitted_ = True
        self.threshold_ = choose_threshold(self.map_(top), agree, self.target_agreement, self.margin)
        self.coverage_, self.agreement_ = coverage_agreement(self.map_(top), agree, self.threshold_)
        return self

    def _logistic(self, X: Any, y: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=C, max_iter=2000, random_state=self.seed).fit(X, y)
        return model.coef_.astype(np.float64), model.intercept_.astype(np.float64)

    def _out_of_fold(self, data: Prepared, y: np.ndarray, grid: Sequence[float]) -> dict[float, np.ndarray] | None:
        """For each C of ``grid``: class probabilities of each training text from a model that did not see
        it (None: too few answers of some label). The featuriser is fitted once per fold, shared by the Cs."""
        smallest = int(np.bincount(y).min())
        folds = min(self.folds, smallest)
        if folds < 2:
            return None
        from sklearn.model_selection import StratifiedKFold

        out = {C: np.zeros((len(data.texts), len(self.classes_))) for C in grid}
        split = StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(data.texts, y)
        for train, test in split:  # stratified with folds <= the rarest label's count: every label in each train
            part_train, part_test = data.subset(train), data.subset(test)
            featuriser = Featuriser.fit(self.features, part_train.texts, part_train.counts)
            X_train = featuriser.transform(part_train.texts, part_train.counts, part_train.dense)
            X_test = featuriser.transform(part_test.texts, part_test.counts, part_test.dense)
            for C in grid:
                coef, intercept = self._logistic(X_train, y[train], C)
                out[C][test] = _probabilities(X_test @ coef.T + intercept)
        return out

    def calibrate(
        self, texts: Sequence[str], teacher_labels: Sequence[str], target_agreement: float | None = None
    ) -> dict[str, float]:
        """Set ``threshold_`` on held-out teacher answers so the answered part agrees ``target_agreement``
        (default: the parameter) with the teacher; returns threshold, coverage, agreement and n."""
        self.check_fitted()
        texts, labels = check_texts(texts), list(teacher_labels)
        if len(labels) != len(texts) or not texts:
            raise DataError(
                f"calibrate needs as many teacher labels as texts, at least one ({len(texts)}, {len(labels)})"
            )
        target = self.target_agreement if target_agreement is None else target_agreement
        predicted, confidence = self.predict_with_confidence(texts)
        agree = np.array([p == t for p, t in zip(predicted, labels, strict=True)], dtype=float)
        self.threshold_ = choose_threshold(confidence, agree, target, self.margin)
        self.coverage_, self.agreement_ = coverage_agreement(confidence, agree, self.threshold_)
        return {"threshold": self.threshold_, "coverage": self.coverage_, "agreement": self.agreement_, "n": len(texts)}

    # -- predicting ----------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Raw class probabilities, shape ``(len(texts), len(classes_))`` (columns in ``classes_`` order)."""
        self.check_fitted()
        readable = varying_part(check_texts(texts), *self.shared_)
        return _probabilities(self.featuriser_.transform(readable) @ self.coef_.T + self.intercept_)

    def predict_with_confidence(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The most likely label of each text and its calibrated confidence (P(the teacher says it too))."""
        probs = self.predict_proba(texts)
        return [self.classes_[i] for i in probs.argmax(1)], self.map_(probs.max(1))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely label of each text, confident or not."""
        return self.predict_with_confidence(texts)[0]

    def answer(self, text: str) -> tuple[str, float] | None:
        """``(label, confidence)`` when the confidence reaches ``threshold_``; None: ask the teacher."""
        self.check_fitted()
        if not isinstance(text, str):
            raise DataError("answer needs one text (a string)")
        readable = varying_part([text], *self.shared_)[0]
        columns, values = self.featuriser_.row(readable)
        logits = self.coef_[:, columns] @ values + self.intercept_
        probs = _probabilities(logits[None, :])[0]
        best = int(probs.argmax())
        confidence = float(self.map_(probs[best]))
        return (self.classes_[best], confidence) if confidence >= self.threshold_ else None

    # -- persistence -----------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        blocks, arrays = self.featuriser_.state()
        meta = {
            "classes": self.classes_,
            "C": self.C_,
            "shared": list(self.shared_),
            "blocks": blocks,
            "threshold": None if not np.isfinite(self.threshold_) else self.threshold_,
            "coverage": self.coverage_,
            "agreement": None if np.isnan(self.agreement_) else self.agreement_,
        }
        arrays.update(coef=self.coef_, intercept=self.intercept_, map_x=self.map_.x, map_y=self.map_.y)
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        classes, shared = meta["classes"], meta["shared"]
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise ValueError("its classes are not a list of at least two labels")
        if not isinstance(shared, list) or len(shared) != 2 or not all(isinstance(s, str) for s in shared):
            raise ValueError("its shared prompt text is not a [prefix, suffix] pair")
        self.classes_, self.shared_ = list(classes), (shared[0], shared[1])
        self.C_ = float(meta["C"])
        self.featuriser_ = Featuriser.from_state(self.features, meta["blocks"], arrays)
        rows = 1 if len(classes) == 2 else len(classes)
        self.coef_ = saved_array(arrays, "coef", (rows, self.featuriser_.width), kind="task")
        self.intercept_ = saved_array(arrays, "intercept", (rows,), kind="task")
        x, y = saved_array(arrays, "map_x", (None,), kind="task"), saved_array(arrays, "map_y", (None,), kind="task")
        if len(x) != len(y) or len(x) < 2:
            raise ValueError("its confidence map is malformed")
        self.map_ = ConfidenceMap(x, y)
        threshold = meta["threshold"]
        self.threshold_ = float("inf") if threshold is None else float(threshold)
        self.coverage_ = float(meta["coverage"])
        self.agreement_ = float("nan") if meta["agreement"] is None else float(meta["agreement"])


def _best_of(
    raw: dict[float, np.ndarray], y: np.ndarray, grid: Sequence[float], target: float, margin: float
) -> tuple[float, ConfidenceMap, np.ndarray, np.ndarray]:
    """The C whose out-of-fold answers cover most at ``target`` agreement (ties: the smaller C, the
    smoother model), with its confidence map, top probabilities and agreement."""
    best: tuple[float, float, ConfidenceMap, np.ndarray, np.ndarray] | None = None
    for C in grid:
        top, agree = raw[C].max(1), (raw[C].argmax(1) == y).astype(float)
        confidence_map = ConfidenceMap.fit(top, agree)
        confidence = confidence_map(top)
        coverage = coverage_agreement(confidence, agree, choose_threshold(confidence, agree, target, margin))[0]
        if best is None or coverage > best[1]:
            best = (C, coverage, confidence_map, top, agree)
    assert best is not None
    return best[0], best[2], best[3], best[4]


def _probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logistic-regression logits (one column for two classes, as scikit-learn)."""
    logits = np.asarray(logits, dtype=float)
    if logits.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)
