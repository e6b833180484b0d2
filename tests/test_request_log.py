"""The request log: rows written by the background writer, SQLite in WAL mode, and `sizewise log` totals."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sizewise.cli import log_cmd
from sizewise.errors import ConfigError
from sizewise.gateway.log import LogEntry, RequestLog, read_rows
from sizewise.policy.types import Decision, FilterReport, Step


def _decision(model: str, cost: float, **kwargs: object) -> Decision:
    return Decision(
        policy="sizewise",
        model=model,
        score=0.3,
        threshold=0.5,
        cost=cost,
        steps=[Step(model, accepted=True)],
        **kwargs,
    )  # type: ignore[arg-type]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'log.sqlite'}"


def test_rows_hash_prompts_and_record_the_decision(url: str, tmp_path: Path) -> None:
    log = RequestLog(url)
    decision = _decision(
        "small",
        0.002,
        fallback_from="big",
        errors=["big: status 500"],
        filters=[FilterReport("context", removed={"tiny": "too short"}), FilterReport("modality")],
    )
    log.write(
        LogEntry(
            "r1",
            "user: secret question",
            200,
            0.25,
            decision,
            api_key="team",
            prompt_tokens=10,
            completion_tokens=5,
            big_cost=0.01,
        )
    )
    log.write(LogEntry("r2", "", 400, 0.001))
    assert log.flush(10)
    rows = read_rows(url)
    log.close()
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    first = rows[0]
    assert first["prompt_hash"] == hashlib.sha256(b"user: secret question").hexdigest()
    assert first["prompt_text"] is None
    assert (first["model"], first["fallback_from"], first["api_key"], first["status"]) == ("small", "big", "team", 200)
    assert first["filters"] == '{"context": {"tiny": "too short"}}'  # only filters that fired
    assert first["latency_ms"] == pytest.approx(250) and first["cost"] == pytest.approx(0.002)
    assert rows[1]["status"] == 400 and rows[1]["model"] is None
    mode = sqlite3.connect(tmp_path / "log.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_text_is_kept_only_when_asked(url: str) -> None:
    log = RequestLog(url, log_text=True)
    log.write(LogEntry("r1", "user: hello", 200, 0.1, _decision("big", 0.0)))
    log.close()  # close also writes what is queued
    assert read_rows(url)[0]["prompt_text"] == "user: hello"


def test_read_rows_since(url: str) -> None:
    log = RequestLog(url)
    log.write(LogEntry("old", "a", 200, 0.1, _decision("small", 0.0), time=time.time() - 7200))
    log.write(LogEntry("new", "b", 200, 0.1, _decision("small", 0.0)))
    log.close()
    assert [r["request_id"] for r in read_rows(url, since=time.time() - 3600)] == ["new"]


def test_bad_log_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="request log"):
        RequestLog("nosuchdialect://x/y")


def test_summarize_and_cli(url: str) -> None:
    log = RequestLog(url)
    for i, (model, latency) in enumerate([("small", 0.1), ("small", 0.2), ("small", 0.3), ("big", 0.4)]):
        cost = 0.001 if model == "small" else 0.01
        log.write(LogEntry(f"r{i}", "x", 200, latency, _decision(model, cost, escalated=model == "big"), big_cost=0.01))
    log.write(LogEntry("bad", "", 400, 0.0))
    log.close()
    summary = log_cmd.summarize(read_rows(url))
    assert summary["requests"] == 5 and summary["ok"] == 4 and summary["errors"] == {"400": 1}
    assert summary["share"] == {"small": 0.75, "big": 0.25}
    assert summary["cost_usd"] == pytest.approx(0.013) and summary["always_big_cost_usd"] == pytest.approx(0.04)
    assert summary["cost_ratio"] == pytest.approx(0.325)
    assert summary["p50_ms"] == pytest.approx(250)
    assert summary["escalated"] == 1

    app = typer.Typer()
    log_cmd.register(app)
    app.command("noop")(lambda: None)  # typer runs a lone command without its name; keep "log" a subcommand
    result = CliRunner().invoke(app, ["log", "--db", url])
    assert result.exit_code == 0, result.output
    assert "requests: 5" in result.output and "75.0%" in result.output and "32.5% of always-big" in result.output


def test_cli_missing_log_file(tmp_path: Path) -> None:
    app = typer.Typer()
    log_cmd.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["log", "--db", str(tmp_path / "none.sqlite")])
    assert isinstance(result.exception, ConfigError) and "no request log" in str(result.exception)


@pytest.mark.parametrize("hours", ["-5", "nan", "0"])
def test_cli_refuses_bad_hours(tmp_path: Path, hours: str) -> None:
    app = typer.Typer()
    log_cmd.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["log", "--db", str(tmp_path / "none.sqlite"), "--hours", hours])
    assert isinstance(result.exception, ConfigError) and "--hours must be a positive number" in str(result.exception)
