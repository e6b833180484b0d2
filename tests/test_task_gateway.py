"""Task models through the running gateway with the official openai client (docs/distill.md).

A saved student (trained here on the teacher's rule) answers on-task requests when sure; off-task requests
never meet it; an unsure one is answered by the teacher; a request naming a model gets that model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes import GatewayServer
from task_helpers import QUESTION, Teacher, prompts, task_entry, teacher_entry, truthful

#: Routed requests go to ``small`` (the heuristic router's score stays below this), so only the task sends
#: a request to ``big``, its teacher.
ROUTING = {"router": "heuristic", "threshold": 0.99, "log_url": "none"}


@pytest.fixture(scope="module")
def student_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student distilled offline from 300 of the teacher's answers."""
    from sizewise.distill.student import TaskStudent

    texts = prompts(300, seed=1)
    student = TaskStudent(seed=0).fit(texts, ["yes" if truthful(t) else "no" for t in texts])
    return student.save(tmp_path_factory.mktemp("student") / "overruling.zip")


@pytest.fixture(scope="module")
def teacher() -> Iterator[Teacher]:
    with Teacher() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(teacher: Teacher, student_file: Path) -> Iterator[GatewayServer]:
    catalog = {
        "models": [
            teacher_entry("small", teacher.base_url, 1),
            teacher_entry("big", teacher.base_url, 100),
            task_entry(student=str(student_file), online=False, audit_share=0.0),
        ],
        "gateway": ROUTING,
    }
    with GatewayServer(catalog) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, text: str, task: str | None = "overruling", model: str = "sizewise") -> Any:
    extra = {"sizewise": {"task": task}} if task is not None else None
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], extra_body=extra)


def told(response: Any) -> dict[str, Any]:
    """The answer's ``sizewise`` object."""
    return dict(response.model_extra["sizewise"])


def test_a_confident_on_task_request_is_answered_by_the_task_model(client: openai.OpenAI, teacher: Teacher) -> None:
    before = teacher.calls
    for text in prompts(10, seed=2):
        response = ask(client, text)
        sizewise = told(response)
        assert sizewise["model"] == "overruling", str(sizewise)
        assert response.choices[0].message.content == ("yes" if truthful(text) else "no")
        task = sizewise["task"]
        assert task["answered_by"] == "task_model" and task["student"] == "offline"
        assert task["confidence"] >= task["threshold"] > 0
        assert sizewise["score"] == pytest.approx(task["confidence"], abs=1e-3)
        assert [step["model"] for step in sizewise["steps"]] == ["overruling"]
    assert teacher.calls == before  # no model was called


