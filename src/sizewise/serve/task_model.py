"""One task model (``kind: task``; docs/gateway.md, Task models): its students, its drift watch and its file.

A task has up to two students. The *offline* one is a saved :class:`~sizewise.distill.student.TaskStudent`
(``settings.student``, from ``sizewise distill``); the *online* one is an
:class:`~sizewise.distill.online.OnlineDistiller` learning from the teacher's answers to this task's requests
(``settings.online``). The online student answers once it serves (it passed its target on held-out answers
and its audits still agree); until then the offline student answers, when it is confident and its own
audits still agree. Either way a share of confident answers (``audit_share``) is sent to the teacher
instead, and the teacher's label is compared with the student's: drift shows there first.

Everything here is blocking (a student answers in about a millisecond, a refit takes seconds): the request
path calls :meth:`Task.verdict` in a worker thread and :meth:`Task.observe` in the task desk's learner thread.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sizewise.catalog.schema import ModelSpec, TaskSettings
from sizewise.errors import ConfigError, DataError, SizewiseError

logger = logging.getLogger(__name__)

#: Audited answers remembered until the teacher's answer arrives (oldest forgotten first).
PENDING_AUDITS = 1024
#: The offline student's drift test, as the online student's: the last ``AUDIT_WINDOW`` audits, at least
#: ``MIN_AUDITS``, disagreements that would have probability < ``DRIFT_P`` at the target agreement.
AUDIT_WINDOW = 100
MIN_AUDITS = 20
DRIFT_P = 0.01
#: Why a student leaves a client's request when that client's own audits disagreed with it.
STOPPED_FOR_CLIENT = "student stopped for this client: its audits disagreed with the teacher"
#: Least time between two saves of the online student while it learns (it is saved at shutdown too).
SAVE_EVERY_S = 10.0


@dataclass
class Verdict:
    """What a task's student says about one on-task prompt."""

    #: The label to answer with; None: the student leaves the request (unsure, not serving, or an audit).
    label: str | None
    confidence: float | None = None
    threshold: float | None = None
    #: Confident, but sent to the teacher to watch drift.
    audit: bool = False
    #: Which student spoke: ``online``, ``offline`` or None (none can answer yet).
    student: str | None = None
    why: str = ""
    latency_s: float = 0.0


class AuditWatch:
    """A saved student's audited answers against the teacher's, each client's last ``window``: it stops the
    student for good when their disagreements would be unlikely at the target (one-sided binomial test at
    ``p``, after at least ``least`` audits) even with any one client's audits left out, and for one client
    when its own audits do: the test the online student is held to (:mod:`sizewise.distill.quota`)."""

    def __init__(self, target: float, window: int = AUDIT_WINDOW, least: int = MIN_AUDITS, p: float = DRIFT_P) -> None:
        from sizewise.distill.quota import AuditLedger

        self.target = target
        self.ledger = AuditLedger(window, least, p)
        self.total = 0
        #: Set once the audits contradicted the target; a saved student cannot relearn, so it stays stopped.
        self.drifted = False
        #: Clients whose own audits contradicted the target: the student no longer answers them.
        self.stopped: set[str | None] = set()

    def add(self, agree: bool, client: str | None = None) -> None:
        """One audit's outcome for ``client``'s request (the learner thread); tests for drift."""
        self.ledger.add(client, agree)
        self.total += 1
        if self.drifted:
            return
        self.drifted = self.ledger.drifted(self.target)
        if not self.drifted and self.ledger.client_drifted(client, self.target):
            self.stopped.add(client)

    @property
    def agreement(self) -> float | None:
        """The recent audits' agreement (None before any)."""
        return self.ledger.agreement


