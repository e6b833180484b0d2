"""The online loop through the running gateway (docs/distill.md): a task model with no student learns from the
teacher's answers to on-task requests, starts answering once it passes its target on held-out answers, keeps
what it learned across a restart, and stops answering when audits show the teacher changed its mind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes import GatewayServer
from task_helpers import Teacher, prompts, task_entry, teacher_entry, truthful

pytestmark = pytest.mark.slow

ROUTING = {"router": "heuristic", "threshold": 0.99, "log_url": "none"}
#: Small enough for a test: first fit after 40 teacher answers, a refit every 20, one audit in four.
ONLINE = {"min_examples": 40, "retrain_every": 20, "audit_share": 0.25}


def catalog(teacher: Teacher, state: Path) -> dict[str, Any]:
    return {
        "models": [
            teacher_entry("small", teacher.base_url, 1),
            teacher_entry("big", teacher.base_url, 100),
            task_entry(state=str(state), **ONLINE),
        ],
        "gateway": ROUTING,
    }


def run(gateway: GatewayServer, texts: list[str]) -> list[dict[str, Any]]:
    """Send each text as an on-task request, in order; each answer's ``sizewise.task`` with the text and answer."""
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)
    out = []
    for text in texts:
        response = client.chat.completions.create(
            model="sizewise",
            messages=[{"role": "user", "content": text}],
            extra_body={"sizewise": {"task": "overruling"}},
        )
        task = dict(response.model_extra["sizewise"]["task"])
        out.append({**task, "text": text, "answer": response.choices[0].message.content})
    return out


def settle(gateway: GatewayServer) -> None:
    """Wait until every teacher answer sent so far is learned and no refit is running."""
    assert gateway.app.state.gateway.engine.tasks.wait_idle(120)


@pytest.fixture(scope="module")
def teacher() -> Iterator[Teacher]:
    with Teacher() as server:
        yield server


@pytest.fixture(scope="module")
def learned(teacher: Teacher, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """240 on-task requests streamed through a gateway whose task starts with no student; then it shuts down."""
    state = tmp_path_factory.mktemp("task-state") / "overruling.zip"
    with GatewayServer(catalog(teacher, state)) as gateway:
        records = []
        for start in range(0, 240, 20):  # let the learner keep up, as a real gateway's would between bursts
            records += run(gateway, prompts(240, seed=11)[start : start + 20])
            settle(gateway)
    return state, records


def test_the_student_answers_only_after_it_passes_its_target(learned: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = learned
    by = [r["answered_by"] for r in records]
    first = by.index("task_model")
    assert first >= ONLINE["min_examples"]  # no student before the first fit
    assert all(b == "teacher" for b in by[:first])
    assert by[:first].count("teacher") == first
    late = by[-60:]
    assert late.count("task_model") >= 30, by  # it serves most of the traffic once it passed
    answered = [r for r in records if r["answered_by"] == "task_model"]
    assert all(r["answer"] == ("yes" if truthful(r["text"]) else "no") for r in answered)
    assert all(r["confidence"] >= r["threshold"] for r in answered)
    audits = [r for r in records[first:] if r["audit"]]
    assert audits and all(r["answered_by"] == "teacher" for r in audits)  # audits are the teacher's to answer
    print(f"online: first student answer at request {first}; last 60: {late.count('task_model')} by the student")


def test_a_restart_keeps_the_student_and_drift_stops_it(
    learned: tuple[Path, list[dict[str, Any]]], teacher: Teacher
) -> None:
    state, _ = learned
    assert state.is_file()
    with GatewayServer(catalog(teacher, state)) as gateway:
        before = run(gateway, prompts(20, seed=12))
        assert sum(r["answered_by"] == "task_model" for r in before) >= 10  # serving at once, no relearning
        teacher.rule = lambda text: not truthful(text)  # the teacher changes its mind
        try:
            after: list[dict[str, Any]] = []
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and len(after) < 300:
                after += run(gateway, prompts(10, seed=13 + len(after)))
                settle(gateway)
                if all(r["answered_by"] == "teacher" for r in after[-10:]):
                    break
        finally:
            teacher.rule = truthful
    by = [r["answered_by"] for r in after]
    assert by[-10:] == ["teacher"] * 10, by  # the audits caught the drift: the student stopped answering
    assert "stopped: its audits disagreed with the teacher" in after[-1]["reason"]
    first_stop = next(i for i, r in enumerate(after) if "stopped" in r["reason"])
    print(f"drift: stopped after {first_stop} requests of the changed teacher; {len(after)} sent")


def test_concurrent_on_task_requests_are_each_answered_and_learned_once(teacher: Teacher, tmp_path: Path) -> None:
    """Sixteen clients at once while the student learns and starts serving: no request fails, and every answer
    of the teacher is learned exactly once (the learner thread takes them in order, refits run beside it)."""
    import asyncio

    async def flood(url: str) -> list[dict[str, Any]]:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
        gate = asyncio.Semaphore(16)

        async def one(text: str) -> dict[str, Any]:
            async with gate:
                response = await client.chat.completions.create(
                    model="sizewise",
                    messages=[{"role": "user", "content": text}],
                    extra_body={"sizewise": {"task": "overruling"}},
                )
            return dict(response.model_extra["sizewise"]["task"])

        return await asyncio.gather(*(one(text) for text in prompts(200, seed=31)))

    with GatewayServer(catalog(teacher, tmp_path / "state.zip")) as gateway:
        records = asyncio.run(flood(gateway.url))
        settle(gateway)
        state = gateway.app.state.gateway.engine.tasks.tasks["overruling"].online.state
    taught = sum(r["answered_by"] == "teacher" for r in records)
    assert len(records) == 200 and state.stopped_for_drift == 0  # no drift cut examples: all are still there
    assert state.examples + state.unparseable == taught


def test_two_replicas_keeping_one_state_file_never_break_it(tmp_path: Path) -> None:
    """Replicas on one machine share the task's state file: each save is written aside under its own name and
    renamed, so saves racing from two processes (threads here) never collide or leave half a file."""
    import threading

    from sizewise.catalog.schema import ModelSpec
    from sizewise.distill.online import OnlineDistiller
    from sizewise.serve.task_model import Task

    state = tmp_path / "task.zip"
    spec = ModelSpec.model_validate(task_entry(state=str(state), **ONLINE))
    replicas = [Task.from_spec(spec, Path, None) for _ in range(2)]
    errors: list[BaseException] = []

    def keep(task: Task) -> None:
        for _ in range(40):
            try:
                task.save()
            except Exception as error:  # the old shared ".partial" name: FileNotFoundError on rename
                errors.append(error)

    threads = [threading.Thread(target=keep, args=(task,)) for task in replicas for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert OnlineDistiller.load(state) is not None and not list(tmp_path.glob("*.partial*"))
