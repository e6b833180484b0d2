"""The online distiller: learns from teacher answers as they come, serves only once it passes on held-out
answers, audits a share of its answers and stops when they say the teacher changed its mind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from distill_helpers import synthetic_task
from sizewise.distill.online import OnlineDistiller
from sizewise.errors import ConfigError, DataError, RouterFileError


def stream(distiller: OnlineDistiller, texts: list[str], labels: list[str]) -> tuple[int, int, int]:
    """Requests in order: the student answers when it decides to, the teacher otherwise (and is observed).
    Returns (student answers, of which agreeing with the teacher, teacher calls)."""
    answered = agreeing = calls = 0
    for text, label in zip(texts, labels, strict=True):
        decision = distiller.decide(text)
        if decision is None:
            calls += 1
            distiller.observe(text, f"{label.capitalize()}.")
        else:
            answered += 1
            agreeing += decision.label == label
    return answered, agreeing, calls


@pytest.fixture(scope="module")
def served() -> tuple[OnlineDistiller, tuple[int, int, int]]:
    distiller = OnlineDistiller(["yes", "no"], min_examples=100, retrain_every=100, audit_share=0.0)
    texts, labels = synthetic_task(700, seed=11, clear_share=0.8)
    return distiller, stream(distiller, texts, labels)


def test_nothing_is_served_before_min_examples() -> None:
    distiller = OnlineDistiller(["yes", "no"], min_examples=100, retrain_every=50)
    texts, labels = synthetic_task(99, seed=12, clear_share=1.0)
    answered, _, calls = stream(distiller, texts, labels)
    assert answered == 0 and calls == 99
    state = distiller.state
    assert state.examples == 99 and not state.serving and state.refits == 0 and state.threshold is None


def test_it_serves_once_it_passes_and_agrees_with_the_teacher(
    served: tuple[OnlineDistiller, tuple[int, int, int]],
) -> None:
    distiller, (answered, agreeing, calls) = served
    state = distiller.state
    assert state.serving and state.agreement is not None and state.agreement >= 0.98 and state.refits >= 2
    assert answered > 250 and agreeing / answered >= 0.97  # the coin-flip 20% goes to the teacher
    assert calls + answered == 700 and state.examples == calls


def test_unlearnable_answers_are_never_served() -> None:
    distiller = OnlineDistiller(["yes", "no"], min_examples=100, retrain_every=100)
    texts, labels = synthetic_task(300, seed=13, clear_share=0.0)  # the teacher flips a coin
    answered, _, calls = stream(distiller, texts, labels)
    assert answered == 0 and calls == 300 and distiller.state.refits >= 2 and not distiller.state.serving


def test_audits_catch_drift_and_it_stops_then_relearns() -> None:
    distiller = OnlineDistiller(["yes", "no"], min_examples=100, retrain_every=100, audit_share=0.3, seed=1)
    texts, labels = synthetic_task(400, seed=14, clear_share=0.9)
    stream(distiller, texts, labels)
    assert distiller.state.serving
    flipped_texts, flipped = synthetic_task(250, seed=15, clear_share=0.9, flip=True)
    answered, agreeing, _ = stream(distiller, flipped_texts, flipped)
    state = distiller.state
    assert state.stopped_for_drift >= 1 and state.audits >= 20
    assert answered < 125  # it stopped well before answering the whole flipped stream wrongly
    assert state.examples < 250  # the answers to the old task are forgotten
    answered, agreeing, _ = stream(distiller, *synthetic_task(400, seed=16, clear_share=0.9, flip=True))
    assert distiller.state.serving and answered > 0 and agreeing / answered >= 0.95  # the new teacher's task


def test_unparseable_answers_are_counted_and_kept_out() -> None:
    distiller = OnlineDistiller(["yes", "no"], min_examples=100)
    distiller.observe("Context: a.", "I cannot say.")
    distiller.observe("Context: b.", "Yes and no")
    distiller.observe("Context: c.", "**No**")
    assert distiller.state.unparseable == 2 and distiller.state.examples == 1


def test_threads_decide_and_observe_at_once() -> None:
    distiller = OnlineDistiller(["yes", "no"], min_examples=60, retrain_every=60, background=True, audit_share=0.1)
    texts, labels = synthetic_task(800, seed=17, clear_share=0.8)
    errors: list[BaseException] = []

    def worker(part: int) -> None:
        try:
            stream(distiller, texts[part::4], labels[part::4])
        except BaseException as error:  # any exception in a thread fails the test
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert distiller.wait_for_refit(timeout=120)
    before = distiller.state.refits
    distiller.refit_now()
    state = distiller.state
    # Whether the student then serves depends on which answers thread order held out (it missed the target in
    # about 1 run of 8, at 0.976 and at 0.899 agreement): the serving tests above check that on one thread.
    assert before >= 1 and state.refits == before + 1 and state.examples == 800 and state.agreement is not None


def test_save_and_load_keep_the_examples_and_the_student(
    served: tuple[OnlineDistiller, tuple[int, int, int]], tmp_path: Path
) -> None:
    distiller = served[0]
    path = distiller.save(tmp_path / "distiller.zip")
    loaded = OnlineDistiller.load(path)
    assert loaded.state.examples == distiller.state.examples and loaded.state.serving
    texts, _ = synthetic_task(100, seed=18)
    assert [loaded.decide(t) for t in texts] == [distiller.decide(t) for t in texts]  # no audits: same answers
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(RouterFileError, match="not a valid distiller file"):
        OnlineDistiller.load(broken)


@pytest.mark.parametrize(
    "params",
    [{"target_agreement": 1.0}, {"audit_share": 1.5}, {"min_examples": 2}, {"holdout_share": 0.0}, {"labels": []}],
)
def test_bad_parameters_are_named(params: dict[str, object]) -> None:
    with pytest.raises((ConfigError, DataError)) as info:
        OnlineDistiller(**{"labels": ["yes", "no"], **params})  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_audits_awaiting_the_teacher_are_bounded(
    served: tuple[OnlineDistiller, tuple[int, int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sizewise.distill import online as module

    distiller = served[0]
    monkeypatch.setattr(module, "MAX_PENDING", 3)
    monkeypatch.setattr(distiller, "audit_share", 0.999)
    texts, _ = synthetic_task(200, seed=19, clear_share=1.0)
    decisions = [distiller.decide(t) for t in texts]
    assert decisions.count(None) > 100  # nearly every confident answer became an audit...
    assert len(distiller._pending) == 3  # ...and only the newest three wait for the teacher
    monkeypatch.setattr(distiller, "_pending", {})