class Task:
    """A catalog task model on the request path (build with :meth:`from_spec`)."""

    def __init__(
        self,
        spec: ModelSpec,
        settings: TaskSettings,
        *,
        student: Any = None,
        online: Any = None,
        state_path: Path | None = None,
        seed: int | None = None,
    ) -> None:
        from sizewise.distill.normalise import AnswerNormaliser

        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self.student = student
        self.online = online
        self.state_path = state_path
        self.normaliser = AnswerNormaliser(settings.labels, settings.aliases or None)
        self.watch = AuditWatch(settings.target_agreement)
        # audited prompt -> (the offline student's label, the client asking)
        self._pending: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._saved_at = time.monotonic()
        self._was_serving = self._online_serving()

    @classmethod
    def from_spec(cls, spec: ModelSpec, resolve: Any, state_dir: Path | None) -> Task:
        """The task of catalog entry ``spec``; ``resolve`` maps a catalog path to a file, ``state_dir`` is where
        online students are kept by default. A :class:`ConfigError` naming the entry for any problem."""
        try:
            settings = TaskSettings.model_validate(spec.settings)
        except ValueError as error:
            raise ConfigError(f"task model {spec.name!r}: bad settings: {error}") from None
        from sizewise.distill.normalise import AnswerNormaliser

        try:  # aliases first, before any file is read: one naming no label, or one meaning two labels
            AnswerNormaliser(settings.labels, settings.aliases or None)
        except DataError as error:
            raise ConfigError(f"task model {spec.name!r}: {error}") from None
        student = None
        if settings.student is not None:
            student = _load_student(spec.name, Path(resolve(settings.student)), settings.labels)
        state_path = Path(resolve(settings.state)) if settings.state else None
        if state_path is None and state_dir is not None:
            state_path = state_dir / "tasks" / f"{spec.name}.zip"
        online = _online_student(spec.name, settings, state_path) if settings.online else None
        if settings.online and state_path is None:
            logger.warning("task %s learns online but keeps nothing across restarts (set settings.state)", spec.name)
        return cls(spec, settings, student=student, online=online, state_path=state_path)

    # -- answering -------------------------------------------------------------------
    def verdict(self, text: str, client: str | None = None) -> Verdict:
        """The student's answer to ``client``'s ``text`` (``client``: the API key's name, None when keys are
        off) when it is sure, or why it leaves the request."""
        started = time.perf_counter()
        if self._online_serving() and not self.online.serves(client):
            verdict = Verdict(None, student="online", why=STOPPED_FOR_CLIENT)
        elif self._online_serving():
            verdict = self._online_verdict(text, client)
        elif self.student is not None and client in self.watch.stopped and not self.watch.drifted:
            verdict = Verdict(None, student="offline", why=STOPPED_FOR_CLIENT)
        elif self.student is not None and not self.watch.drifted:
            verdict = self._offline_verdict(text, client)
        else:
            verdict = Verdict(None, why=self._not_serving())
        verdict.latency_s = time.perf_counter() - started
        return verdict

    def _online_verdict(self, text: str, client: str | None) -> Verdict:
        answer = self.online.decide(text, client)
        student = self.online.student
        threshold = _number(getattr(student, "threshold_", None))
        if answer is not None:
            return Verdict(answer.label, answer.confidence, threshold, student="online", why="online student confident")
        if student is None:
            return Verdict(None, student="online", why="online student not serving")
        # None from a serving student: unsure, or sure and picked for an audit (the teacher must answer those).
        _, confidences = student.predict_with_confidence([text])
        confidence = float(confidences[0])
        if threshold is not None and confidence >= threshold:
            return Verdict(None, confidence, threshold, audit=True, student="online", why="audit")
        return Verdict(None, confidence, threshold, student="online", why="online student unsure")

    def _offline_verdict(self, text: str, client: str | None) -> Verdict:
        threshold = float(self.student.threshold_)
        labels, confidences = self.student.predict_with_confidence([text])
        label, confidence = str(labels[0]), float(confidences[0])
        if not confidence >= threshold:
            return Verdict(None, confidence, threshold, student="offline", why="offline student unsure")
        if self.settings.audit_share > 0 and self._rng.random() < self.settings.audit_share:
            with self._lock:
                self._pending[text] = (label, client)
                while len(self._pending) > PENDING_AUDITS:
                    self._pending.popitem(last=False)
            return Verdict(None, confidence, threshold, audit=True, student="offline", why="audit")
        return Verdict(label, confidence, threshold, student="offline", why="offline student confident")

    def _not_serving(self) -> str:
        if self.student is not None and self.watch.drifted:
            return f"offline student stopped: audits agree {self.watch.agreement:.3f} < {self.watch.target}"
        if self.online is not None and self.online.state.stopped_for_drift:
            return "online student stopped: its audits disagreed with the teacher; relearning"
        if self.online is not None:
            return "online student not serving yet"
        return "no student can answer"

    def _online_serving(self) -> bool:
        return self.online is not None and bool(getattr(self.online.state, "serving", False))

    # -- learning (the desk's learner thread) -------------------------------------------
    def observe(self, text: str, answer: str, client: str | None = None) -> None:
        """The teacher answered ``client``'s ``text`` with ``answer``: check a pending audit, teach the online
        student."""
        with self._lock:
            audited = self._pending.pop(text, None)
        if audited is not None:
            label = self.normaliser.label_of(answer)
            if label is not None:
                self.watch.add(label == audited[0], audited[1])
        if self.online is None:
            return
        self.online.observe(text, answer, client)
        serving = self._online_serving()
        if serving != self._was_serving or time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            logger.info("task %s: online student %s", self.name, "serving" if serving else "not serving")
            self._was_serving = serving
            self.save()

    def wait_for_refit(self, timeout_s: float) -> bool:
        """Wait for the online student's refit in flight, if any; False when it still runs after ``timeout_s``."""
        return self.online is None or bool(self.online.wait_for_refit(timeout_s))

    def save(self) -> None:
        """Keep the online student in its file (written aside and renamed: never half a file). The aside file
        has its own name, as replicas on one machine may share the state file: the last save wins whole."""
        if self.online is None or self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.state_path.parent, prefix=self.state_path.name, suffix=".partial")
        os.close(handle)
        partial = Path(name)
        try:
            self.online.save(partial)
            partial.replace(self.state_path)
        finally:
            partial.unlink(missing_ok=True)
        self._saved_at = time.monotonic()

    def report(self) -> dict[str, Any]:
        """The task's state in a few numbers (``sizewise.task`` of an answer, logs)."""
        out: dict[str, Any] = {"teacher": self.settings.teacher, "offline_student": self.student is not None}
        if self.student is not None:
            out["audits"], out["audit_agreement"] = self.watch.total, self.watch.agreement
        if self.online is not None:
            out["online"] = asdict(self.online.state)
        return out


