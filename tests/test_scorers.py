"""Scorers separate right from wrong answers better than chance on planted cases; graders; persistence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from learned_helpers import rewrite_bundle
from sizewise.backends.base import Backend, ChatChunk, ChatRequest, ChatResult
from sizewise.cascade.graders import extract_choice, extract_number, grade_choice, grade_exact, grade_numeric
from sizewise.cascade.scorers import Answer, load_scorer, make_scorer, scorer_names
from sizewise.errors import ConfigError, DataError, NotFittedError, RouterFileError, UnknownNameError
from sizewise.learn import load_bundle


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random right answer outscores a random wrong one."""
    right, wrong = scores[labels == 1], scores[labels == 0]
    return float(((right[:, None] > wrong[None, :]) + 0.5 * (right[:, None] == wrong[None, :])).mean())


def test_registry_names_every_scorer() -> None:
    assert {"logprob", "consistency", "verifier", "answer-classifier"} <= set(scorer_names())
    with pytest.raises(UnknownNameError, match="unknown scorer"):
        make_scorer("nope")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("so 3 x 60 = 180\n#### 540", 540.0),
        ("The answer is $1,250.", 1250.0),
        ("we get 7 then 9", 9.0),
        ("none", None),
        ("9" * 400, None),
    ],
)
def test_extract_number(text: str, number: float | None) -> None:
    assert extract_number(text) == number


def test_graders() -> None:
    assert grade_numeric("... #### 18", "She makes 9 * 2 = $18\n#### 18")
    assert not grade_numeric("... #### 17", "#### 18")
    assert extract_choice("Let's think. The answer is (C).") == "C"
    assert grade_choice("Answer: B", "B") and not grade_choice("Answer: B", "D")
    assert grade_exact("Paris.", "paris") and not grade_exact("Lyon", "Paris")


