"""The saved student's drift watch (``sizewise.serve.task_model.AuditWatch``): the online student's test."""

from __future__ import annotations

from sizewise.serve.task_model import AuditWatch


def test_one_disagreement_in_twenty_audits_is_no_drift_at_98_percent() -> None:
    """A student that agrees 98% of the time disagrees once in 20 audits a third of the time: not a stop."""
    watch = AuditWatch(0.98)
    for i in range(20):
        watch.add(i != 7)
    assert not watch.drifted and watch.agreement == 0.95


def test_drift_needs_twenty_audits_then_stops_for_good() -> None:
    watch = AuditWatch(0.98)
    for _ in range(19):
        watch.add(False)
    assert not watch.drifted  # too few audits to judge
    watch.add(False)
    assert watch.drifted
    for _ in range(200):
        watch.add(True)  # later agreement does not restart a saved student: it cannot relearn
    assert watch.drifted and watch.total == 220


def test_three_disagreements_in_twenty_audits_is_drift() -> None:
    watch = AuditWatch(0.98)
    for i in range(20):
        watch.add(i not in (3, 9, 15))
    assert watch.drifted