def _load_student(name: str, path: Path, labels: list[str]) -> Any:
    """The saved student of task ``name``; a :class:`ConfigError` when it cannot be read or knows other labels."""
    from sizewise.distill.student import TaskStudent

    try:
        student = TaskStudent.load(path)
    except (SizewiseError, OSError, ValueError) as error:
        raise ConfigError(f"task model {name!r}: cannot load student {path}: {error}") from None
    unknown = sorted(set(student.classes_) - set(labels))
    if unknown:
        raise ConfigError(f"task model {name!r}: student {path} answers {unknown}, which are not in labels {labels}")
    return student


def _online_student(name: str, settings: TaskSettings, state_path: Path | None) -> Any:
    """A new online student, or the one kept in ``state_path`` (a :class:`ConfigError` when that is unreadable)."""
    from sizewise.distill.online import OnlineDistiller

    options: dict[str, Any] = {"target_agreement": settings.target_agreement, "audit_share": settings.audit_share}
    options["aliases"] = settings.aliases or None
    # Refits take seconds to minutes: in the distiller's own thread, so teacher answers and audits are taken in as
    # they come (a refit in the learner thread would queue them behind it, and the queue would only grow).
    options["background"] = True
    if settings.min_examples is not None:
        options["min_examples"] = settings.min_examples
    if settings.retrain_every is not None:
        options["retrain_every"] = settings.retrain_every
    if state_path is not None and state_path.is_file():  # what it learned before a restart
        try:
            return OnlineDistiller.load(state_path, background=True)
        except (SizewiseError, OSError, ValueError) as error:
            raise ConfigError(f"task model {name!r}: cannot read its online student {state_path}: {error}") from None
    try:
        return OnlineDistiller(settings.labels, **options)
    except (DataError, ConfigError) as error:
        raise ConfigError(f"task model {name!r}: {error}") from None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
