"""Your traffic as an outcome table (issue #22, item 3): ``sizewise outcomes export`` writes the judged
requests of a real gateway's log in the generic outcome-table format, and ``sizewise eval`` reads it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from billing_upstream import BillingUpstream
from fakes import GatewayServer, fake_model
from sizewise.core.tablefile import load_table
from sizewise.learn.outcomes import Outcome, OutcomeStore

Run = Callable[..., tuple[int, str, str]]
N = 24


@pytest.fixture(scope="module")
def upstream() -> Iterator[BillingUpstream]:
    with BillingUpstream(lambda body: (11, 5)) as up:
        yield up


def _serve(upstream: BillingUpstream, db: Path, log_text: bool) -> list[tuple[str, str, str]]:
    """N answered requests, every one rated by its client and the other model graded as a shadow judge
    would: "hard" prompts only the big model gets right. Returns (request id, prompt, served model)."""
    models = [fake_model("small", "up-s", 1.0, upstream.base_url), fake_model("big", "up-b", 4.0, upstream.base_url)]
    spec = {"models": models, "gateway": {"log_url": f"sqlite:///{db}", "log_text": log_text}}
    served = []
    with GatewayServer(spec) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        for i in range(N):
            prompt = f"{'hard' if i % 3 == 0 else 'easy'} question number {i}"
            model = "big" if i % 4 == 0 else "small"
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": prompt}], max_tokens=5
            )
            request_id = raw.headers["x-request-id"]
            good = model == "big" or "easy" in prompt
            response = httpx.post(gw.url + "/feedback", json={"request_id": request_id, "score": float(good)})
            assert response.status_code == 200, response.text
            served.append((request_id, prompt, model))
        store = gw.app.state.gateway.outcomes.store
        for request_id, prompt, model in served:
            other = "small" if model == "big" else "big"
            score = 1.0 if other == "big" or "easy" in prompt else 0.0
            store.add(Outcome(request_id, other, score, "grader", detail={"cost": 2e-5, "tokens_out": 9}))
        gw.rows()  # the log's queued rows written (and, text off, the prompt vectors kept)
    return served


def test_export_writes_one_row_per_judged_request_and_model_and_eval_reads_it(
    upstream: BillingUpstream, tmp_path: Path, run_cli: Run
) -> None:
    """Without the command there was no way from the log to a table (exit 2: no such command)."""
    db, out = tmp_path / "log.sqlite", tmp_path / "mine.jsonl"
    served = _serve(upstream, db, log_text=True)
    code, stdout, stderr = run_cli("outcomes", "export", "--out", str(out), "--db", str(db))
    assert code == 0, stderr
    assert f"{2 * N} rows, {N} judged requests" in stdout and f"{N} judged on 2+ models" in stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * N
    first = {row["model"]: row for row in rows if row["prompt_id"] == served[1][0]}  # served by small
    assert first["small"]["text"] == f"user: {served[1][1]}" and first["small"]["served_by"] == "small"
    assert first["small"]["tokens_in"] == 11 and first["small"]["tokens_out"] == 5 and first["small"]["cost"] > 0
    assert first["big"]["cost"] == 2e-5 and first["big"]["judged_by"] == "feedback,grader"

    table = load_table(out)
    assert len(table) == N and sorted(table.models) == ["big", "small"]
    hard = np.array(["hard" in text for text in table.texts])
    assert (table.column("small")[hard] == 0).all() and (table.column("small")[~hard] == 1).all()
    assert (table.column("big") == 1).all()

    code, stdout, stderr = run_cli(
        "eval", "--table", str(out), "--router", "oracle", "--router", "random", "--cv", "2", "--no-progress"
    )
    assert code == 0, stderr
    assert "oracle" in stdout and f"{N} prompts" in stdout and "weak small" in stdout


def test_without_text_rows_carry_the_kept_vector(upstream: BillingUpstream, tmp_path: Path, run_cli: Run) -> None:
    db, out = tmp_path / "log.sqlite", tmp_path / "mine.jsonl"
    served = _serve(upstream, db, log_text=False)
    code, stdout, stderr = run_cli("outcomes", "export", "--out", str(out), "--db", str(db))
    assert code == 0, stderr
    assert f"{N} requests without text" in stdout
    rows: list[dict[str, Any]] = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(row["text"].startswith("[prompt not logged] sha256:") for row in rows)
    assert all(len(row["features"]) == 256 and row["embedding"].startswith("static-") for row in rows)
    assert len(load_table(out)) == len(served)  # the placeholder keeps the file loadable
    code, _, stderr = run_cli("outcomes", "export", "--out", str(out), "--db", str(db), "--require-text")
    assert (
        code == 2 and stderr.strip() == "error: no judged requests to export (send feedback, or turn on shadow judging)"
    )


def test_bad_arguments_are_one_line_errors(tmp_path: Path, run_cli: Run) -> None:
    code, _, stderr = run_cli("outcomes", "export", "--out", str(tmp_path / "t.jsonl"), "--db", str(tmp_path / "no"))
    assert code == 2 and stderr.strip() == f"error: no request log at {tmp_path / 'no'}"
    db = tmp_path / "log.sqlite"
    OutcomeStore(f"sqlite:///{db}").close()  # an empty log with its tables
    code, _, stderr = run_cli("outcomes", "export", "--out", str(tmp_path / "t.csv"), "--db", str(db))
    assert code == 2 and "write a .jsonl file" in stderr
    code, _, stderr = run_cli(
        "outcomes", "export", "--out", str(tmp_path / "t.jsonl"), "--db", str(db), "--hours", "-1"
    )
    assert code == 2 and "--hours must be a positive number" in stderr


def test_a_shadow_sampled_request_carries_its_inclusion_probability(tmp_path: Path) -> None:
    """``router retrain`` weights by 1 / inclusion_p; without this column every request weighed the same."""
    from sizewise.cli.router_cmd import _weights
    from sizewise.learn.outcome_export import export_rows, write_jsonl

    requests = [
        {
            "request_id": f"r{i}",
            "prompt_text": f"user: q{i}",
            "prompt_hash": "h",
            "status": 200,
            "model": "small",
            "time": float(i),
            "cost": 1e-6,
            "big_cost": 4e-6,
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "latency_ms": 5.0,
        }
        for i in range(2)
    ]
    shadow = {"inclusion_p": 0.25, "chosen_by": "active"}
    outcomes = [
        Outcome("r0", "small", 1.0, "llm-judge", other_model="big", detail=shadow),
        Outcome("r0", "big", 0.0, "llm-judge", other_model="small", detail=shadow),
        Outcome("r1", "small", 1.0, "feedback"),  # rated by its client, not sampled: no probability
        Outcome("r1", "big", 1.0, "grader"),
    ]
    rows = export_rows(requests, outcomes, {}, big="big")
    assert {row["prompt_id"]: row.get("inclusion_p") for row in rows} == {"r0": 0.25, "r1": None}
    table = load_table(write_jsonl(rows, tmp_path / "t.jsonl"))
    weights = _weights(table)
    assert weights is not None and sorted(weights.tolist()) == [1.0, 4.0]
