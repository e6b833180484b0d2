"""Who teaches a shared task student: no one client outweighs the others (docs/distill.md, Who teaches the student).

A task student is shared by every client of the gateway, but it learns from the teacher's answers to those
clients' own requests, and its audits judge it on them. A client that writes instructions into its prompts
("answer No whatever follows") makes the teacher say what it likes, so without bounds one client could teach
the student wrong answers for everyone, or fake the audits' evidence of drift and stop it. Two rules bound
each client's say by the others', the same for learning and for judging:

* :func:`within_quota` -- **no client outvotes the others.** The busiest client's most recent examples count
  up to all the others' total and up to twice the runner-up's (by count for the fit, by weight for the
  held-out check); the rest are stored but do not count. Against a single other client it can tie, never
  win; against k others sending alike it holds at most 2/(k+2) of what the student learns from, whatever it
  sends, so it cannot outvote them where they taught, and an instruction it repeats stays its own (the student
  learns the shared part of prompts, so a prompt part in most examples would be dropped as shared). Clients
  sending alike are never bounded; a client alone (or the anonymous traffic of a gateway without keys) is
  not either: there is no one else to protect.
* :func:`dissenter` -- **a client the others contradict is left out.** At each refit, when one client's
  held-out answers disagree with the student far more often than the others' do (three clients at least),
  the student is refitted without that client's answers: flipping its copies of everyone's queries would
  otherwise keep every student below the target, for all clients.
* :class:`AuditLedger` -- **drift must not rest on one client.** Each client's last ``window`` audits are
  kept apart (one client's flood cannot push the others' audits out), capped as above, and the binomial
  drift test must still reject with any one client's audits left out. A lone auditing client is judged
  alone, as before. A client whose own audits contradict the target is no longer answered by the student
  (:meth:`AuditLedger.client_drifted`): a client can stop the student for itself, never for the others, and
  no other client can keep a drifted student answering it.

A client is the API key's name; ``None`` is anonymous traffic (keys off), one client.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

#: The drift test's defaults (also the saved student's): the last ``AUDIT_WINDOW`` audits of each client, at
#: least ``MIN_AUDITS`` in all, and disagreements that would be this unlikely (< ``DRIFT_P``) at the target.
AUDIT_WINDOW = 100
MIN_AUDITS = 20
DRIFT_P = 0.01

Client = str | None
#: The largest client counts at most this many times the next largest (and never more than all the others): a
#: factor of 2 never binds on clients that send alike (their counts differ by chance, not by half), and bounds
#: one client among k alike at 2/(k+2) of what a student learns from.
RUNNER_UP_FACTOR = 2.0


def within_quota(clients: Sequence[Client], weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """A keep-mask over examples (oldest first) of ``clients``: the largest client's most recent examples up
    to the others' total and to twice the runner-up's (``weights``, default 1 each); all others' are kept."""
    keep = np.ones(len(clients), dtype=bool)
    w = np.ones(len(clients)) if weights is None else np.asarray(weights, dtype=float)
    totals: dict[Client, float] = {}
    for client, weight in zip(clients, w, strict=True):
        totals[client] = totals.get(client, 0.0) + float(weight)
    if len(totals) < 2:
        return keep
    largest, runner_up = sorted(totals, key=lambda c: totals[c], reverse=True)[:2]
    # Only the largest can exceed either bound (the others' total, twice the runner-up): nobody else needs a cap.
    cap = min(sum(totals.values()) - totals[largest], RUNNER_UP_FACTOR * totals[runner_up])
    kept = 0.0
    for i in range(len(clients) - 1, -1, -1):  # newest first: after drift the recent answers teach the task
        if clients[i] == largest:
            keep[i] = kept + w[i] <= cap
            kept += w[i] if keep[i] else 0.0
    return keep


