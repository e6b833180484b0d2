"""``sizewise distill``: a student from a teacher's answers in an outcome table; bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from distill_helpers import synthetic_task
from sizewise.distill.student import TaskStudent


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A long-format table: a teacher answering in prose (a few unparseable), a second model, gold labels."""
    texts, labels = synthetic_task(800, seed=7, clear_share=0.8)
    rows = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        answer = "I cannot tell." if i % 50 == 0 else f"The answer is {label.capitalize()}."
        rows.append({"prompt_id": f"q{i}", "text": text, "model": "teacher", "quality": 1.0, "response": answer})
        rows.append({"prompt_id": f"q{i}", "text": text, "model": "other", "quality": 0.0, "response": "no"})
    frame = pd.DataFrame(rows)
    frame["gold"] = [labels[int(p[1:])] for p in frame["prompt_id"]]
    path = tmp_path_factory.mktemp("distill") / "answers.csv"
    frame.to_csv(path, index=False)
    return path


def test_distill_writes_a_calibrated_student(run_cli, table: Path, tmp_path: Path) -> None:
    out = tmp_path / "student.zip"
    code, stdout, err = run_cli(
        "distill", "--table", str(table), "--teacher", "teacher", "--labels", "yes,no", "--out", str(out)
    )
    assert code == 0, err
    assert "784 answers used, 16 unparseable" in stdout
    assert "held-out: coverage" in stdout and "at agreement" in stdout
    assert "vs 100.0% (teacher alone)" in stdout  # gold "yes" is the label "Yes" the teacher said
    student = TaskStudent.load(out)
    assert student.classes_ == ["no", "yes"] and student.provenance_["teacher"] == "teacher"
    assert 0 < student.threshold_ <= 1 and student.coverage_ > 0


def test_distill_says_when_no_threshold_reaches_the_target(run_cli, table: Path, tmp_path: Path) -> None:
    args = ("--teacher", "teacher", "--labels", "yes,no", "--holdout", "0.05", "--target", "0.995")
    code, stdout, err = run_cli("distill", "--table", str(table), "--out", str(tmp_path / "s.zip"), *args)
    assert code == 0, err
    assert "no threshold keeps 99.5% agreement with teacher on 39 answers" in stdout
    assert "the student will never answer" in stdout


def test_distill_infers_the_labels(run_cli, table: Path, tmp_path: Path) -> None:
    code, stdout, err = run_cli(
        "distill", "--table", str(table), "--teacher", "teacher", "--out", str(tmp_path / "s.zip")
    )
    assert code == 0, err
    assert "labels (inferred; give --labels to fix them): " in stdout and "(784 answers used" in stdout
    code, stdout, err = run_cli(
        "distill", "--table", str(table), "--teacher", "other", "--out", str(tmp_path / "s.zip")
    )
    assert code == 2 and "cannot infer a label set" in err and "--labels" in err  # "other" always says "no"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--teacher", "gpt-9"), "the table has no model 'gpt-9'; it has: teacher, other"),
        (("--teacher", "teacher", "--target", "1.5"), "--target must lie in [0.5, 1)"),
        (("--teacher", "teacher", "--holdout", "0.9"), "--holdout must lie in"),
        (("--teacher", "teacher", "--labels", "yes"), "at least two labels"),
        (("--teacher", "teacher", "--labels", "yes,no", "--gold", "nope"), "--gold nope: the table has no such column"),
        (("--teacher", "teacher", "--features", "magic"), "features must be one of"),
    ],
)
def test_bad_input_is_one_line(run_cli, table: Path, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    code, _, err = run_cli("distill", "--table", str(table), "--out", str(tmp_path / "s.zip"), *args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_table_without_answers_is_named(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "no-answers.csv"
    pd.DataFrame({"text": ["a", "b"], "model": ["m", "m"], "quality": [1, 0]}).to_csv(path, index=False)
    code, _, err = run_cli("distill", "--table", str(path), "--teacher", "m", "--out", str(tmp_path / "s.zip"))
    assert code == 2 and "no response column" in err
    code, _, err = run_cli("distill", "--table", str(tmp_path / "missing.csv"), "--teacher", "m", "--out", "s.zip")
    assert code == 2 and "missing.csv" in err and len(err.strip().splitlines()) == 1
