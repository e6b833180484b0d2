"""``sizewise collect``: run models on a labelled dataset and record an outcome table, resumably.

Rows go to an append-only JSONL file, one line per (question, model) answer, flushed and fsynced as
soon as the answer is graded: a crash or Ctrl-C loses at most the answer in flight, and a restart
skips every (prompt_id, model) already in the file, so nothing is duplicated. A line cut short by a
crash is dropped on the next open. :func:`load_collected` turns the file into an :class:`OutcomeTable`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from sizewise.cascade.graders import get_grader
from sizewise.errors import DataError
from sizewise.progress import Progress

if TYPE_CHECKING:
    from sizewise.backends.base import Backend
    from sizewise.cascade.scorers import Scorer
    from sizewise.core.table import OutcomeTable

GSM8K_INSTRUCTION = (
    "Solve it with a few short steps (no code), then give the final number on the last line as '#### <number>'."
)
CHOICE_INSTRUCTION = "Think step by step, then finish with 'The answer is (X)' where X is the letter of your choice."
LETTERS = "ABCDEFGHIJ"


@dataclass
class Item:
    """One labelled question."""

    prompt_id: str
    prompt: str
    gold: str


def load_items(path: str | Path, limit: int | None = None, offset: int = 0) -> tuple[list[Item], str]:
    """Questions from a JSONL file, and the grader they need.

    GSM8K (``question`` + ``answer`` ending in ``#### n``) -> numeric; multiple choice (``question`` +
    ``options`` list + ``answer`` letter) -> choice; otherwise (``prompt``/``question`` + ``answer``) exact.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file")
    items: list[Item] = []
    kind = "exact"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a JSONL file of questions (not UTF-8 text)") from None
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{number + 1}: not valid JSON") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number + 1}: not a JSON object")
        question = record.get("question") or record.get("prompt")
        answer = record.get("answer", record.get("gold"))
        if question is None or answer is None:
            raise DataError(f"{path}:{number + 1}: needs 'question' (or 'prompt') and 'answer'")
        prompt_id = str(record.get("id", record.get("prompt_id", number)))
        if record.get("options"):
            kind = "choice"
            options = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(record["options"]))
            question = f"{question}\n\n{options}\n\n{CHOICE_INSTRUCTION}"
        elif "####" in str(answer):
            kind = "numeric"
            question = f"{question}\n\n{GSM8K_INSTRUCTION}"
        items.append(Item(prompt_id, str(question), str(answer)))
    if not items:
        raise DataError(f"{path}: no questions in the file")
    return items[offset : None if limit is None else offset + limit], kind


