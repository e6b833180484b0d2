"""How a distilled student is measured: k-fold out of fold (offline) and a stream from zero (online).

A task here is texts, the teacher's raw answers, gold labels, and the teacher's per-query correctness and
cost. Offline: each fold's student is fitted on the other folds' normalised teacher answers (unparseable
ones left out) and answers the held-out fold where confident; the teacher answers the rest. Online: the
requests arrive in order, an :class:`~sizewise.distill.online.OnlineDistiller` decides each, and every
teacher call (those it learns from, audits included) is paid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sizewise.distill.normalise import AnswerNormaliser
from sizewise.distill.online import OnlineDistiller
from sizewise.distill.student import TaskStudent


@dataclass
class Task:
    """One narrow task with a teacher's recorded (or cached live) answers."""

    name: str
    labels: list[str]
    texts: list[str]
    teacher_answers: list[str]
    gold: list[str]
    teacher_correct: np.ndarray  # 1.0 where the teacher's answer is the gold label
    teacher_cost: np.ndarray  # USD (or CPU seconds for a local teacher) per query

    @property
    def teacher_labels(self) -> list[str | None]:
        return AnswerNormaliser(self.labels).labels_of(self.teacher_answers)


def out_of_fold(task: Task, params: dict[str, Any], folds: int = 5, seed: int = 0, timing: int = 200) -> dict[str, Any]:
    """Coverage, agreement, accuracy, cost and per-request latency of the student, ``folds``-fold out of fold."""
    teacher = task.teacher_labels
    n = len(task.texts)
    order = np.random.default_rng(seed).permutation(n)
    said: list[str | None] = [None] * n
    latencies: list[float] = []
    thresholds = []
    for fold in range(folds):
        test = order[fold::folds]
        train = [i for i in np.setdiff1d(order, test) if teacher[i] is not None]
        student = TaskStudent(**params, seed=seed).fit([task.texts[i] for i in train], [teacher[i] for i in train])
        thresholds.append(student.threshold_)
        for j, i in enumerate(test):
            start = time.perf_counter()
            found = student.answer(task.texts[i])
            if j < timing:
                latencies.append(time.perf_counter() - start)
            said[i] = found[0] if found else None
    return summarise(task, said, np.ones(n, dtype=bool) ^ np.array([s is not None for s in said]), latencies) | {
        "thresholds": thresholds
    }


def summarise(task: Task, said: list[str | None], teacher_called: np.ndarray, latencies: list[float]) -> dict[str, Any]:
    """The columns of the benchmark table for one run."""
    teacher = task.teacher_labels
    answered = np.array([s is not None for s in said])
    agree = [said[i] == teacher[i] for i in np.flatnonzero(answered) if teacher[i] is not None]
    correct = np.where(
        answered, [s == g for s, g in zip(said, task.gold, strict=True)], task.teacher_correct.astype(bool)
    )
    ms = np.array(latencies) * 1e3
    return {
        "n": len(task.texts),
        "coverage": float(answered.mean()),
        "agreement": float(np.mean(agree)) if agree else float("nan"),
        "accuracy": float(correct.mean()),
        "teacher_accuracy": float(task.teacher_correct.mean()),
        "cost_share": float(task.teacher_cost[teacher_called].sum() / task.teacher_cost.sum()),
        "teacher_calls": int(teacher_called.sum()),
        "p50_ms": float(np.median(ms)) if ms.size else float("nan"),
        "p99_ms": float(np.quantile(ms, 0.99)) if ms.size else float("nan"),
    }


def online(task: Task, params: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Stream the task in order from zero: the distiller decides, the teacher answers (and is paid) otherwise."""
    distiller = OnlineDistiller(task.labels, seed=seed, **params)
    n = len(task.texts)
    said: list[str | None] = [None] * n
    called = np.zeros(n, dtype=bool)
    latencies: list[float] = []
    start_serving = None
    for i, text in enumerate(task.texts):
        start = time.perf_counter()
        decision = distiller.decide(text)
        latencies.append(time.perf_counter() - start)
        if decision is None:
            called[i] = True
            distiller.observe(text, task.teacher_answers[i])
        else:
            said[i] = decision.label
            start_serving = i if start_serving is None else start_serving
    state = distiller.state
    return summarise(task, said, called, latencies) | {
        "first_served": start_serving,
        "refits": state.refits,
        "audits": state.audits,
        "stopped_for_drift": state.stopped_for_drift,
        "unparseable": state.unparseable,
    }
