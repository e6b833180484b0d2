"""One CLI convention (#23): ``--config`` for the catalog, ``--param KEY=JSON`` where a router is built,
errors that say what to do, and ``sizewise log`` as tables from the catalog's log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakes import fake_model
from learned_helpers import planted_pair
from sizewise.evaluation.table import OutcomeTable
from sizewise.gateway.log import LogEntry, RequestLog
from sizewise.policy.types import Decision, Step


@pytest.fixture(scope="module")
def table_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(planted_pair(120, seed=2).save(tmp_path_factory.mktemp("t") / "outcomes.parquet"))


def test_eval_passes_router_parameters(run_cli, table_file: str) -> None:
    args = ("eval", "--table", table_file, "--router", "gbdt", "--cv", "2", "--no-progress")
    code, out, err = run_cli(*args, "--param", 'embedding="static"')
    assert code == 0, err
    assert "gbdt" in out
    # The value reaches the router: a bad one is the router's own one-line error.
    code, out, err = run_cli(*args, "--param", 'embedding="nope"')
    assert code == 2 and "embedding must be one of minilm, static, got 'nope'" in err
    assert "Traceback" not in err


def test_eval_param_needs_a_router_that_takes_it(run_cli, table_file: str) -> None:
    code, _, err = run_cli("eval", "--table", table_file, "--param", "k=3", "--no-progress")
    assert code == 2 and "give --router NAME" in err
    code, _, err = run_cli("eval", "--table", table_file, "--router", "random", "--param", "oops", "--no-progress")
    assert code == 2 and "--param wants KEY=VALUE" in err


def test_eval_alike_models_say_to_pick_the_pair(run_cli, tmp_path: Path) -> None:
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(12)], "text": [f"question {i}" for i in range(12)]})
    quality = np.tile([[1.0, 1.0], [0.0, 0.0]], (6, 1))
    path = OutcomeTable("alike", prompts, ["tiny-a", "tiny-b"], quality).save(tmp_path / "alike.parquet")
    code, _, err = run_cli("eval", "--table", str(path), "--router", "random", "--no-progress")
    assert code == 2
    assert "--weak MODEL --strong MODEL" in err and "tiny-a 0.500" in err and "tiny-b 0.500" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        "eval", "--table", str(path), "--router", "random", "--weak", "tiny-a", "--strong", "tiny-b", "--no-progress"
    )
    assert code == 0, err


def test_collect_takes_config_and_the_old_catalog_with_a_note(run_cli, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "2+2?", "answer": "#### 4"}) + "\n")
    missing = tmp_path / "missing.yaml"
    base = ("collect", "--dataset", str(questions), "--out", str(tmp_path / "o.jsonl"))
    code, _, err = run_cli(*base, "--config", str(missing))
    assert code == 2 and f"catalog file {missing} does not exist" in err and "deprecated" not in err
    code, _, err = run_cli(*base, "-c", str(missing))
    assert code == 2 and f"catalog file {missing} does not exist" in err
    code, _, err = run_cli(*base, "--catalog", str(missing))
    assert code == 2 and "--catalog is deprecated; use --config" in err and "does not exist" in err
    code, _, err = run_cli(*base, "--catalog", str(missing), "--config", str(missing))
    assert code == 2 and "give --config only" in err
    code, out, _ = run_cli("collect", "--help")
    assert "--config" in out and "--catalog" not in out


def _write_log(path: Path) -> None:
    log = RequestLog(f"sqlite:///{path}")
    for i, model in enumerate(["small", "small", "big"]):
        decision = Decision(
            policy="sizewise", model=model, score=0.3, threshold=0.5, cost=0.001, steps=[Step(model, accepted=True)]
        )  # type: ignore[arg-type]
        log.write(LogEntry(f"r{i}", "x", 200, 0.1 * (i + 1), decision, big_cost=0.01))
    for i in range(4):
        log.write(LogEntry(f"bad{i}", "", 400, 0.0))
    log.write(LogEntry("down", "", 503, 0.0))
    log.close()


def test_log_reads_the_catalogs_log_and_prints_tables(run_cli, tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "elsewhere" / "gw.sqlite"
    db.parent.mkdir()
    _write_log(db)
    catalog = tmp_path / "sizewise.yaml"
    models = [fake_model(name, name, size, "http://127.0.0.1:9/v1") for name, size in (("small", 1), ("big", 4))]
    catalog.write_text(json.dumps({"models": models, "gateway": {"log_url": f"sqlite:///{db}"}}))
    monkeypatch.chdir(tmp_path)  # no sizewise-log.sqlite here: only the catalog says where the log is
    code, out, err = run_cli("log", "--config", str(catalog))
    assert code == 0, err
    first, *rest = out.splitlines()
    assert first == f"request log: sqlite:///{db} (from gateway.log_url of {catalog})"
    assert "requests: 8 (3 answered, 5 failed)" in out
    assert "{'400'" not in out and "errors by status" in out
    rows = {tuple(line.replace("│", " ").split()) for line in rest}
    assert ("400", "4") in rows and ("503", "1") in rows  # one table row per status
    assert ("small", "2", "66.7%") in rows and ("big", "1", "33.3%") in rows


def test_log_defaults_to_the_built_in_catalogs_log(run_cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("log")
    assert code == 2
    assert "no request log at sizewise-log.sqlite (gateway.log_url of the built-in catalog" in err
    assert "give --config or --db" in err
    _write_log(tmp_path / "sizewise-log.sqlite")
    code, out, err = run_cli("log")
    assert code == 0, err
    assert out.splitlines()[0] == (
        "request log: sqlite:///sizewise-log.sqlite (from gateway.log_url of the built-in catalog)"
    )


def test_log_says_when_the_catalog_turns_it_off(run_cli, tmp_path: Path) -> None:
    catalog = tmp_path / "sizewise.yaml"
    models = [fake_model("small", "small", 1, "http://127.0.0.1:9/v1")]
    catalog.write_text(json.dumps({"models": models, "gateway": {"log_url": "none"}}))
    code, _, err = run_cli("log", "-c", str(catalog))
    assert code == 2 and f"the request log is off (gateway.log_url of {catalog} is 'none')" in err


def test_log_names_a_db_without_its_password() -> None:
    from sizewise.cli.log_cmd import redact

    assert redact("postgresql://gw:s3cret@db.internal:5432/log") == "postgresql://gw:***@db.internal:5432/log"
    assert redact("sqlite:///a.sqlite") == "sqlite:///a.sqlite"
