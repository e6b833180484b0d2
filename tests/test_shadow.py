"""Shadow judging (#22 item 2): a live gateway with the official openai client; the weak, strong and judge
models are one recording upstream on 127.0.0.1 (the strong one can be held, to prove the shadow call is
not on the request path; the judge answers A or B by what it reads, or always A)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes import GatewayServer, ThreadedServer, fake_model, read_body, send_answer
from privacy_cases import CASES
from sizewise.learn.outcomes import OutcomeStore
from sizewise.learn.shadow_spend import SpendLedger

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
WEAK_ROUTE = "router-heuristic-0.9"  # a short prompt scores far below 0.9: the weak model answers


class Upstream(ThreadedServer):
    """weak-up / strong-up (held while ``hold`` is set) / strong-leaky (answers with an email) /
    judge-smart (prefers the answer saying "strong") / judge-a (always A). ``bodies`` records every call."""

    def __init__(self) -> None:
        self.bodies: list[tuple[float, dict[str, Any]]] = []
        self.hold = threading.Event()
        super().__init__(self.app)

    def calls(self, model: str) -> list[dict[str, Any]]:
        return [body for _, body in self.bodies if body.get("model") == model]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive) or b"{}")
        self.bodies.append((time.monotonic(), body))
        model = body.get("model", "")
        text = {"weak-up": "weak answer", "strong-up": "strong answer"}.get(model, "")
        if model == "strong-up":
            deadline = time.monotonic() + 10
            while self.hold.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        elif model == "strong-four":
            text = "2 + 2 makes 4"
        elif model == "strong-leaky":
            text = "strong answer: write to jane.doe@example.org"
        elif model in ("strong-down", "weak-down"):
            error = json.dumps({"error": {"message": "overloaded", "type": "server_error"}}).encode()
            await send(
                {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": error})
            return
        elif model == "judge-vague":
            text = "Both answers have merit."
        elif model.startswith("judge"):
            user = body["messages"][-1]["content"]
            first = user.split("[Answer A]", 1)[1].split("[Answer B]", 1)[0]
            text = "A" if model == "judge-a" or "strong" in first else "B"
        await send_answer(send, model, text, USAGE, stream=bool(body.get("stream")))


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture
def up(upstream: Upstream) -> Upstream:
    upstream.bodies.clear()
    upstream.hold.clear()
    return upstream


def catalog(
    up: Upstream, tmp_path: Path, *, judge: str = "judge-smart", strong: str = "strong-up", **shadow: Any
) -> dict[str, Any]:
    weak_where = shadow.pop("weak_location", "remote")
    strong_where = shadow.pop("strong_location", "remote")
    privacy = shadow.pop("privacy", "off")
    big = 1_000_000  # the long privacy cases (2,000 identifiers before the secret) must fit
    models = [
        fake_model("weak", "weak-up", 1, up.base_url, location=weak_where, context_window=big),
        fake_model("strong", strong, 2, up.base_url, location=strong_where, timeout_s=15.0, context_window=big),
        fake_model("judge", judge, 3, up.base_url, context_window=big),
    ]
    settings = {"uniform_rate": 1.0, "active_rate": 0.0, "judge": "judge", "concurrency": 1, **shadow}
    gateway = {
        "ladder": ["weak", "strong"],
        "privacy": privacy,
        "log_url": f"sqlite:///{tmp_path / 'log.sqlite'}",
        "shadow": {"enabled": True, **settings},
    }
    return {"models": models, "gateway": gateway}


def ask(gw: GatewayServer, content: Any = "What is 2+2?", timeout: float = 5.0, **body: Any) -> tuple[str, float]:
    """(request id, client latency in seconds) of one non-streamed request."""
    client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=timeout)
    messages = body.pop("messages", [{"role": "user", "content": content}])
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(model=WEAK_ROUTE, messages=messages, **body)
    latency = time.perf_counter() - started
    assert raw.headers["x-sizewise-model"] == "weak"
    return raw.headers["x-request-id"], latency


def events(gw: GatewayServer) -> dict[str, float]:
    text = gw.app.state.gateway.metrics.render().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("sizewise_shadow_jobs_total{"):
            name, value = line.split("} ")
            out[name.split('"')[1]] = float(value)
    return out


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def settled(gw: GatewayServer, done: float) -> Callable[[], bool]:
    """True once ``done`` jobs have ended (judged, capped, dropped, failed or stopped for privacy)."""
    ended = ("judged", "capped", "failed", "privacy", "dropped")
    return lambda: sum(v for k, v in events(gw).items() if k in ended) >= done


# -- live gateway ------------------------------------------------------------------------------------------
def test_the_shadow_call_comes_after_the_answer_and_is_judged_in_both_orders(up: Upstream, tmp_path: Path) -> None:
    spec = catalog(up, tmp_path)
    up.hold.set()  # the strong model answers only when released: on the request path, the client would wait
    with GatewayServer(spec) as gw:
        request_id, latency = ask(gw, timeout=6.0)
        assert latency < 5.0  # the held shadow call takes 10 s
        wait_for(lambda: len(up.calls("strong-up")) == 1)  # the shadow call came, after the answer
        assert not up.calls("judge-smart")
        up.hold.clear()
        store = OutcomeStore(gw.app.state.gateway.settings.log_url)
        wait_for(lambda: len(store.outcomes()) == 2)
    judged = up.calls("judge-smart")
    assert len(judged) == 2
    shown = [call["messages"][-1]["content"].split("[Answer B]") for call in judged]
    assert "weak answer" in shown[0][0] and "strong answer" in shown[0][1]  # A = served, B = shadow
    assert "strong answer" in shown[1][0] and "weak answer" in shown[1][1]  # then swapped
    outcomes = {o.model: o for o in store.outcomes()}
    assert {o.request_id for o in outcomes.values()} == {request_id}
    assert (outcomes["strong"].score, outcomes["weak"].score) == (1.0, 0.0)
    assert outcomes["weak"].source == "llm-judge" and outcomes["weak"].other_model == "strong"
    assert outcomes["weak"].detail["served"] and not outcomes["strong"].detail["served"]
    assert outcomes["weak"].detail["inclusion_p"] == 1.0 and outcomes["weak"].detail["chosen_by"] == "uniform"
    assert outcomes["weak"].detail["verdicts"] == ["B", "A"]
    assert outcomes["strong"].detail["cost"] == pytest.approx(4e-5) and outcomes["strong"].detail["tokens_out"] == 5
    assert outcomes["strong"].detail["latency"] > 0 and "cost" not in outcomes["weak"].detail  # the log has it


def test_a_streamed_answer_is_shadowed_once_the_stream_is_over(up: Upstream, tmp_path: Path) -> None:
    with GatewayServer(catalog(up, tmp_path)) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=5.0)
        stream = client.chat.completions.create(
            model=WEAK_ROUTE, messages=[{"role": "user", "content": "What is 2+2?"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "weak answer"
        store = OutcomeStore(gw.app.state.gateway.settings.log_url)
        wait_for(lambda: len(store.outcomes()) == 2)
    assert {o.model: o.score for o in store.outcomes()} == {"weak": 0.0, "strong": 1.0}
    assert "weak answer" in up.calls("judge-smart")[0]["messages"][-1]["content"]


def test_an_answer_from_a_fallback_is_not_shadowed(up: Upstream, tmp_path: Path) -> None:
    spec = catalog(up, tmp_path)
    spec["models"][0]["settings"]["model"] = "weak-down"  # answers 503: the strong model answers instead
    spec["gateway"]["fallback_for_named_models"] = True
    with GatewayServer(spec) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=5.0)
        raw = client.chat.completions.with_raw_response.create(
            model=WEAK_ROUTE, messages=[{"role": "user", "content": "What is 2+2?"}]
        )
        assert raw.headers["x-sizewise-model"] == "strong"
        time.sleep(0.5)
        assert events(gw).get("queued", 0) == 0
    assert len(up.calls("weak-down")) == 2 and len(up.calls("strong-up")) == 1  # retried once, then fell back


def test_tool_requests_are_not_shadowed(up: Upstream, tmp_path: Path) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    with GatewayServer(catalog(up, tmp_path)) as gw:
        ask(gw, tools=[tool])
        ask(gw)  # jobs run in order: once this one is judged, a job for the first would have run
        wait_for(settled(gw, 1))
    assert len(up.calls("strong-up")) == 1 and "tools" not in up.calls("strong-up")[0]


def test_shadowed_requests_export_as_an_outcome_table_with_both_models(
    up: Upstream, tmp_path: Path, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    spec = catalog(up, tmp_path)
    with GatewayServer(spec) as gw:
        request_id, _ = ask(gw)
        store = OutcomeStore(spec["gateway"]["log_url"])
        wait_for(lambda: len(store.outcomes()) == 2)
        gw.rows()  # the request log has written the request's row
    out = tmp_path / "mine.jsonl"
    code, printed, _ = run_cli("outcomes", "export", "--db", spec["gateway"]["log_url"], "--out", str(out))
    assert code == 0 and "1 judged on 2+ models" in printed
    rows = {row["model"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert {row["prompt_id"] for row in rows.values()} == {request_id}
    assert (rows["weak"]["quality"], rows["strong"]["quality"]) == (0.0, 1.0)
    assert rows["strong"]["cost"] == pytest.approx(4e-5) and rows["strong"]["tokens_out"] == 5


def test_a_judge_that_always_says_a_gives_a_tie(up: Upstream, tmp_path: Path) -> None:
    with GatewayServer(catalog(up, tmp_path, judge="judge-a")) as gw:
        ask(gw)
        store = OutcomeStore(gw.app.state.gateway.settings.log_url)
        wait_for(lambda: len(store.outcomes()) == 2)
    assert {o.model: o.score for o in store.outcomes()} == {"weak": 0.5, "strong": 0.5}


def test_a_labelled_request_is_graded_without_the_judge(up: Upstream, tmp_path: Path) -> None:
    with GatewayServer(catalog(up, tmp_path)) as gw:
        label = {"reference": "strong answer", "answer_format": "exact"}
        ask(gw, extra_body={"sizewise": label})
        store = OutcomeStore(gw.app.state.gateway.settings.log_url)
        wait_for(lambda: len(store.outcomes()) == 2)
    assert {o.model: (o.score, o.source, o.other_model) for o in store.outcomes()} == {
        "weak": (0.0, "grader", None),
        "strong": (1.0, "grader", None),
    }
    assert not up.calls("judge-smart")
    assert all("sizewise" not in body for body in up.calls("strong-up"))  # the label is not sent upstream


def test_a_reference_given_in_feedback_before_judging_grades_both_answers(up: Upstream, tmp_path: Path) -> None:
    import httpx

    up.hold.set()
    with GatewayServer(catalog(up, tmp_path)) as gw:
        request_id, _ = ask(gw)
        wait_for(lambda: len(up.calls("strong-up")) == 1)  # the shadow call is under way
        feedback = {"request_id": request_id, "thumbs": "down", "reference": "Strong answer."}
        assert httpx.post(f"{gw.url}/feedback", json=feedback, timeout=5).status_code == 200
        up.hold.clear()
        store = OutcomeStore(gw.app.state.gateway.settings.log_url)
        wait_for(lambda: len(store.outcomes()) == 3)
    judged = {o.model: (o.score, o.source) for o in store.outcomes() if o.source != "feedback"}
    assert judged == {"weak": (0.5, "reference"), "strong": (1.0, "reference")}  # "answer" is in both
    assert not up.calls("judge-smart")


def test_a_numeric_label_grades_the_final_number(up: Upstream, tmp_path: Path) -> None:
    with GatewayServer(catalog(up, tmp_path, strong="strong-four")) as gw:
        ask(gw, extra_body={"sizewise": {"reference": 4, "answer_format": "numeric"}})  # a JSON number is fine
        store = OutcomeStore(gw.app.state.gateway.settings.log_url)
        wait_for(lambda: len(store.outcomes()) == 2)
    assert {o.model: (o.score, o.source) for o in store.outcomes()} == {
        "weak": (0.0, "grader"),
        "strong": (1.0, "grader"),
    }


def test_the_daily_cap_stops_shadow_calls_and_survives_a_restart(up: Upstream, tmp_path: Path) -> None:
    spec = catalog(up, tmp_path, daily_cap_usd=1e-9)  # the first job spends more than this
    with GatewayServer(spec) as gw:
        ask(gw)
        wait_for(settled(gw, 1))
        ask(gw)
        wait_for(settled(gw, 2))
        assert events(gw)["capped"] == 1
    assert len(up.calls("strong-up")) == 1 and len(up.calls("judge-smart")) == 2
    with GatewayServer(spec) as gw:  # a new process on the same database: today's spend is still counted
        ask(gw)
        wait_for(settled(gw, 1))
        assert events(gw)["capped"] == 1
    assert len(up.calls("strong-up")) == 1
    assert SpendLedger(spec["gateway"]["log_url"]).today() == pytest.approx(4e-5 + 2 * 6e-5)


def _textual(case: Any) -> bool:
    """A readable placement whose twin a text-only pair can answer and shadow (no tools, images or files)."""
    twin = json.dumps(case.twin or {})
    return case.readable and case.twin is not None and not any(k in twin for k in ('"tools"', "image_url", '"file"'))


PERSONAL = [case for case in CASES if _textual(case)][::3]  # every third: each kind, several placements


@pytest.mark.parametrize("case", PERSONAL, ids=lambda c: f"{c.name}-{c.kind}")
def test_personal_data_is_not_shadowed_to_a_remote_model(up: Upstream, tmp_path: Path, case: Any) -> None:
    spec = catalog(up, tmp_path, privacy="local-only", weak_location="local")
    with GatewayServer(spec) as gw:
        ask(gw, **case.body)
        ask(gw, **case.twin)  # jobs run one at a time, in order: once the twin's is judged, both are done
        wait_for(settled(gw, 1))
    assert len(up.calls("strong-up")) == 1 and len(up.calls("judge-smart")) == 2  # the twin's only
    assert case.value not in json.dumps([body for _, body in up.bodies if body["model"] != "weak-up"])


def test_a_remote_judge_never_sees_personal_data_from_a_prompt_or_an_answer(up: Upstream, tmp_path: Path) -> None:
    local = {"privacy": "local-only", "weak_location": "local", "strong_location": "local"}
    with GatewayServer(catalog(up, tmp_path, **local)) as gw:
        ask(gw, "Please write to jane.doe@example.org today.")
        wait_for(settled(gw, 1))
        assert events(gw)["privacy"] == 1
    assert len(up.calls("strong-up")) == 1 and not up.calls("judge-smart")  # the local model may see it
    with GatewayServer(catalog(up, tmp_path, strong="strong-leaky", **local)) as gw:
        ask(gw)
        wait_for(settled(gw, 1))
        assert events(gw)["privacy"] == 1
    assert not up.calls("judge-smart")


def test_a_full_queue_drops_jobs_and_counts_them_and_shutdown_does_not_wait_long(up: Upstream, tmp_path: Path) -> None:
    up.hold.set()
    with GatewayServer(catalog(up, tmp_path, queue_size=1, shutdown_wait_s=0.2)) as gw:
        latencies = [ask(gw, timeout=6.0)[1] for _ in range(4)]  # 1 running (held), 1 queued, 2 dropped
        assert max(latencies) < 5.0
        assert events(gw)["dropped"] == 2
        started = time.monotonic()
    assert time.monotonic() - started < 8.0  # not the 10 s the held call would take
    assert events(gw)["dropped"] == 4  # the running and the queued job, at shutdown
    up.hold.clear()


# -- parts -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("strong", "judge"), [("strong-down", "judge-smart"), ("strong-up", "judge-vague")])
def test_a_failed_shadow_call_or_a_vague_judge_stores_nothing_and_is_counted(
    up: Upstream, tmp_path: Path, strong: str, judge: str
) -> None:
    with GatewayServer(catalog(up, tmp_path, strong=strong, judge=judge)) as gw:
        ask(gw)
        wait_for(settled(gw, 1))
        assert events(gw)["failed"] == 1 and events(gw)["judged"] == 0
        assert not OutcomeStore(gw.app.state.gateway.settings.log_url).outcomes()
        ask(gw)  # the worker lives on
        wait_for(settled(gw, 2))


def test_a_bad_label_is_a_400_naming_the_field_and_a_good_one_needs_no_shadowing(up: Upstream, tmp_path: Path) -> None:
    spec = catalog(up, tmp_path)
    spec["gateway"]["shadow"]["enabled"] = False
    with GatewayServer(spec) as gw:
        ask(gw, extra_body={"sizewise": {"reference": "4", "answer_format": "numeric"}})
        for label, param in [
            ({"reference": "4", "answer_format": "regex"}, "sizewise.answer_format"),
            ({"reference": {"x": 1}}, "sizewise.reference"),
            ({"answer_format": "numeric"}, "sizewise.reference"),
        ]:
            with pytest.raises(openai.BadRequestError) as error:
                ask(gw, extra_body={"sizewise": label})
            assert error.value.status_code == 400 and error.value.body["param"] == param  # type: ignore[index]
    assert not up.calls("strong-up")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"judge": "nobody"}, "gateway.shadow.judge: 'nobody' is not a catalog model"),
        ({"log_url": "none"}, "gateway.shadow needs a database"),
    ],
)
def test_a_bad_shadow_setting_fails_at_start_up(
    up: Upstream, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    from sizewise.errors import ConfigError

    spec = catalog(up, tmp_path)
    if "log_url" in change:
        spec["gateway"]["log_url"] = change["log_url"]
    else:
        spec["gateway"]["shadow"].update(change)
    with pytest.raises(ConfigError, match=message):
        GatewayServer(spec)
