"""What is specific to the task student (the estimator conformance suite covers fit/params/save/load/bad input)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from distill_helpers import synthetic_task
from sizewise.distill.calibration import choose_threshold
from sizewise.distill.student import TASKS, TaskStudent
from sizewise.errors import ConfigError, DataError, NotFittedError, RouterFileError

TRAIN = synthetic_task(600, seed=1)
HELD_OUT = synthetic_task(1000, seed=2)
FRESH = synthetic_task(1500, seed=3)


@pytest.fixture(scope="module")
def student() -> TaskStudent:
    return TaskStudent().fit(*TRAIN)


def measured(student: TaskStudent, texts: list[str], labels: list[str]) -> tuple[float, float, float]:
    """(coverage, agreement on the answered, agreement of every prediction) on fresh data."""
    predicted, confidence = student.predict_with_confidence(texts)
    agree = np.array([p == t for p, t in zip(predicted, labels, strict=True)])
    answered = confidence >= student.threshold_
    return float(answered.mean()), float(agree[answered].mean()), float(agree.mean())


def test_calibrated_threshold_reaches_the_target_on_fresh_data(student: TaskStudent) -> None:
    """30% of the teacher's labels are coin flips: a student answering everything agrees ~85%; the
    calibrated one answers about the learnable 70% and keeps 98% on data it never saw."""
    report = student.calibrate(*HELD_OUT, target_agreement=0.98)
    assert report["n"] == 1000 and report["agreement"] >= 0.98 and 0.5 <= report["coverage"] <= 0.8
    coverage, agreement, everything = measured(student, *FRESH)
    assert everything < 0.9  # answering everything misses the target by far
    assert agreement >= 0.97 and coverage >= 0.6


def test_fit_alone_sets_a_threshold_from_out_of_fold_answers() -> None:
    fitted = TaskStudent().fit(*TRAIN)
    assert 0 < fitted.threshold_ < 1 and fitted.coverage_ > 0.5 and fitted.agreement_ >= 0.98
    coverage, agreement, _ = measured(fitted, *FRESH)
    assert coverage > 0.5 and agreement >= 0.95


def test_answer_is_the_label_and_confidence_only_when_confident(student: TaskStudent) -> None:
    texts = FRESH[0]
    predicted, confidence = student.predict_with_confidence(texts[:200])
    for text, label, conf in zip(texts[:200], predicted, confidence, strict=True):
        found = student.answer(text)
        if conf >= student.threshold_:
            assert found is not None and found[0] == label and found[1] == pytest.approx(conf, abs=1e-6)
        else:
            assert found is None
    assert any(student.answer(t) is None for t in texts[:200]) and any(student.answer(t) for t in texts[:200])


def test_predict_proba_rows_are_distributions_over_the_labels(student: TaskStudent) -> None:
    probs = student.predict_proba(FRESH[0][:20])
    assert probs.shape == (20, 2) and np.allclose(probs.sum(1), 1) and student.classes_ == ["no", "yes"]
    assert student.predict(FRESH[0][:3]) == [student.classes_[i] for i in probs[:3].argmax(1)]


def test_three_labels_and_the_shared_prompt_text() -> None:
    texts, labels = synthetic_task(300, seed=5)
    extra = [t.replace("Context:", "Context: w1 w2 neutral") for t in texts[:100]]
    student = TaskStudent().fit(texts + extra, labels + ["maybe"] * 100)
    assert student.classes_ == ["maybe", "no", "yes"] and student.predict_proba(extra[:5]).shape == (5, 3)
    assert student.shared_[1].endswith("Question: Is it overruling?\nAnswer:")


def test_save_and_load_round_trip_answers_and_threshold(student: TaskStudent, tmp_path: Path) -> None:
    path = student.save(tmp_path / "student.zip")
    loaded = TASKS.load(path)
    assert isinstance(loaded, TaskStudent) and loaded.threshold_ == student.threshold_
    texts = FRESH[0][:100]
    np.testing.assert_array_equal(loaded.predict_proba(texts), student.predict_proba(texts))
    assert [loaded.answer(t) for t in texts] == [student.answer(t) for t in texts]


def test_a_corrupt_or_tampered_file_is_named_in_one_line(student: TaskStudent, tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip at all")
    with pytest.raises(RouterFileError, match="not a valid sizewise task file") as info:
        TaskStudent.load(broken)
    assert "\n" not in str(info.value)
    good = student.save(tmp_path / "good.zip")
    with zipfile.ZipFile(good) as archive:
        meta, arrays = archive.read("meta.json"), archive.read("arrays.npz")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as archive:
        archive.writestr("meta.json", meta.replace(b'"classes": ["no", "yes"]', b'"classes": ["no"]'))
        archive.writestr("arrays.npz", arrays)
    with pytest.raises(RouterFileError, match="classes"):
        TaskStudent.load(tampered)


def test_unfitted_and_bad_parameters_are_clear() -> None:
    with pytest.raises(NotFittedError):
        TaskStudent().answer("x")
    with pytest.raises(ConfigError, match="features must be one of"):
        TaskStudent(features="bag-of-magic").fit(*TRAIN)
    with pytest.raises(ConfigError, match="target_agreement"):
        TaskStudent(target_agreement=1.0).fit(*TRAIN)
    with pytest.raises(DataError, match="at least two labels"):
        TaskStudent().fit(["a", "b"], ["yes", "yes"])


def test_calibrate_refuses_mismatched_labels(student: TaskStudent) -> None:
    with pytest.raises(DataError, match="as many teacher labels"):
        student.calibrate(FRESH[0][:5], FRESH[1][:4])


def test_threshold_counts_one_extra_disagreement() -> None:
    confidence = np.linspace(1, 0, 100)
    agree = np.ones(100)
    agree[[60, 80]] = 0  # past the first error (2 counted) the cut would need 99 answers: stop before it
    assert choose_threshold(confidence, agree, 0.98) == pytest.approx(confidence[59])
    assert choose_threshold(confidence[:10], np.zeros(10), 0.98) == float("inf")
    assert choose_threshold(np.ones(60), np.r_[np.ones(59), 0.0], 0.95) == 1.0  # ties: all or none


def test_a_margin_asks_for_more_evidence() -> None:
    confidence = np.linspace(1, 0, 100)
    agree = np.ones(100)
    agree[[60, 80]] = 0
    assert choose_threshold(confidence, agree, 0.98, margin=1.0) == float("inf")  # 60 clean answers: not enough
    many = np.linspace(1, 0, 400)
    assert choose_threshold(many, np.ones(400), 0.98, margin=1.0) == pytest.approx(many[-1])
