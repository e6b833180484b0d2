"""Big teaches small through the live gateway: OVERRULING's 2,160 requests streamed in order to a gateway whose
task model starts with no student, GPT-4 (its recorded answers) as the teacher (docs/gateway.md, Task models).

Every request goes through the official openai client with ``"sizewise": {"task": "overruling"}``. The
teacher is a fake OpenAI-compatible upstream on 127.0.0.1 that answers each prompt with GPT-4's recorded
answer; each of its calls costs GPT-4's recorded cost for that query. The task uses the catalog defaults
(target agreement 0.98, audit share 0.05, first fit after 100 answers, a refit every 100), learns in the
gateway's learner thread while the requests keep coming, and answers once it passes. Reported: the share the
student answered, its agreement with GPT-4 there, overall accuracy against the gold labels (student where it
answered, GPT-4 elsewhere) against GPT-4 alone, the teacher's cost against always-GPT-4, and latencies.

    python bench/task_gateway.py [--limit N] [--no-write]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _results import markdown_table, update_section, write_json  # noqa: E402
from _serve import serve_in_thread  # noqa: E402
from fake_upstream import ThreadedServer, read_body, send_answer  # noqa: E402
from sizewise.catalog.schema import CatalogSpec  # noqa: E402
from sizewise.distill.normalise import AnswerNormaliser  # noqa: E402
from sizewise.paths import data_dir  # noqa: E402

OUT = BENCH.parent / "docs" / "results" / "task_gateway.json"
COMMAND = "python bench/task_gateway.py"


def load_overruling() -> list[dict[str, str]]:
    """OVERRULING's rows in file order (``$SIZEWISE_DATA/frugalgpt/overruling.csv``)."""
    with (data_dir() / "frugalgpt" / "overruling.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class RecordedTeacher(ThreadedServer):
    """Answers each prompt with GPT-4's recorded answer; ``called`` lists the prompts it was asked."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.called: list[str] = []
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive) or b"{}")
        prompt = str(body["messages"][-1]["content"])
        self.called.append(prompt)
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": 2}
        await send_answer(send, str(body.get("model")), self.answers.get(prompt, ""), usage)


def catalog(base_url: str) -> CatalogSpec:
    upstream = {"base_url": base_url, "timeout_s": 30.0}
    models = [
        {"name": "small", "backend": "openai", "context_window": 32768, "params_b": 1, "settings": upstream},
        {"name": "gpt-4", "backend": "openai", "context_window": 32768, "location": "remote", "settings": upstream},
        {
            "name": "overruling",
            "kind": "task",
            "backend": "task",
            "context_window": 32768,
            "settings": {"labels": ["yes", "no"], "teacher": "gpt-4"},
        },
    ]
    gateway = {"router": "heuristic", "threshold": 0.99, "log_url": "none", "access_log": False}
    return CatalogSpec.model_validate({"models": models, "gateway": gateway})


def stream(rows: list[dict[str, str]]) -> tuple[list[dict[str, Any]], RecordedTeacher]:
    """Send every row's prompt through a live gateway, in order; what each answer's ``sizewise`` said."""
    import openai

    from sizewise.gateway.app import create_app

    teacher = RecordedTeacher({row["query"]: row["gpt-4_answer"] for row in rows})
    with teacher:
        app = create_app(catalog(teacher.base_url))
        with serve_in_thread(app) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
            out = []
            for row in rows:
                started = time.perf_counter()
                response = client.chat.completions.create(
                    model="sizewise",
                    messages=[{"role": "user", "content": row["query"]}],
                    extra_body={"sizewise": {"task": "overruling"}},
                )
                seconds = time.perf_counter() - started
                task = response.model_extra["sizewise"]["task"]
                out.append({**task, "e2e_ms": seconds * 1e3, "text": response.choices[0].message.content})
            state = app.state.gateway.engine.tasks.tasks["overruling"].online.state
    return [{**r, "final_state": None} for r in out[:-1]] + [{**out[-1], "final_state": state}], teacher


def summarise(rows: list[dict[str, str]], seen: list[dict[str, Any]]) -> dict[str, Any]:
    """The benchmark's numbers (see the module docstring)."""
    norm = AnswerNormaliser(["yes", "no"])
    gpt4 = [norm.label_of(row["gpt-4_answer"]) for row in rows]
    gold = [row["ref_answer"].strip().lower() for row in rows]
    cost = np.array([float(row["gpt-4_cost"]) for row in rows])
    gpt4_right = np.array([float(row["gpt-4"]) for row in rows]) > 0.5
    student = np.array([s["answered_by"] == "task_model" for s in seen])
    said = [str(s["label"]) if s["answered_by"] == "task_model" else None for s in seen]
    agree = [said[i] == gpt4[i] for i in np.flatnonzero(student) if gpt4[i] is not None]
    right = np.where(student, [s == g for s, g in zip(said, gold, strict=True)], gpt4_right)
    verdict = np.array([s["latency_ms"] for s in seen if s["answered_by"] == "task_model"])
    e2e = {who: np.array([s["e2e_ms"] for s in seen if s["answered_by"] == who]) for who in ("task_model", "teacher")}
    final = seen[-1]["final_state"]
    return {
        "requests": len(rows),
        "student_answered": int(student.sum()),
        "coverage": float(student.mean()),
        "coverage_last_half": float(student[len(student) // 2 :].mean()),
        "first_student_answer": int(np.argmax(student)) if student.any() else None,
        "agreement_with_gpt4": float(np.mean(agree)) if agree else None,
        "accuracy": float(right.mean()),
        "gpt4_accuracy": float(gpt4_right.mean()),
        "teacher_calls": int((~student).sum()),
        "audits": int(sum(bool(s["audit"]) for s in seen)),
        "cost_share": float(cost[~student].sum() / cost.sum()),
        "student_ms_p50": float(np.percentile(verdict, 50)) if verdict.size else None,
        "student_ms_p99": float(np.percentile(verdict, 99)) if verdict.size else None,
        "e2e_ms_p50_student": float(np.percentile(e2e["task_model"], 50)) if e2e["task_model"].size else None,
        "e2e_ms_p50_teacher": float(np.percentile(e2e["teacher"], 50)) if e2e["teacher"].size else None,
        "final_state": {k: v for k, v in vars(final).items()} if final is not None else None,
    }


def report(result: dict[str, Any]) -> str:
    rows = [
        {"measure": "student answered (coverage)", "value": f"{result['coverage']:.1%} of {result['requests']}"},
        {"measure": "coverage, second half of the stream", "value": f"{result['coverage_last_half']:.1%}"},
        {"measure": "first request the student answered", "value": str(result["first_student_answer"])},
        {"measure": "agreement with GPT-4 where the student answered", "value": _pct(result["agreement_with_gpt4"])},
        {"measure": "accuracy vs gold (student + GPT-4)", "value": _pct(result["accuracy"])},
        {"measure": "accuracy vs gold (GPT-4 alone)", "value": _pct(result["gpt4_accuracy"])},
        {"measure": "teacher calls (learning, unsure, audits)", "value": str(result["teacher_calls"])},
        {"measure": "audits", "value": str(result["audits"])},
        {"measure": "cost vs always-GPT-4", "value": _pct(result["cost_share"])},
        {
            "measure": "student verdict p50 / p99 (ms)",
            "value": _pair(result["student_ms_p50"], result["student_ms_p99"]),
        },
        {
            "measure": "end to end p50 (ms): student / fake teacher",
            "value": _pair(result["e2e_ms_p50_student"], result["e2e_ms_p50_teacher"]),
        },
    ]
    return markdown_table(rows, ["measure", "value"])


def _pair(a: float | None, b: float | None) -> str:
    return " / ".join("n/a" if v is None else f"{v:.2f}" for v in (a, b))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N requests")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args()
    rows = load_overruling()[: args.limit]
    started = time.perf_counter()
    seen, _ = stream(rows)
    result = summarise(rows, seen) | {"wall_s": time.perf_counter() - started}
    table = report(result)
    print(table)
    if not args.no_write:
        write_json(OUT, result)
        body = (
            "OVERRULING's 2,160 requests in file order through a live gateway (openai client, `sizewise.task`), "
            "the task model starting with no student, GPT-4's recorded answers as the teacher (a fake upstream "
            "on 127.0.0.1), catalog defaults (target 0.98, audit share 0.05, refit every 100 answers). "
            "Every teacher call is paid at GPT-4's recorded cost. The student learns while the requests keep "
            "coming (as fast as one client sends them), so how soon it serves depends on how long a refit takes "
            "on the machine: two runs on the shared 2-core box first served at request 358 and 706 with the same "
            "cost share.\n\n" + table
        )
        update_section("task-gateway", "Task model learning online inside the gateway (OVERRULING)", COMMAND, body)


if __name__ == "__main__":
    main()
