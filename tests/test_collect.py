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