def test_a_streamed_on_task_request_gets_the_label_and_the_decision(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)
    text = prompts(1, seed=3)[0]
    stream = client.chat.completions.create(
        model="sizewise",
        messages=[{"role": "user", "content": text}],
        stream=True,
        extra_body={"sizewise": {"task": "overruling"}},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == ("yes" if truthful(text) else "no")
    final = [c.model_extra["sizewise"] for c in chunks if c.model_extra and "sizewise" in c.model_extra]
    assert final and final[-1]["task"]["answered_by"] == "task_model"


def test_off_task_requests_never_meet_the_task_model(client: openai.OpenAI, teacher: Teacher) -> None:
    before = len(teacher.bodies)
    for text in [*prompts(5, seed=4), "Write a haiku about the sea."]:
        sizewise = told(ask(client, text, task=None))
        assert sizewise["model"] == "small"
        assert "task" not in sizewise
    assert [body["model"] for body in teacher.bodies[before:]] == ["up-small"] * 6


def test_an_unsure_student_leaves_the_request_to_the_teacher(client: openai.OpenAI, teacher: Teacher) -> None:
    before = len(teacher.bodies)
    response = ask(client, QUESTION + "Nothing in this text says anything either way.")
    sizewise = told(response)
    assert sizewise["model"] == "big"
    task = sizewise["task"]
    assert task["answered_by"] == "teacher" and task["label"] is None
    assert task["confidence"] < task["threshold"]
    assert "teacher answers" in sizewise["reason"]
    assert [body["model"] for body in teacher.bodies[before:]] == ["up-big"]


def test_a_named_model_answers_even_on_task(client: openai.OpenAI) -> None:
    sizewise = told(ask(client, prompts(1, seed=5)[0], model="small"))
    assert sizewise["model"] == "small"
    assert sizewise["task"]["answered_by"] == "named model"


@pytest.mark.parametrize(
    ("task", "message"),
    [("nosuchtask", "'nosuchtask' is not a task model"), (7, "must name a task model"), ("", "must name a task")],
)
def test_a_bad_sizewise_task_is_a_400_naming_the_field(client: openai.OpenAI, task: Any, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "Is this overruling?", task=task)
    error = caught.value.body
    assert isinstance(error, dict) and message in error["message"]
    assert error["param"] == "sizewise.task"


@pytest.fixture(scope="module")
def routed(teacher: Teacher, student_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gateway whose task is bound to a domain route: matching prompts are on-task without ``sizewise.task``."""
    patch = pytest.MonkeyPatch()  # the route's examples are embedded into a throwaway cache
    patch.setenv("SIZEWISE_CACHE", str(tmp_path_factory.mktemp("cache")))
    legal = {"name": "legal", "examples": prompts(12, seed=20), "models": ["small", "big"], "threshold": 0.5}
    catalog = {
        "models": [
            teacher_entry("small", teacher.base_url, 1),
            teacher_entry("big", teacher.base_url, 100),
            task_entry(student=str(student_file), online=False, audit_share=0.0, route="legal"),
        ],
        "routes": [legal],
        "gateway": ROUTING,
    }
    with GatewayServer(catalog) as gw:
        yield gw
    patch.undo()


def test_a_task_bound_to_a_route_answers_what_the_route_matches(routed: GatewayServer) -> None:
    client = openai.OpenAI(base_url=routed.url, api_key="unused", max_retries=0)
    on_task = told(ask(client, prompts(1, seed=21)[0], task=None))
    assert on_task["model"] == "overruling" and on_task["task"]["answered_by"] == "task_model"
    off_task = told(ask(client, "Write a short poem about autumn leaves falling in the park.", task=None))
    assert off_task["model"] == "small" and "task" not in off_task


def test_teacher_answers_are_kept_under_the_router_dir_across_a_restart(teacher: Teacher, tmp_path: Path) -> None:
    """Five on-task answers of the teacher (one to a request naming it, one streamed) are learned, written to
    ``<router_dir>/tasks/<name>.zip`` at shutdown, and read back by the next gateway."""
    catalog = {
        "models": [teacher_entry("small", teacher.base_url, 1), teacher_entry("big", teacher.base_url, 100)],
        "gateway": {**ROUTING, "router_dir": str(tmp_path)},
    }
    catalog["models"].append(task_entry())
    texts = prompts(5, seed=30)
    with GatewayServer(catalog) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        for text in texts[:3]:
            assert told(ask(client, text))["task"]["answered_by"] == "teacher"
        assert told(ask(client, texts[3], model="big"))["task"]["answered_by"] == "named model"
        extra = {"sizewise": {"task": "overruling"}}
        stream = client.chat.completions.create(
            model="sizewise", messages=[{"role": "user", "content": texts[4]}], stream=True, extra_body=extra
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        told(ask(client, "Write a haiku about the sea.", task=None))  # off-task: not learned
    state = tmp_path / "tasks" / "overruling.zip"
    assert state.is_file()
    with GatewayServer(catalog) as gw:
        task = gw.app.state.gateway.engine.tasks.tasks["overruling"]
        assert task.online.state.examples == 5


def gateway_with(teacher: Teacher, log: Path | None = None, **settings: Any) -> GatewayServer:
    models = [teacher_entry("small", teacher.base_url, 1), teacher_entry("big", teacher.base_url, 100)]
    # log_text: the log keeps prompts, so it embeds none (a prompt's vector stands in for its text otherwise).
    gateway = {**ROUTING, "log_url": f"sqlite:///{log}", "log_text": True} if log is not None else ROUTING
    return GatewayServer({"models": [*models, task_entry(**settings)], "gateway": gateway})


def test_unsure_policy_leaves_unsure_requests_to_the_router_but_audits_to_the_teacher(
    teacher: Teacher, student_file: Path, tmp_path: Path
) -> None:
    settings = {"student": str(student_file), "online": False, "audit_share": 0.5, "unsure": "policy"}
    with gateway_with(teacher, log=tmp_path / "log.sqlite", **settings) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        unsure = told(ask(client, QUESTION + "Nothing in this text says anything either way."))
        assert unsure["model"] == "small" and unsure["task"]["answered_by"] == "policy"
        sure = [told(ask(client, text)) for text in prompts(16, seed=40)]
        rows = gw.rows()
    audits = [s for s in sure if s["task"]["audit"]]
    assert audits and all(s["model"] == "big" and s["task"]["answered_by"] == "teacher" for s in audits)
    assert {s["model"] for s in sure if not s["task"]["audit"]} == {"overruling"}
    # The request log keeps each student answer as the task model's, with its confidence as the score.
    students = [row for row in rows if row["model"] == "overruling"]
    assert len(students) == len(sure) - len(audits) and all(row["score"] >= row["threshold"] > 0 for row in students)
    assert sorted(row["model"] for row in rows if row["model"] != "overruling") == ["big"] * len(audits) + ["small"]


def test_a_saved_student_stops_answering_when_its_audits_disagree(teacher: Teacher, student_file: Path) -> None:
    """The teacher changes its mind: the audited half of the saved student's answers shows it, and after 20
    audits below the target the student leaves every request to the teacher."""
    with gateway_with(teacher, student=str(student_file), online=False, audit_share=0.5) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        teacher.rule = lambda text: not truthful(text)
        try:
            seen = []
            for text in prompts(120, seed=41):
                seen.append(told(ask(client, text)))
                assert gw.app.state.gateway.engine.tasks.wait_idle(30)
                if "stopped" in seen[-1]["task"]["reason"]:
                    break
        finally:
            teacher.rule = truthful
    last = seen[-1]["task"]
    assert last["answered_by"] == "teacher" and "offline student stopped: audits agree 0.000" in last["reason"]
    assert 20 <= len(seen) < 120


def test_shadow_judging_leaves_task_decisions_alone(teacher: Teacher, student_file: Path, tmp_path: Path) -> None:
    """Shadow judging samples the router's decisions; a student's answer (or a teacher the task asked) is not one."""
    shadow = {"enabled": True, "uniform_rate": 1.0, "active_rate": 0.0, "judge": "big", "concurrency": 1}
    catalog = {
        "models": [
            teacher_entry("small", teacher.base_url, 1),
            teacher_entry("big", teacher.base_url, 100),
            task_entry(student=str(student_file), online=False, audit_share=0.0),
        ],
        "gateway": {**ROUTING, "log_url": f"sqlite:///{tmp_path / 'log.sqlite'}", "log_text": True, "shadow": shadow},
    }
    with GatewayServer(catalog) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        for text in prompts(3, seed=50):
            assert told(ask(client, text))["task"]["answered_by"] == "task_model"
        assert told(ask(client, QUESTION + "Nothing here says either way."))["task"]["answered_by"] == "teacher"
        assert told(ask(client, "Write a haiku about the sea.", task=None))["model"] == "small"  # routed: shadowed
        metrics = gw.app.state.gateway.metrics.registry
        assert metrics.get_sample_value("sizewise_shadow_jobs_total", {"event": "queued"}) == 1


def test_naming_the_task_model_makes_the_request_that_tasks(client: openai.OpenAI) -> None:
    text = prompts(1, seed=60)[0]
    sizewise = told(ask(client, text, task=None, model="overruling"))
    assert sizewise["model"] == "overruling" and sizewise["task"]["answered_by"] == "task_model"
    assert sizewise["policy"] == "sizewise"
    with pytest.raises(openai.BadRequestError, match=r"sizewise\.task names 'other'"):
        ask(client, text, task="other", model="overruling")


def test_a_request_asking_for_more_than_a_label_is_left_to_the_policy(client: openai.OpenAI) -> None:
    text = prompts(1, seed=70)[0]
    for extra in ({"response_format": {"type": "json_object"}}, {"n": 2}, {"logprobs": True}):
        response = client.chat.completions.create(
            model="sizewise",
            messages=[{"role": "user", "content": text}],
            extra_body={"sizewise": {"task": "overruling"}},
            **extra,  # type: ignore[arg-type]
        )
        sizewise = told(response)
        assert sizewise["model"] == "small" and sizewise["task"]["answered_by"] == "policy", extra
        assert "the request asks for" in sizewise["task"]["note"]


def test_under_a_cascade_an_unsure_student_sends_the_request_straight_to_the_teacher(
    teacher: Teacher, student_file: Path
) -> None:
    with gateway_with(teacher, student=str(student_file), online=False, audit_share=0.0) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        unsure = told(
            ask(client, QUESTION + "Nothing in this text says anything either way.", model="cascade-consistency")
        )
        off_task = told(ask(client, "Write a haiku about the sea.", task=None, model="cascade-consistency"))
    assert [step["model"] for step in unsure["steps"]] == ["big"] and unsure["task"]["answered_by"] == "teacher"
    assert off_task["steps"][0]["model"] == "small" and "task" not in off_task  # the cascade climbs from the bottom


def test_an_anthropic_client_gets_the_task_model_too(gateway: GatewayServer) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=gateway.url.removesuffix("/v1"), api_key="unused", max_retries=0)
    text = prompts(1, seed=80)[0]
    raw = client.messages.with_raw_response.create(
        model="sizewise",
        max_tokens=8,
        messages=[{"role": "user", "content": text}],
        extra_body={"sizewise": {"task": "overruling"}},
    )
    message = raw.parse()
    assert raw.headers["x-sizewise-model"] == "overruling"
    assert message.content[0].text == ("yes" if truthful(text) else "no")  # type: ignore[union-attr]


def test_metrics_count_on_task_requests_by_what_answered(gateway: GatewayServer, client: openai.OpenAI) -> None:
    registry = gateway.app.state.gateway.metrics.registry

    def count(answered_by: str) -> float:
        labels = {"task": "overruling", "answered_by": answered_by}
        return registry.get_sample_value("sizewise_task_requests_total", labels) or 0.0

    before = {who: count(who) for who in ("task_model", "teacher")}
    ask(client, prompts(1, seed=90)[0])
    ask(client, QUESTION + "Nothing in this text says anything either way.")
    ask(client, "Write a haiku about the sea.", task=None)  # off-task: not counted
    assert {who: count(who) - before[who] for who in before} == {"task_model": 1.0, "teacher": 1.0}
