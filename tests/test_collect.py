"""``sizewise collect``: rows survive a hard kill, a restart resumes without duplicates, the table loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sizewise.cascade.collect import RowStore, load_collected, load_items
from sizewise.errors import DataError

N_QUESTIONS = 12
MODELS = ("small", "big")

RUNNER = textwrap.dedent(
    """
    import asyncio, sys
    from sizewise.backends.base import Backend, ChatChunk, ChatResult
    from sizewise.cascade.collect import RowStore, collect, load_items

    class Slow(Backend):
        def __init__(self, model, right):
            self.model, self.right = model, right
        async def complete(self, request):
            await asyncio.sleep(0.08)
            question = request.messages[0]["content"]
            n = int(question.split()[2])
            value = 2 * n if self.right or n % 3 else 2 * n + 1
            return ChatResult(model=self.model, text=f"so {n} * 2 = {value}\\n#### {value}",
                              completion_tokens=9, prompt_tokens=5, latency_s=0.08, logprobs=[-0.1] * 9)
        async def stream(self, request):
            yield ChatChunk(text="")

    items, kind = load_items(sys.argv[1])
    store = RowStore(sys.argv[2])
    backends = {"small": Slow("small", False), "big": Slow("big", True)}
    asyncio.run(collect(items, backends, store, grader=kind, progress=False))
    store.close()
    """
)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    with path.open("w") as handle:
        for n in range(N_QUESTIONS):
            handle.write(json.dumps({"question": f"What is {n} doubled?", "answer": f"2 * {n}\n#### {2 * n}"}) + "\n")
    return path


def _run(script: Path, dataset: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.Popen([sys.executable, str(script), str(dataset), str(out)], env=env)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_collect_resumes_after_kill_without_duplicates(tmp_path: Path, dataset: Path) -> None:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    out = tmp_path / "rows.jsonl"
    process = _run(script, dataset, out)
    deadline = time.monotonic() + 60
    while len(_lines(out)) < 6 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _lines(out)
    assert 6 <= len(before) < N_QUESTIONS * len(MODELS), "the kill should land mid-run"
    # Simulate a row cut in half by the kill: it must be dropped, not crash the resume.
    with out.open("a") as handle:
        handle.write('{"prompt_id": "999", "mod')
    assert _run(script, dataset, out).wait(timeout=120) == 0
    rows = _lines(out)
    keys = [(r["prompt_id"], r["model"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_QUESTIONS * len(MODELS)
    assert rows[: len(before)] == before  # finished rows were kept as written
    table = load_collected(out)
    assert table.models == list(MODELS) and len(table) == N_QUESTIONS
    assert table.mean_quality()["big"] == 1.0
    assert table.mean_quality()["small"] == pytest.approx(1 - 4 / N_QUESTIONS)  # n % 3 == 0 is botched
    assert table.meta["logprobs"]["big"][0] == [-0.1] * 9


def test_load_items_kinds_and_errors(tmp_path: Path, dataset: Path) -> None:
    items, kind = load_items(dataset, limit=3, offset=2)
    assert kind == "numeric" and [i.prompt_id for i in items] == ["2", "3", "4"]
    choice = tmp_path / "mc.jsonl"
    choice.write_text(json.dumps({"question": "Pick", "options": ["x", "y"], "answer": "B"}) + "\n")
    items, kind = load_items(choice)
    assert kind == "choice" and "(B) y" in items[0].prompt
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no answer"}\n')
    with pytest.raises(DataError, match="needs 'question'"):
        load_items(bad)
    with pytest.raises(DataError, match="no such dataset file"):
        load_items(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no collected rows"):
        load_collected(RowStore(tmp_path / "empty.jsonl").path)


def test_bad_question_files_are_one_line_errors(tmp_path: Path) -> None:
    for content, message in [
        (b"\xb4\xff garbage", "not UTF-8"),
        (b"", "no questions"),
        (b"[1, 2]\n", "not a JSON object"),
    ]:
        path = tmp_path / "q.jsonl"
        path.write_bytes(content)
        with pytest.raises(DataError, match=message):
            load_items(path)


@pytest.mark.parametrize(
    "content",
    [b"my notes, no newline", b"a,b\n1,2\n", b"\xb4\xff binary\n\x00tail", b'{"prompt_id": "1", "model": "m"}\n[1]\n'],
)
def test_row_store_leaves_a_file_that_is_not_rows_untouched(tmp_path: Path, content: bytes) -> None:
    other = tmp_path / "notes.txt"
    other.write_bytes(content)
    with pytest.raises(DataError, match="not a file of collected rows"):
        RowStore(other)
    assert other.read_bytes() == content


def test_cli_reports_bad_input(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sizewise.cli.main",
            "collect",
            "--out",
            str(tmp_path / "o.jsonl"),
            "--dataset",
            "nope.jsonl",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "error: nope.jsonl: no such dataset file" in result.stderr
    assert "Traceback" not in result.stderr


class _Doubler:
    """A backend doubling the number in the question; ``botch`` gets n % 3 == 0 wrong (and unstable when sampled)."""

    def __init__(self, model: str, botch: bool) -> None:
        self.model, self.botch = model, botch
        self.calls: list[str] = []

    async def complete(self, request: Any) -> Any:
        from sizewise.backends.base import ChatResult

        question = request.messages[0]["content"]
        self.calls.append("sample" if request.temperature else "answer")
        n = int(question.split()[2])
        value = 2 * n
        if self.botch and n % 3 == 0:
            value += 1 + (request.seed or 0)  # wrong, and a different wrong number for every sample
        return ChatResult(model=self.model, text=f"#### {value}", completion_tokens=3, prompt_tokens=5)

    async def choice_logprobs(self, request: Any, choices: list[str]) -> dict[str, float]:
        content = request.messages[0]["content"]
        n = int(content.split("What is ")[1].split()[0])
        right = f"#### {2 * n}\n" in content
        self.calls.append("verify")
        return {c: (-0.1 if (c.strip().lower() == "yes") == right else -3.0) for c in choices}


def test_collect_records_scorer_calls_and_enriches_old_rows(tmp_path: Path, dataset: Path) -> None:
    import asyncio

    from sizewise.cascade.collect import collect
    from sizewise.cascade.scorers import Answer, make_scorer

    items, kind = load_items(dataset)
    small, big = _Doubler("small", botch=True), _Doubler("big", botch=False)
    backends: dict[str, Any] = {"small": small, "big": big}
    out = tmp_path / "rows.jsonl"
    store = RowStore(out)
    assert asyncio.run(collect(items, backends, store, grader=kind, progress=False)) == 2 * N_QUESTIONS
    store.close()
    scorers = [make_scorer("verifier"), make_scorer("consistency", k=2)]
    store = RowStore(out)
    # Old rows are enriched, not answered again; only the non-final rung is scored.
    assert asyncio.run(collect(items, backends, store, grader=kind, progress=False, scorers=scorers)) == N_QUESTIONS
    store.close()
    assert small.calls.count("answer") == N_QUESTIONS and small.calls.count("sample") == 2 * N_QUESTIONS
    assert big.calls.count("verify") == N_QUESTIONS and "sample" not in big.calls
    store = RowStore(out)
    assert asyncio.run(collect(items, backends, store, grader=kind, progress=False, scorers=scorers)) == 0
    store.close()

    table = load_collected(out)
    assert table.models == ["small", "big"] and len(table) == N_QUESTIONS
    assert table.meta["verdicts"]["big"] == [None] * N_QUESTIONS
    right = table.column("small") == 1.0
    verdicts = np.array(table.meta["verdicts"]["small"], dtype=float)
    assert verdicts[right].min() > 0.9 > 0.1 > verdicts[~right].max()
    answers = [
        Answer(p, str(r), samples=s)
        for p, r, s in zip(table.texts, table.column("small", "responses"), table.meta["samples"]["small"], strict=True)
    ]
    agreement = make_scorer("consistency", k=2).score(answers)
    assert np.all(agreement[right] == 1.0) and np.all(agreement[~right] == 0.0)
    spent = table.meta["scorer_cpu_s"]["small"]
    assert all(set(s) == {"verifier", "consistency"} and min(s.values()) >= 0 for s in spent)