class RowStore:
    """Append-only JSONL of answer rows; knows which (prompt_id, model) pairs are done."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = self._read_and_repair()
        self.done = {(r["prompt_id"], r["model"]) for r in self.rows}
        self._handle: TextIO | None = None

    def _read_and_repair(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        # Check every line before touching the file: --out naming some other file must not damage it.
        not_rows = DataError(f"{self.path}: not a file of collected rows; choose another --out")
        if data[cut:] and not data[cut:].lstrip().startswith(b"{"):
            raise not_rows
        rows = []
        try:
            for line in data[:cut].decode().splitlines():
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict) or "prompt_id" not in row or "model" not in row:
                        raise not_rows
                    rows.append(row)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise not_rows from None
        if cut < len(data):  # a row half-written when the process died: drop it so the next append starts clean
            with self.path.open("r+b") as handle:
                handle.truncate(cut)
        return rows

    def append(self, row: dict[str, Any]) -> None:
        """Write one row and make it durable before returning."""
        if self._handle is None:
            self._handle = self.path.open("a")
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.rows.append(row)
        self.done.add((row["prompt_id"], row["model"]))

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


async def collect(
    items: Sequence[Item],
    backends: dict[str, Backend],
    store: RowStore,
    grader: str = "numeric",
    max_tokens: int = 256,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    scorers: Sequence[Scorer] = (),
) -> int:
    """Answer every (item, model) pair not yet in ``store``; returns how many rows were added.

    Question-major order, so an interrupted run still has every model's answer on its first questions.
    ``scorers`` that call models (verifier, consistency) also run on each answer of every model but
    the last of ``backends`` (a cascade never scores its last rung), with the next model as
    ``next_up``; their results and CPU seconds go into the row. A row answered earlier without them
    is enriched and written again (the last row of a (prompt_id, model) pair wins on load).
    """
    grade = get_grader(grader)
    names = list(backends)
    latest = {(r["prompt_id"], r["model"]): r for r in store.rows}
    todo = [
        (item, model)
        for item in items
        for model in names
        if (item.prompt_id, model) not in store.done or _missing(latest[item.prompt_id, model], model, names, scorers)
    ]
    with Progress(len(todo), "collect", "answers", enabled=progress and bool(todo)) as bar:
        return await _answer_all(todo, backends, store, names, grade, max_tokens, on_row, scorers, bar)


async def _answer_all(
    todo: list[tuple[Item, str]],
    backends: dict[str, Backend],
    store: RowStore,
    names: list[str],
    grade: Callable[[str, str], bool],
    max_tokens: int,
    on_row: Callable[[dict[str, Any]], None] | None,
    scorers: Sequence[Scorer],
    bar: Progress,
) -> int:
    """The loop of :func:`collect`: answer (or enrich) each pair, append its row, count it."""
    latest = {(r["prompt_id"], r["model"]): r for r in store.rows}
    added = 0
    for item, model in todo:
        row = latest.get((item.prompt_id, model)) or await _answer(item, model, backends[model], grade, max_tokens)
        missing = _missing(row, model, names, scorers)
        if missing:
            next_up = backends[names[names.index(model) + 1]]
            row = row | await _enrich(item, row, backends[model], next_up, missing, max_tokens)
        store.append(row)
        added += 1
        if on_row is not None:
            on_row(row)
        bar.update(1, note=model)
    return added


async def _answer(
    item: Item, model: str, backend: Backend, grade: Callable[[str, str], bool], max_tokens: int
) -> dict[str, Any]:
    """One graded answer as a row (an ``error`` row when the backend fails)."""
    from sizewise.core.chat import BackendError, ChatRequest

    request = ChatRequest(
        messages=[{"role": "user", "content": item.prompt}], max_tokens=max_tokens, temperature=0.0, logprobs=True
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {"prompt_id": item.prompt_id, "model": model, "text": item.prompt, "gold": item.gold}
    try:
        result = await backend.complete(request)
    except BackendError as error:
        return row | {"response": None, "correct": None, "error": str(error), "latency": time.perf_counter() - start}
    return row | {
        "response": result.text,
        "correct": bool(grade(result.text, item.gold)),
        "tokens_in": result.prompt_tokens,
        "tokens_out": result.completion_tokens,
        "latency": result.latency_s or time.perf_counter() - start,
        # CPU seconds of this process (all llama.cpp threads): fair on a machine shared with other jobs.
        "cpu_s": time.process_time() - cpu_start,
        "finish_reason": result.finish_reason,
        "logprobs": [round(v, 4) for v in result.logprobs] if result.logprobs else None,
    }


def _missing(row: dict[str, Any], model: str, names: list[str], scorers: Sequence[Scorer]) -> list[Scorer]:
    """The scorers still to run on this row (none for the last model or a failed answer)."""
    if model == names[-1] or row.get("response") is None:
        return []
    done = row.get("scorer_cpu_s") or {}
    return [s for s in scorers if s.calls_models and s.name not in done]


async def _enrich(
    item: Item, row: dict[str, Any], own: Backend, next_up: Backend, scorers: Sequence[Scorer], max_tokens: int
) -> dict[str, Any]:
    """Run each scorer's model calls on the row's answer; the fields to add to the row."""
    from sizewise.cascade.scorers import Answer
    from sizewise.core.chat import BackendError, ChatRequest

    request = ChatRequest(messages=[{"role": "user", "content": item.prompt}], max_tokens=max_tokens, temperature=0.0)
    answer = Answer(item.prompt, str(row["response"]), model=str(row["model"]))
    fields: dict[str, Any] = {"scorer_cpu_s": dict(row.get("scorer_cpu_s") or {})}
    for scorer in scorers:
        cpu_start = time.process_time()
        try:
            enriched = await scorer.enrich(answer, request, own, next_up)
        except BackendError as error:
            fields.setdefault("scorer_errors", {})[scorer.name] = str(error)
            continue
        fields["scorer_cpu_s"][scorer.name] = time.process_time() - cpu_start
        if enriched.verdict is not None:
            fields["verdict"] = enriched.verdict
        if enriched.samples is not None:
            fields["samples"] = enriched.samples
    return fields


def load_collected(path: str | Path, models: Sequence[str] | None = None, complete: bool = True) -> OutcomeTable:
    """The rows of a collect file as an OutcomeTable (cost = CPU seconds of each call, since local models
    are free and time is what they cost; wall seconds for rows without ``cpu_s``). ``complete`` keeps only
    questions every model answered.
    ``meta["logprobs"][model]`` holds each answer's token logprobs, ``meta["finish_reasons"][model]`` why it
    stopped (``length``: cut at ``max_tokens``, which a cascade never accepts below its top);
    ``meta["verdicts"]``, ``meta["samples"]`` and ``meta["scorer_cpu_s"]`` what collection-time scorers
    recorded (None / {} where they did not run)."""
    import pandas as pd

    from sizewise.core.table import OutcomeTable, frame_rows

    rows = RowStore(path).rows
    if not rows:
        raise DataError(f"{path}: no collected rows")
    frame = pd.DataFrame(rows)
    # Order by first appearance (the ladder, the questions) before dropping rows rewritten by enrichment.
    names = list(models) if models else list(dict.fromkeys(frame["model"]))
    order = list(dict.fromkeys(frame["prompt_id"]))
    frame = frame.drop_duplicates(["prompt_id", "model"], keep="last")
    counts = frame[frame["model"].isin(names) & frame["response"].notna()].groupby("prompt_id")["model"].nunique()
    if complete:
        order = [p for p in order if counts.get(p, 0) == len(names)]
    if not order:
        raise DataError(f"{path}: no question has answers from all of {', '.join(names)}")
    index = {p: i for i, p in enumerate(order)}
    shape = (len(order), len(names))
    cells = {key: np.full(shape, np.nan) for key in ("quality", "cost", "tokens_in", "tokens_out", "latency", "cpu")}
    responses = np.full(shape, None, dtype=object)
    logprobs: dict[str, list[list[float] | None]] = {m: [None] * len(order) for m in names}
    finish: dict[str, list[str | None]] = {m: [None] * len(order) for m in names}
    verdicts: dict[str, list[float | None]] = {m: [None] * len(order) for m in names}
    samples: dict[str, list[list[str] | None]] = {m: [None] * len(order) for m in names}
    scorer_cpu: dict[str, list[dict[str, float]]] = {m: [{} for _ in order] for m in names}
    texts: dict[str, str] = {}
    for row in frame_rows(frame):
        data = row._asdict()
        if data["prompt_id"] not in index or data["model"] not in names or data.get("response") is None:
            continue
        i, j = index[data["prompt_id"]], names.index(data["model"])
        cells["quality"][i, j] = float(bool(data["correct"]))
        for key in ("tokens_in", "tokens_out", "latency"):
            value = data.get(key)
            cells[key][i, j] = np.nan if value is None or pd.isna(value) else float(value)
        cpu = data.get("cpu_s")
        cells["cpu"][i, j] = np.nan if cpu is None or pd.isna(cpu) else float(cpu)
        cells["cost"][i, j] = cells["cpu"][i, j] if np.isfinite(cells["cpu"][i, j]) else cells["latency"][i, j]
        responses[i, j] = data["response"]
        lp = data.get("logprobs")
        logprobs[data["model"]][i] = list(lp) if isinstance(lp, list) else None
        reason = data.get("finish_reason")
        finish[data["model"]][i] = reason if isinstance(reason, str) else None
        verdict, drawn, spent = data.get("verdict"), data.get("samples"), data.get("scorer_cpu_s")
        verdicts[data["model"]][i] = float(verdict) if isinstance(verdict, int | float) and verdict == verdict else None
        samples[data["model"]][i] = [str(x) for x in drawn] if isinstance(drawn, list) else None
        scorer_cpu[data["model"]][i] = dict(spent) if isinstance(spent, dict) else {}
        texts[data["prompt_id"]] = data["text"]
    prompts = pd.DataFrame({"prompt_id": order, "text": [texts.get(p, "") for p in order]})
    return OutcomeTable(
        name=Path(path).stem,
        prompts=prompts,
        models=names,
        responses=responses,
        quality=cells["quality"],
        cost=cells["cost"],
        tokens_in=cells["tokens_in"],
        tokens_out=cells["tokens_out"],
        latency=cells["latency"],
        meta={
            "logprobs": logprobs,
            "finish_reasons": finish,
            "verdicts": verdicts,
            "samples": samples,
            "scorer_cpu_s": scorer_cpu,
            "cost_unit": "cpu seconds (wall seconds where not recorded)",
            "cpu_s": cells["cpu"].tolist(),
        },
    )