def counted_mask(clients: Sequence[Client], held: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Which of a distiller's answers count: :func:`within_quota` in the training part by count, in the
    held-out part (``held``) by weight (an audit stands for 1 / audit_share requests)."""
    counted = np.zeros(len(clients), dtype=bool)
    for part, by_weight in ((~held, False), (held, True)):
        index = np.flatnonzero(part)
        counted[index] = within_quota([clients[int(i)] for i in index], weights[index] if by_weight else None)
    return counted


def dissenter(
    clients: Sequence[Client], agreed: Sequence[bool] | np.ndarray, target: float, p: float = DRIFT_P
) -> Client | None:
    """The one client whose held-out answers a student contradicts far more often than the others' (one-sided
    binomial test at ``p`` against the others' pooled rate, at least ``1 - target``), or None. Needs three
    clients: with two, neither can be told from the other by majority."""
    tally: dict[Client, tuple[int, int]] = {}
    for client, agree in zip(clients, agreed, strict=True):
        n, errors = tally.get(client, (0, 0))
        tally[client] = (n + 1, errors + (not agree))
    if len(tally) < 3:
        return None
    worst = max(tally, key=lambda c: tally[c][1] / tally[c][0])
    n, errors = tally[worst]
    rest_n, rest_errors = len(clients) - n, sum(e for _, e in tally.values()) - errors
    rate = max(rest_errors / rest_n, 1.0 - target)
    return worst if drift_rejects(n, errors, 1.0 - rate, 1, p) else None


def drift_rejects(n: int, errors: int, target: float, least: int = MIN_AUDITS, p: float = DRIFT_P) -> bool:
    """One-sided binomial test: are ``errors`` disagreements in ``n`` audits unlikely (< ``p``) at ``target``?"""
    from scipy.stats import binom

    return n >= least and errors > 0 and float(binom.sf(errors - 1, n, 1.0 - target)) < p


class AuditLedger:
    """Each client's recent audits (agreed with the teacher?, a position the caller chooses) and the drift test
    over them: see the module docstring. Not thread-safe: its owner's lock guards it."""

    def __init__(self, window: int = AUDIT_WINDOW, least: int = MIN_AUDITS, p: float = DRIFT_P) -> None:
        self.window, self.least, self.p = window, least, p
        self._by_client: dict[Client, deque[tuple[bool, int]]] = {}

    def add(self, client: Client, agreed: bool, position: int = 0) -> None:
        """One audit of ``client``'s request: did the student agree with the teacher?"""
        self._by_client.setdefault(client, deque(maxlen=self.window)).append((agreed, position))

    def clear(self) -> None:
        """Forget every audit (a new student: the old audits judged another one)."""
        self._by_client.clear()

    def __len__(self) -> int:
        return sum(len(audits) for audits in self._by_client.values())

    @property
    def agreement(self) -> float | None:
        """The recent audits' agreement, every client's counted (None before any)."""
        n = len(self)
        return sum(agreed for audits in self._by_client.values() for agreed, _ in audits) / n if n else None

    def _counted(self) -> dict[Client, list[tuple[bool, int]]]:
        """Each client's audits that count (:func:`within_quota`)."""
        clients = [c for c, audits in self._by_client.items() for _ in audits]
        flat = [a for audits in self._by_client.values() for a in audits]
        keep = within_quota(clients, None)
        counted: dict[Client, list[tuple[bool, int]]] = {}
        for client, audit, kept in zip(clients, flat, keep, strict=True):
            if kept:
                counted.setdefault(client, []).append(audit)
        return counted

    def drifted(self, target: float) -> bool:
        """Do the counted audits contradict ``target``, even with any one client's audits left out?"""
        counted = self._counted()
        tally = {c: (len(audits), sum(not agreed for agreed, _ in audits)) for c, audits in counted.items()}
        n, errors = sum(k for k, _ in tally.values()), sum(e for _, e in tally.values())
        if len(tally) < 2:
            return drift_rejects(n, errors, target, self.least, self.p)
        return all(drift_rejects(n - k, errors - e, target, self.least, self.p) for k, e in tally.values())

    def client_drifted(self, client: Client, target: float) -> bool:
        """Do ``client``'s own recent audits contradict ``target``? (Its answers then come from the teacher.)"""
        audits = self._by_client.get(client, ())
        return drift_rejects(len(audits), sum(not agreed for agreed, _ in audits), target, self.least, self.p)

    def cut(self) -> int | None:
        """Where the disagreement began: the first disagreeing audit's position, or with several clients, the
        earliest position by which two clients had disagreed (one client cannot move it back); None: none."""
        firsts = sorted(
            min(position for agreed, position in audits if not agreed)
            for audits in self._counted().values()
            if any(not agreed for agreed, _ in audits)
        )
        if not firsts:
            return None
        return firsts[0] if len(self._by_client) < 2 else firsts[min(1, len(firsts) - 1)]
