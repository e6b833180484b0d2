"""``sizewise distill``: train a task student from a teacher model's answers in an outcome table."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sizewise.errors import ConfigError, DataError

if TYPE_CHECKING:
    from sizewise.distill.normalise import AnswerNormaliser
    from sizewise.distill.student import TaskStudent

#: Tag columns read as gold labels when ``--gold`` is not given (first present wins).
GOLD_COLUMNS = ("gold", "label", "reference", "ref_answer", "answer")
#: An inferred label must be at least this share of the answers (and seen twice).
MIN_LABEL_SHARE = 0.03
MAX_LABELS = 20


def infer_labels(answers: list[str]) -> list[str]:
    """The label set a teacher's answers imply: its frequent short answers (three words at most, trailing
    punctuation dropped), else its answers' frequent last words ("The answer is Yes." -> "Yes")."""
    cleaned = [re.sub(r"[\s.!,;:]+$", "", a.strip()) for a in answers if isinstance(a, str)]
    need = max(2, MIN_LABEL_SHARE * len(answers))
    for candidates in ([c for c in cleaned if c and len(c.split()) <= 3], [c.split()[-1] for c in cleaned if c]):
        labels = [label for label, n in Counter(candidates).most_common(MAX_LABELS) if n >= need]
        if len(labels) >= 2:
            return labels
    raise DataError("cannot infer a label set from the teacher's answers: give --labels a,b,...")


def teacher_answers(table: Any, teacher: str) -> list[str]:
    """The teacher model's recorded answers (its ``response`` column); a one-line error naming what is missing."""
    if teacher not in table.models:
        raise DataError(f"the table has no model {teacher!r}; it has: {', '.join(table.models)}")
    if table.responses is None:
        raise DataError("the table records no answers (no response column): a teacher's answers are needed")
    column = table.responses[:, table.index_of(teacher)]
    return ["" if value is None or value != value else str(value) for value in column]  # NaN: no answer


def gold_labels(table: Any, column: str | None) -> list[str] | None:
    """Gold labels from a tag column (``--gold`` or the first of :data:`GOLD_COLUMNS`), else None."""
    prompts = table.prompts
    if column is not None and column not in prompts.columns:
        raise DataError(
            f"--gold {column}: the table has no such column; it has: {', '.join(map(str, prompts.columns))}"
        )
    found = column or next((c for c in GOLD_COLUMNS if c in prompts.columns), None)
    return None if found is None else [str(v).strip() for v in prompts[found]]


def distill(
    table: Annotated[
        str, typer.Option("--table", help="Outcome table file (or dataset name) holding the teacher's answers.")
    ],
    teacher: Annotated[str, typer.Option("--teacher", help="The model whose answers (response column) teach.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the student (.zip).")],
    labels: Annotated[
        str | None, typer.Option("--labels", help="Comma-separated label set (default: inferred from the answers).")
    ] = None,
    target: Annotated[float, typer.Option("--target", help="Agreement with the teacher on the answered part.")] = 0.98,
    holdout: Annotated[float, typer.Option("--holdout", help="Share of answers held out to calibrate on.")] = 0.25,
    features: Annotated[str, typer.Option("--features", help="tfidf | static | tfidf+static | minilm ...")] = "tfidf",
    gold: Annotated[str | None, typer.Option("--gold", help="Tag column with gold labels (measurement only).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out split and the folds.")] = 0,
) -> None:
    """Fit a task student on a teacher's answers, calibrate its threshold on a held-out part to --target
    agreement with the teacher, report coverage (and accuracy against gold labels if the table has them)."""
    import numpy as np

    from sizewise.cli.tables import read_table
    from sizewise.distill.normalise import AnswerNormaliser
    from sizewise.distill.student import TaskStudent

    if not 0.5 <= target < 1:
        raise ConfigError(f"--target must lie in [0.5, 1), not {target}")
    if not 0.05 <= holdout <= 0.5:
        raise ConfigError(f"--holdout must lie in [0.05, 0.5], not {holdout}")
    if out.suffix.lower() != ".zip":
        raise ConfigError(f"--out {out}: write a .zip file")
    student = TaskStudent(features=features, target_agreement=target, seed=seed)
    student._check_params()  # a bad --features fails before the table is read
    data = read_table(table)
    answers = teacher_answers(data, teacher)
    label_set = [x.strip() for x in labels.split(",") if x.strip()] if labels else infer_labels(answers)
    normaliser = AnswerNormaliser(label_set)
    said = normaliser.labels_of(answers)
    usable = [i for i, s in enumerate(said) if s is not None]
    texts = data.texts
    rng = np.random.default_rng(seed)
    held = set(rng.choice(usable, max(1, round(holdout * len(usable))), replace=False).tolist()) if usable else set()
    train = [i for i in usable if i not in held]
    student.fit([texts[i] for i in train], [str(said[i]) for i in train])
    test = sorted(held)
    report = student.calibrate([texts[i] for i in test], [str(said[i]) for i in test], target)
    student.save(out, provenance={"teacher": teacher, "labels": label_set, "table": str(table)})
    inferred = "" if labels else " (inferred; give --labels to fix them)"
    typer.echo(
        f"labels{inferred}: {', '.join(label_set)} "
        f"({len(usable)} answers used, {len(answers) - len(usable)} unparseable)"
    )
    typer.echo(f"trained on {len(train)}, calibrated on {len(test)} held-out answers (C={student.C_:g})")
    if report["coverage"] == 0:
        typer.echo(
            f"held-out: no threshold keeps {target:.1%} agreement with {teacher} on {len(test)} answers: "
            "the student will never answer (more answers, or a lower --target)"
        )
    else:
        typer.echo(
            f"held-out: coverage {report['coverage']:.1%} at agreement {report['agreement']:.1%} "
            f"with {teacher} (target {target:.1%}), threshold {report['threshold']:.4f}"
        )
    _report_gold(data, gold, normaliser, student, texts, test, said)
    typer.echo(f"wrote {out}")


def _report_gold(
    data: Any,
    column: str | None,
    normaliser: AnswerNormaliser,
    student: TaskStudent,
    texts: list[str],
    test: list[int],
    said: list[str | None],
) -> None:
    """Accuracy on the held-out part: student where confident and the teacher elsewhere, vs the teacher alone.
    Gold labels are read through the same normaliser ("yes" is the label "Yes")."""
    raw = gold_labels(data, column)
    if raw is None or not test:
        return
    gold = normaliser.labels_of(raw)
    answers = [student.answer(texts[i]) for i in test]
    mixed = [(a[0] if a else said[i]) == gold[i] for a, i in zip(answers, test, strict=True)]
    alone = [said[i] == gold[i] for i in test]
    typer.echo(
        f"held-out accuracy vs gold: {sum(mixed) / len(test):.1%} (student + teacher) "
        f"vs {sum(alone) / len(test):.1%} (teacher alone)"
    )


def register(app: typer.Typer) -> None:
    """Add ``distill`` to the CLI."""
    app.command("distill")(distill)