def planted_logprob_answers(n: int, seed: int) -> tuple[list[Answer], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    answers = []
    for label in labels:
        length = int(rng.integers(20, 80))
        center = -0.3 if label else -0.9  # wrong answers are less sure of their tokens, on average
        answers.append(Answer("q", "a", logprobs=list(np.minimum(rng.normal(center, 0.6, length), 0))))
    return answers, labels


def test_logprob_separates_unfitted_and_fitted(tmp_path: Path) -> None:
    train, train_labels = planted_logprob_answers(300, 0)
    test, test_labels = planted_logprob_answers(300, 1)
    raw = make_scorer("logprob").score(test)
    assert auc(raw, test_labels) > 0.75
    fitted = make_scorer("logprob").fit(train, train_labels)
    scores = fitted.score(test)
    assert auc(scores, test_labels) > 0.75 and scores.min() >= 0 and scores.max() <= 1
    path = fitted.save(tmp_path / "logprob.zip")
    assert np.allclose(load_scorer(path).score(test), scores)


def test_consistency_separates_planted_samples() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    answers = []
    for label in labels:
        gold = int(rng.integers(1, 100))
        main = gold if label else gold + int(rng.integers(1, 5))
        # Right answers are reproduced by most samples; wrong ones are scattered guesses.
        samples = [f"#### {gold if rng.random() < 0.8 else gold + int(rng.integers(1, 9))}" for _ in range(4)]
        answers.append(Answer("q", f"work...\n#### {main}", samples=samples))
    scores = make_scorer("consistency", k=4).score(answers)
    assert auc(scores, labels) > 0.8


class SeededBackend(Backend):
    """Answers '#### 7' at temperature 0 and a seed-dependent number when sampling; yes/no by content."""

    model = "fake"

    async def complete(self, request: ChatRequest) -> ChatResult:
        value = 7 if not request.temperature else 7 + (request.seed or 0) % 2
        return ChatResult(model=self.model, text=f"#### {value}")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(text=(await self.complete(request)).text, finish_reason="stop")

    async def choice_logprobs(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        good = "#### 7" in str(request.messages[-1]["content"])
        return {c: (np.log(0.9) if (c.strip().lower() == "yes") == good else np.log(0.1)) for c in choices}


def test_consistency_and_verifier_enrich_call_the_backend() -> None:
    backend = SeededBackend()
    request = ChatRequest(messages=[{"role": "user", "content": "q"}], seed=0)
    consistency = make_scorer("consistency", k=4)
    enriched = asyncio.run(consistency.enrich(Answer("q", "#### 7"), request, backend, None))
    assert enriched.samples is not None and len(enriched.samples) == 4
    assert consistency.score([enriched])[0] == pytest.approx(0.5)  # seeds 1..4: half give 7, half 8
    verifier = make_scorer("verifier")
    good = asyncio.run(verifier.enrich(Answer("q", "#### 7"), request, backend, backend))
    bad = asyncio.run(verifier.enrich(Answer("q", "#### 3"), request, backend, backend))
    assert verifier.score([good])[0] == pytest.approx(0.9) and verifier.score([bad])[0] == pytest.approx(0.1)


def test_verifier_calibration_keeps_the_ranking() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    verdicts = np.clip(np.where(labels == 1, 0.7, 0.4) + rng.normal(0, 0.2, 300), 0.01, 0.99)
    answers = [Answer("q", "a", verdict=float(v)) for v in verdicts]
    scorer = make_scorer("verifier").fit(answers[:200], labels[:200])
    assert auc(scorer.score(answers[200:]), labels[200:]) > 0.75


def planted_math(n: int, seed: int) -> tuple[list[Answer], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    answers = []
    for label in labels:
        a, b = int(rng.integers(2, 50)), int(rng.integers(2, 50))
        stated = a * b if label else a * b + int(rng.integers(1, 20))  # wrong answers botch the arithmetic
        filler = " ".join(rng.choice(["first", "then", "so", "total", "each", "we"], 6))
        answers.append(Answer(f"What is {a} times {b}?", f"{filler} {a} * {b} = {stated}\n#### {stated}"))
    return answers, labels


def test_answer_classifier_separates_and_round_trips(tmp_path: Path) -> None:
    train, train_labels = planted_math(300, 4)
    test, test_labels = planted_math(150, 5)
    scorer = make_scorer("answer-classifier")
    with pytest.raises(NotFittedError):
        scorer.score(test)
    scorer.fit(train, train_labels)
    scores = scorer.score(test)
    assert auc(scores, test_labels) > 0.8
    path = scorer.save(tmp_path / "ac.zip")
    assert np.allclose(load_scorer(path).score(test), scores)
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(RouterFileError):
        load_scorer(tmp_path / "bad.zip")


def test_answer_classifier_sees_skipped_quantities_and_the_prompts_load() -> None:
    from sizewise.cascade.scorers.answer_classifier import N_TEXT_FEATURES, text_features

    prompt = "Ann has 12 apples, buys 30 more and eats 7. How many are left?"
    full = text_features(prompt, "12 + 30 = 42. 42 - 7 = 35. The answer is 35.")
    skipped = text_features(prompt, "12 + 30 = 42. The answer is 42.")  # never uses the 7
    used_share, any_unused = 16, 17  # the two columns after the 16 answer-only features
    assert full.shape == (N_TEXT_FEATURES,)
    assert (full[used_share], full[any_unused]) == (1.0, 0.0)
    assert skipped[used_share] == pytest.approx(2 / 3) and skipped[any_unused] == 1.0
    # The prompt's reasoning load is the same for both answers; a harder prompt raises it.
    assert np.array_equal(full[18:], skipped[18:])
    harder = text_features(prompt + " Each apple costs $1.50 and half of them are red.", "35")
    assert harder[18:].sum() > full[18:].sum()


def test_verifier_treats_a_nan_verdict_as_unknown_and_refuses_one_outside_0_1() -> None:
    scorer = make_scorer("verifier")
    assert scorer.score([Answer("p", "a", verdict=float("nan"))]).tolist() == [0.5]
    with pytest.raises(DataError, match="verdict"):
        scorer.score([Answer("p", "a", verdict=7.0)])


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("logprob", {"tail": 0}, r"logprob: tail must be an integer >= 1, got 0"),
        ("logprob", {"tail": 0.5}, r"logprob: tail must be an integer >= 1, got 0.5"),
        ("logprob", {"c": 0.0}, r"logprob: c must be a number > 0, got 0.0"),
        ("consistency", {"k": 0}, r"consistency: k must be an integer >= 1, got 0"),
        ("consistency", {"temperature": -1}, r"consistency: temperature must be a number >= 0"),
        ("consistency", {"max_tokens": 0}, r"consistency: max_tokens must be an integer >= 1"),
        ("verifier", {"c": -1.0}, r"verifier: c must be a number > 0, got -1.0"),
        ("answer-classifier", {"c": float("nan")}, r"answer-classifier: c must be a number > 0, got nan"),
        ("answer-classifier", {"embed_weight": -0.1}, r"answer-classifier: embed_weight must be a number >= 0"),
        ("answer-classifier", {"words": "yes"}, r"answer-classifier: words must be true or false, got 'yes'"),
        ("logprob", {"tails": 3}, r"scorer 'logprob': bad parameter 'tails'; it takes: tail, c"),
    ],
)
def test_invalid_scorer_parameters_are_named(name: str, params: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        make_scorer(name, **params)


@pytest.mark.parametrize("name", scorer_names())
def test_tampered_scorer_files_are_refused(name: str, tmp_path: Path) -> None:
    answers, labels = planted_math(40, 6)
    answers = [a.with_(logprobs=[-0.1 * (i % 5)], verdict=0.2 + 0.5 * (i % 2)) for i, a in enumerate(answers)]
    path = make_scorer(name).fit(answers, labels).save(tmp_path / "scorer.zip")
    if "coef" not in load_bundle(path, "scorer")[2]:
        pytest.skip(f"{name} saves no learned head")
    cases = {
        "NaN": lambda a: {k: np.full(v.shape, np.nan) for k, v in a.items()},
        "shape": lambda a: {k: np.concatenate([v, v]) for k, v in a.items()},
        "lacks array 'coef'": lambda a: {k: v for k, v in a.items() if k != "coef"},
        "'scale' must be positive": lambda a: {**a, "scale": np.zeros_like(a["scale"])},
    }
    for expected, change in cases.items():
        with pytest.raises(RouterFileError, match=expected):
            load_scorer(rewrite_bundle(path, tmp_path / "bad.zip", arrays=change))

    def bad_c(header: dict[str, Any]) -> dict[str, Any]:
        header["meta"]["params"]["c"] = -1
        return header

    with pytest.raises(RouterFileError, match="c must be a number > 0"):
        load_scorer(rewrite_bundle(path, tmp_path / "params.zip", header=bad_c))
