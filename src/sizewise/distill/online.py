"""``OnlineDistiller``: learn a task student from live teacher answers; serve it once it has earned it.

The loop, per on-task request: ``decide(text)`` returns the student's answer, or None (ask the teacher);
after a teacher call, ``observe(text, teacher_answer_text)`` records the normalised answer (unparseable
ones are counted and dropped). Every ``retrain_every`` new answers (once ``min_examples`` exist) a student is
refitted on the training part and checked on the held-out part (a stable random ``holdout_share`` of the
answers, never trained on): it serves only if its answered held-out part agrees with the teacher at
``target_agreement`` or better, on at least ``min_answered`` answers.

While serving, ``decide`` still returns None for a random ``audit_share`` of the confident requests: the
teacher answers those and ``observe`` compares with what the student would have said. When the audits
contradict the target (one-sided binomial test at 1% on the last 100 audits, once 20 exist) serving stops,
the answers older than the first disagreeing audit are forgotten (the teacher changed its mind: its old
answers would teach the old task), and serving resumes only when a refit passes again. Drift is caught by paying for a
few teacher calls, never by trusting the student.

Every answer and audit is its client's (``client``: the API key's name, None for anonymous traffic): the
largest client's answers count no more than the others' together nor twice the runner-up's, a drift stop
must not rest on one client's audits, and a client whose own audits disagree is sent to the teacher
(:mod:`sizewise.distill.quota`).

Thread-safe: one lock guards the state; with ``background=True`` refits run in a daemon thread and the old
student keeps serving meanwhile.
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import zipfile
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.distill.normalise import AnswerNormaliser
from sizewise.distill.quota import AUDIT_WINDOW, DRIFT_P, MIN_AUDITS, AuditLedger, Client, counted_mask, dissenter
from sizewise.distill.student import TaskStudent
from sizewise.errors import ConfigError, RouterFileError

FORMAT = "sizewise-distiller"
# The drift test (sizewise.distill.quota): each client's last AUDIT_WINDOW audits (older ones describe an older
# student), MIN_AUDITS at least (one early disagreement is no evidence), significance DRIFT_P (strict, as the
# test is repeated after every audit).
__all__ = ["AUDIT_WINDOW", "DRIFT_P", "MIN_AUDITS", "DistillerState", "OnlineDistiller", "StudentAnswer"]
#: Audits awaiting the teacher's answer that are kept; the oldest go first (a teacher call that failed never
#: reports back, and the map must not grow forever).
MAX_PENDING = 10_000


@dataclass(frozen=True)
class StudentAnswer:
    """What the student says for one request: the label text and its calibrated confidence."""

    label: str
    confidence: float


@dataclass(frozen=True)
class DistillerState:
    """A snapshot: how much was learned, whether the student serves, and how well it measured."""

    examples: int
    unparseable: int
    serving: bool
    threshold: float | None
    agreement: float | None
    coverage: float | None
    refits: int
    audits: int
    audit_agreement: float | None
    stopped_for_drift: int
    #: Clients that taught the examples kept, and clients the student no longer answers (their own audits
    #: disagreed) until the next student.
    clients: int = 0
    clients_stopped: int = 0


class OnlineDistiller:
    """See the module docstring. ``features``, ``margin`` and ``seed`` go to the :class:`TaskStudent`; its
    threshold needs no margin by default (an offline student's does): here the held-out check and the audits
    guard it, and a margin only made it defer to the teacher more (measured on OVERRULING, results.md)."""

    def __init__(
        self,
        labels: Sequence[str],
        target_agreement: float = 0.98,
        audit_share: float = 0.05,
        min_examples: int = 100,
        retrain_every: int = 100,
        holdout_share: float = 0.25,
        min_answered: int = 30,
        aliases: dict[str, list[str]] | None = None,
        features: str = "tfidf",
        margin: float = 0.0,
        seed: int = 0,
        background: bool = False,
    ) -> None:
        if not 0.5 <= target_agreement < 1 or not 0 <= audit_share < 1 or not 0 < holdout_share < 1:
            raise ConfigError("target_agreement must lie in [0.5, 1), audit_share in [0, 1), holdout_share in (0, 1)")
        if min_examples < 4 or retrain_every < 1 or min_answered < 1:
            raise ConfigError("min_examples must be >= 4, retrain_every and min_answered >= 1")
        self.normaliser = AnswerNormaliser(labels, aliases)
        self.labels, self.aliases = list(labels), aliases
        self.target_agreement, self.audit_share = float(target_agreement), float(audit_share)
        self.min_examples, self.retrain_every = int(min_examples), int(retrain_every)
        self.holdout_share, self.min_answered = float(holdout_share), int(min_answered)
        self.features, self.margin, self.seed, self.background = features, float(margin), seed, background
        self._lock = threading.RLock()
        self._random = random.Random(seed)
        self._texts: list[str] = []
        self._labels: list[str] = []
        self._held: list[bool] = []
        self._weights: list[float] = []  # 1 / P(this request reached the teacher): audits stand for many
        self._clients: list[Client] = []  # whose request each answer was (the quota counts them)
        self._taught: Counter[Client] = Counter()  # answers per client, kept in step with _clients (state is hot)
        # audited text -> (the student's label, the client) awaiting the teacher's answer
        self._pending: dict[str, deque[tuple[str, Client]]] = {}
        self._audits = AuditLedger(AUDIT_WINDOW, MIN_AUDITS, DRIFT_P)  # positions: examples held then
        self._stopped: set[Client] = set()  # clients whose own audits disagreed with the serving student
        self._student: TaskStudent | None = None
        self._serving = False
        self._since_fit = 0
        self._refits = self._unparseable = self._stops = self._audit_total = 0
        self._measured: tuple[float, float] | None = None  # held-out (agreement, coverage) of the last refit
        self._refitting = False
        self._thread: threading.Thread | None = None
        self._generation = 0  # bumped when drift drops old examples: a refit begun before then is stale

    # -- the request path ------------------------------------------------------------
    def serves(self, client: Client = None) -> bool:
        """Whether a student answers ``client``'s requests now (serving, and its audits did not stop it)."""
        with self._lock:
            return self._serving and client not in self._stopped

    def decide(self, text: str, client: Client = None) -> StudentAnswer | None:
        """The student's answer for ``client`` when it serves and is confident; None: the teacher answers (and
        for a random ``audit_share`` of confident answers, recorded as audits)."""
        with self._lock:
            student = self._student if self._serving and client not in self._stopped else None
        if student is None:
            return None
        found = student.answer(text)
        if found is None:
            return None
        with self._lock:
            if self._random.random() < self.audit_share:
                self._pending.setdefault(text, deque()).append((found[0], client))
                while len(self._pending) > MAX_PENDING:
                    del self._pending[next(iter(self._pending))]
                return None
        return StudentAnswer(*found)

    def observe(self, text: str, teacher_answer_text: str, client: Client = None) -> None:
        """Record the teacher's answer to ``client``'s ``text``; refit when due (in a thread with ``background``)."""
        label = self.normaliser.label_of(teacher_answer_text)
        with self._lock:
            if label is None:
                self._unparseable += 1
                self._pending.pop(text, None)
                return
            audited = self._check_audit(text, label, client)
            self._texts.append(text)
            self._clients.append(client)
            self._taught[client] += 1
            self._labels.append(label)
            self._held.append(self._random.random() < self.holdout_share)
            self._weights.append(1.0 / self.audit_share if audited else 1.0)
            self._since_fit += 1
            due = (
                len(self._texts) >= self.min_examples and self._since_fit >= self.retrain_every and not self._refitting
            )
            if due:
                self._refitting, self._since_fit = True, 0
        if due:
            if self.background:
                thread = threading.Thread(target=self._refit, name="sizewise-distill-refit", daemon=True)
                with self._lock:
                    self._thread = thread
                thread.start()
            else:
                self._refit()

    def _check_audit(self, text: str, label: str, client: Client) -> bool:
        """Score an audit of ``client``'s ``text`` (if it was one) and stop serving on drift (everyone's when it
        does not rest on one client, else this client's); True if it was an audit."""
        waiting = self._pending.get(text)
        if not waiting:
            return False
        # The same text may await audits of several clients: take this client's, else the oldest.
        entry = next((entry for entry in waiting if entry[1] == client), waiting[0])
        waiting.remove(entry)
        said = entry[0]
        if not waiting:
            del self._pending[text]
        self._audits.add(client, said == label, len(self._texts))
        self._audit_total += 1
        if not self._serving:
            return True
        if self._audits.drifted(self.target_agreement):
            self._serving = False
            self._stops += 1
            self._generation += 1
            # Forget what the teacher said before the disagreement began: it taught the old task.
            cut = self._audits.cut() or 0
            self._texts, self._labels = self._texts[cut:], self._labels[cut:]
            self._held, self._weights, self._clients = self._held[cut:], self._weights[cut:], self._clients[cut:]
            self._taught = Counter(self._clients)
            self._audits.clear()
            self._stopped.clear()
            self._since_fit = 0
        elif self._audits.client_drifted(client, self.target_agreement):
            self._stopped.add(client)
        return True

    # -- learning --------------------------------------------------------------------
    def _refit(self) -> None:
        try:
            with self._lock:
                texts, labels, held = list(self._texts), list(self._labels), np.array(self._held)
                weights, generation, clients = np.array(self._weights), self._generation, list(self._clients)
            result = self._fit_and_check(texts, labels, held, weights, counted_mask(clients, held, weights), clients)
            with self._lock:
                self._refits += 1
                if result is not None and generation == self._generation:
                    student, agreement, coverage = result
                    self._measured = (agreement, coverage)
                    if agreement >= self.target_agreement and coverage > 0:
                        self._student, self._serving = student, True
                        self._audits.clear()  # a new student: the audits and stops were the old one's
                        self._stopped.clear()
                    # A student that fails keeps nothing; the one serving (if any) stays, watched by the audits.
        finally:
            with self._lock:
                self._refitting = False

    def _fit_and_check(
        self,
        texts: list[str],
        labels: list[str],
        held: np.ndarray,
        weights: np.ndarray,
        counted: np.ndarray,
        clients: list[Client],
        judge: bool = True,
    ) -> tuple[TaskStudent, float, float] | None:
        """A student fitted on the training part, with its held-out (agreement, coverage); None if it cannot.

        While a student serves, the teacher sees its unsure requests and only an audit share of its sure ones,
        so the held-out answers over-represent hard requests; each counts with weight 1 / P(the teacher saw
        it) (inverse propensity), which makes the measured agreement and coverage those of all traffic. Only
        the ``counted`` answers take part (the clients' quota); when one client's held-out answers contradict
        the student far more than the others' do (:func:`dissenter`), it is refitted without that client."""
        train = np.flatnonzero(~held & counted)
        test = np.flatnonzero(held & counted)
        if len({labels[i] for i in train}) < 2 or len(test) == 0:
            return None
        student = TaskStudent(
            features=self.features, target_agreement=self.target_agreement, margin=self.margin, seed=self.seed
        )
        student.fit([texts[i] for i in train], [labels[i] for i in train])
        predicted, confidence = student.predict_with_confidence([texts[i] for i in test])
        agree = np.array([predicted[j] == labels[i] for j, i in enumerate(test)])
        outlier = dissenter([clients[i] for i in test], agree, self.target_agreement) if judge else None
        if outlier is not None:  # the quota is recomputed without it: its share bounded the others' too
            index = np.flatnonzero([client != outlier for client in clients])
            without = np.zeros(len(clients), dtype=bool)
            without[index] = counted_mask([clients[i] for i in index], held[index], weights[index])
            return self._fit_and_check(texts, labels, held, weights, without, clients, judge=False)
        answered = confidence >= student.threshold_
        w = weights[test]
        coverage = float(w[answered].sum() / w.sum())
        if answered.sum() < self.min_answered:
            return student, 0.0, coverage
        return student, float((w * agree)[answered].sum() / w[answered].sum()), coverage

    def wait_for_refit(self, timeout: float | None = None) -> bool:
        """Wait for a background refit in flight (if any); False if it is still running after ``timeout`` s."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def refit_now(self) -> None:
        """Refit at once (synchronously, after any background refit in flight), whatever the counters say."""
        self.wait_for_refit()
        with self._lock:
            if self._refitting:
                return
            self._refitting, self._since_fit = True, 0
        self._refit()

    # -- state -----------------------------------------------------------------------
    @property
    def state(self) -> DistillerState:
        """A consistent snapshot of the counters and the last measurement."""
        with self._lock:
            agreement, coverage = self._measured if self._measured else (None, None)
            threshold = self._student.threshold_ if self._student is not None else None
            return DistillerState(
                examples=len(self._texts),
                unparseable=self._unparseable,
                serving=self._serving,
                threshold=threshold if threshold is None or np.isfinite(threshold) else None,
                agreement=agreement,
                coverage=coverage,
                refits=self._refits,
                audits=self._audit_total,
                audit_agreement=self._audits.agreement,
                stopped_for_drift=self._stops,
                clients=len(self._taught),
                clients_stopped=len(self._stopped),
            )

    @property
    def student(self) -> TaskStudent | None:
        """The last student that passed its check (serving or stopped for drift), or None."""
        with self._lock:
            return self._student

    def save(self, path: str | Path) -> Path:
        """One zip: the examples and counters as JSON, the student (if any) as its own safe file."""
        path = Path(path)
        with self._lock:
            header = {
                "format": FORMAT,
                "params": self._params(),
                "texts": self._texts,
                "labels": self._labels,
                "held": self._held,
                "weights": self._weights,
                "clients": self._clients,
                "serving": self._serving,
                "state": asdict(self.state),
            }
            student = self._student
        student_bytes = None
        if student is not None:
            with tempfile.TemporaryDirectory() as folder:
                student_bytes = student.save(Path(folder) / "student.zip").read_bytes()
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("distiller.json", json.dumps(header))
            if student_bytes is not None:
                archive.writestr("student.zip", student_bytes)
        return path

    def _params(self) -> dict[str, Any]:
        names = ("labels", "target_agreement", "audit_share", "min_examples", "retrain_every", "holdout_share")
        return {n: getattr(self, n) for n in (*names, "min_answered", "aliases", "features", "margin", "seed")}

    @classmethod
    def load(cls, path: str | Path, background: bool = False) -> OnlineDistiller:
        """Read a file written by :meth:`save`; a :class:`RouterFileError` naming a bad one."""
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as archive:
                header = json.loads(archive.read("distiller.json"))
                student_bytes = archive.read("student.zip") if "student.zip" in archive.namelist() else None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError("not a distiller file")
            distiller = cls(**header["params"], background=background)
            texts, labels, held, weights = header["texts"], header["labels"], header["held"], header.get("weights")
            weights = [1.0] * len(held) if weights is None else weights  # files from before the weights
            clients = header.get("clients") or [None] * len(held)  # files from before the quota: anonymous
            if not (len(texts) == len(labels) == len(held) == len(weights) == len(clients)) or not all(
                isinstance(t, str) for t in texts
            ):
                raise ValueError("its examples are malformed")
            if not all(c is None or isinstance(c, str) for c in clients):
                raise ValueError("its clients are malformed")
        except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError, ConfigError) as error:
            raise RouterFileError(f"{path}: not a valid distiller file ({error})") from None
        distiller._texts, distiller._labels, distiller._held = list(texts), list(labels), [bool(h) for h in held]
        distiller._weights, distiller._clients = [float(w) for w in weights], list(clients)
        distiller._taught = Counter(distiller._clients)
        if student_bytes is not None:
            with tempfile.TemporaryDirectory() as folder:
                student_path = Path(folder) / "student.zip"
                student_path.write_bytes(student_bytes)
                try:
                    distiller._student = TaskStudent.load(student_path)
                except RouterFileError as error:
                    raise RouterFileError(f"{path}: its student is not valid ({error})") from None
            distiller._serving = bool(header.get("serving"))
        return distiller
