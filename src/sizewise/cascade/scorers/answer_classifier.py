"""``answer-classifier``: FrugalGPT's learned answer scorer, (prompt, answer text) -> P(correct).

Features: hashed TF-IDF of the answer's words and word pairs (stateless hashing, so a saved scorer is
arrays only), hand-made text features (length, final-answer marker, hedging, repetition, truncation,
numbers not in the prompt, the prompt's quantities the answer never uses, an arithmetic check, and the
prompt's reasoning load from :mod:`sizewise.routers.features`) and, optionally, local embeddings of
the prompt and of the answer (:func:`sizewise.embedding.embed`) with their cosine similarity.
One logistic regression on top.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from sizewise.cascade.graders import extract_choice, extract_number
from sizewise.cascade.scorers.base import Answer, Scorer, check_answers, check_labels, register, sigmoid
from sizewise.checks import check_number
from sizewise.errors import ConfigError, RouterFileError
from sizewise.routers.features import FEATURE_NAMES, REASONING_LOAD
from sizewise.routers.features import text_features as prompt_features
from sizewise.routers.persist import saved_array

_HEDGES = re.compile(r"\b(not sure|cannot|can't|unclear|assume|approximately|might|maybe|however|wait|mistake)\b", re.I)
_NUMBERS = re.compile(r"\d+(?:\.\d+)?")
_MARKER = re.compile(r"####|answer is|\\boxed|final answer", re.I)
N_HASH = 2**15
_PROMPT_COLUMNS = [FEATURE_NAMES.index(name) for name in REASONING_LOAD]
# "12 * 3 = 36" or a calculator annotation "<<12*3=36>>": arithmetic the answer claims, which we can check.
_EQUATION = re.compile(
    r"(?<![\w.])((?:\d[\d,]*(?:\.\d+)?\s*[-+*/x×÷]\s*)+\(?\d[\d,]*(?:\.\d+)?\)?)\s*=\s*\$?(-?\d[\d,]*(?:\.\d+)?)"
)


def _evaluate(expression: str) -> float | None:
    """Value of a plain arithmetic expression (digits, + - * /, parentheses); None when it is not one."""
    import ast

    cleaned = expression.replace(",", "").replace("x", "*").replace("×", "*").replace("÷", "/")
    try:
        tree = ast.parse(cleaned, mode="eval")
    except SyntaxError:
        return None
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)):
        return None
    try:
        return float(eval(compile(tree, "<arith>", "eval"), {"__builtins__": {}}))
    except (ZeroDivisionError, OverflowError, ValueError):
        return None


def arithmetic_check(answer: str) -> tuple[int, int]:
    """(equations checked, equations whose stated result is wrong) in an answer."""
    checked = wrong = 0
    for expression, stated in _EQUATION.findall(answer):
        value = _evaluate(expression)
        if value is None:
            continue
        checked += 1
        if abs(value - float(stated.replace(",", ""))) > 1e-4 * max(1.0, abs(value)) + 0.01:
            wrong += 1
    return checked, wrong


def text_features(prompt: str, answer: str) -> np.ndarray:
    """Hand-made features of one (prompt, answer) pair."""
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    answer_numbers = _NUMBERS.findall(answer)
    prompt_numbers = set(_NUMBERS.findall(prompt))
    new_numbers = [n for n in answer_numbers if n not in prompt_numbers]
    checked, wrong = arithmetic_check(answer)
    final = extract_number(answer)
    # A quantity of the question that the answer never mentions is often a step it skipped.
    given = set(_NUMBERS.findall(prompt.replace(",", "")))
    unused = given - set(_NUMBERS.findall(answer.replace(",", "")))
    load = prompt_features([prompt])[0, _PROMPT_COLUMNS]
    return np.array(
        [
            np.log1p(len(answer)),
            np.log1p(len(prompt)),
            np.log1p(len(answer_numbers)),
            len(new_numbers) / (1 + len(answer_numbers)),
            float(bool(_MARKER.search(answer))),
            float(final is not None),
            float(extract_choice(answer) is not None),
            len(_HEDGES.findall(answer)) / (1 + len(answer) / 500),
            1 - len(set(lines)) / max(1, len(lines)),  # repeated lines: a looping small model
            float(bool(answer.rstrip()) and answer.rstrip()[-1] not in ".!?)]}*$0123456789"),  # cut off mid-sentence
            np.log1p(checked),
            float(wrong > 0),
            wrong / (1 + checked),
            float(final is not None and abs(final - round(final)) < 1e-9),  # most word problems have whole answers
            float(final is not None and final < 0),
            0.0 if final is None else float(np.log1p(abs(final))),
            1 - len(unused) / max(1, len(given)),
            float(bool(unused)),
            *load,
        ]
    )


N_TEXT_FEATURES = len(text_features("", ""))


@register
class AnswerClassifierScorer(Scorer):
    """Logistic regression on answer words, text features and (optionally) embeddings."""

    name = "answer-classifier"

    def __init__(
        self, embeddings: bool = False, words: bool = True, c: float = 0.5, embed_weight: float = 0.15
    ) -> None:
        for flag, value in (("embeddings", embeddings), ("words", words)):
            if not isinstance(value, bool):
                raise ConfigError(f"{self.name}: {flag} must be true or false, got {value!r}")
        check_number(self.name, "c", c, 0, strict=True)
        check_number(self.name, "embed_weight", embed_weight, 0)
        self.embeddings = embeddings
        self.embed_weight = embed_weight
        self.words = words
        self.c = c

    def _dense(self, answers: Sequence[Answer]) -> np.ndarray:
        parts = [np.stack([text_features(a.prompt, a.text) for a in answers])]
        if self.embeddings:
            from sizewise.embedding import embed

            prompts = embed([a.prompt for a in answers])
            replies = embed([a.text[-2000:] for a in answers])
            parts += [prompts, replies, (prompts * replies).sum(axis=1, keepdims=True)]
        return np.hstack(parts).astype(float)

    def _words(self, answers: Sequence[Answer]) -> Any:
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(n_features=N_HASH, ngram_range=(1, 2), alternate_sign=False, norm=None)
        return vectorizer.transform([a.text for a in answers])

    def _design(self, answers: Sequence[Answer], fitting: bool) -> Any:
        from scipy import sparse

        dense = self._dense(answers)
        if fitting:
            self.mean_ = dense.mean(axis=0)
            scale = dense.std(axis=0)
            scale[scale < 1e-9] = 1.0
            self.scale_ = scale
        standard = (dense - self.mean_) / self.scale_
        # 769 embedding columns would drown the text features: shrink them (a stronger prior on them).
        standard[:, N_TEXT_FEATURES:] *= self.embed_weight
        blocks = [sparse.csr_matrix(standard)]
        if self.words:
            counts = self._words(answers)
            if fitting:
                document_frequency = np.asarray((counts > 0).sum(axis=0)).ravel()
                self.idf_ = np.log((1 + counts.shape[0]) / (1 + document_frequency)) + 1
            weighted = counts.log1p().multiply(self.idf_).tocsr()
            norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
            norms[norms == 0] = 1
            blocks.append(sparse.diags(1 / norms) @ weighted)
        return sparse.hstack(blocks).tocsr()

    def fit(self, answers: Sequence[Answer], correct: Sequence[float] | np.ndarray) -> Self:
        """Learn P(correct) from labelled answers."""
        from sklearn.linear_model import LogisticRegression

        answers, correct = check_labels(answers, correct)
        labels = (correct >= 0.5).astype(int)
        design = self._design(answers, fitting=True)
        if labels.min() == labels.max():
            self.coef_ = np.zeros(design.shape[1])
            rate = float(np.clip(labels.mean(), 1e-3, 1 - 1e-3))
            self.intercept_ = float(np.log(rate / (1 - rate)))
        else:
            model = LogisticRegression(C=self.c, max_iter=3000)
            model.fit(design, labels)
            self.coef_ = model.coef_[0].astype(float)
            self.intercept_ = float(model.intercept_[0])
        self.fitted_ = True
        return self

    def score(self, answers: Sequence[Answer]) -> np.ndarray:
        """P(answer is right)."""
        self.check_fitted()
        if not (answers := check_answers(answers)):
            return np.zeros(0)
        return sigmoid(self._design(answers, fitting=False) @ self.coef_ + self.intercept_)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {
            "mean": self.mean_,
            "scale": self.scale_,
            "coef": self.coef_,
            "intercept": np.array([self.intercept_]),
        }
        if self.words:
            arrays["idf"] = self.idf_
        return {}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        from sizewise.embedding.model import DIM

        dense = N_TEXT_FEATURES + (2 * DIM + 1 if self.embeddings else 0)
        width = dense + (N_HASH if self.words else 0)
        self.mean_, self.scale_ = (saved_array(arrays, key, (dense,), kind="scorer") for key in ("mean", "scale"))
        if (self.scale_ <= 0).any():
            raise RouterFileError("scorer file array 'scale' must be positive")
        self.coef_ = saved_array(arrays, "coef", (width,), kind="scorer")
        self.intercept_ = float(saved_array(arrays, "intercept", (1,), kind="scorer")[0])
        if self.words:
            self.idf_ = saved_array(arrays, "idf", (N_HASH,), kind="scorer")
