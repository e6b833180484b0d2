"""``sizewise eval`` end to end on a user's table file: table, JSON, report, and one-line errors."""

from __future__ import annotations

import json

import pytest

from learned_helpers import planted_pair


@pytest.fixture
def run(run_cli):
    """``sizewise eval ARGS...``: (exit code, stdout, stderr)."""
    return lambda *args: run_cli("eval", *args)


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    return str(planted_pair(240, seed=1).save(tmp_path_factory.mktemp("t") / "outcomes.parquet"))


def test_eval_writes_table_json_and_report(run, tmp_path, table_file):
    code, out, _ = run(
        "--table", table_file, "--router", "random", "--router", "tfidf-logreg",
        "--router", "always-large", "--cv", "3", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "rep"),
        "--no-progress",
    )  # fmt: skip
    assert code == 0
    assert "tfidf-logreg" in out and "50.0%" in out  # random's CPT(50%)
    payload = json.loads((tmp_path / "r.json").read_text())
    routers = {r["router"]: r for r in payload["routers"]}
    for key in ("apgr", "cpt20", "cpt50", "cpt80", "auc", "aiq", "cost_at_strong_quality", "curve"):
        assert key in routers["tfidf-logreg"]
    assert routers["random"]["apgr"] == pytest.approx(0.5)
    assert routers["tfidf-logreg"]["apgr"] > 0.55
    assert len(routers["tfidf-logreg"]["curve"]["share"]) == len(routers["tfidf-logreg"]["curve"]["quality"])
    page = (tmp_path / "rep" / "index.html").read_text()
    assert page.count("plotly-graph-div") == 2 and "<table>" in page  # share and cost charts, metrics
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["routers"] == payload["routers"]


def test_eval_a_saved_router_file(run, tmp_path, table_file):
    from sizewise.routers.base import make_router

    router_path = make_router("tfidf-logreg").fit(planted_pair(200, seed=8)).save(tmp_path / "r.zip")
    code, out, _ = run("--table", table_file, "--router-file", str(router_path), "--no-progress")
    assert code == 0 and "tfidf-logreg" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "no-such-dataset"], "unknown dataset"),
        (["--router", "nope"], "unknown router"),
        (["--cv", "1"], "at least 2"),
        (["--strong", "gpt-9"], "unknown model 'gpt-9'"),
        (["--router-file", "/nonexistent/r.zip"], "no such file"),
        (["--target-quality", "1.5"], "--target-quality is a fraction"),
        ([], "exactly one of"),
    ],
)
def test_bad_input_is_one_line_exit_2(run, table_file, args, message):
    if "--dataset" not in args and args != []:
        args = ["--table", table_file, *args]
    code, _, err = run(*args, "--no-progress")
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_table_file(run, tmp_path):
    code, _, err = run("--table", str(tmp_path / "absent.csv"), "--no-progress")
    assert code == 2 and "absent.csv" in err and err.count("\n") == 1


def test_transfer_with_train_on(run, tmp_path, table_file):
    train = str(planted_pair(200, seed=11).save(tmp_path / "train.parquet"))
    out_json = tmp_path / "t.json"
    code, out, _ = run(
        "--table", table_file, "--train-on", train, "--router", "tfidf-logreg",
        "--json", str(out_json), "--no-progress",
    )  # fmt: skip
    assert code == 0 and "transfer" in out
    payload = json.loads(out_json.read_text())
    assert payload["mode"].startswith("transfer") and payload["routers"][0]["apgr"] > 0.55


def test_output_path_that_is_a_folder_is_one_line_exit_2(run, tmp_path, table_file):
    code, _, err = run("--table", table_file, "--router", "random", "--json", str(tmp_path), "--no-progress")
    assert code == 2 and err.startswith("error: Is a directory") and err.count("\n") == 1


def test_table_without_prices_defaults_to_the_least_accurate_weak_model(run, tmp_path):
    rows = [f"question {i},{m},{int(m == 'strong' or i % 2)}" for i in range(40) for m in ("weak", "strong")]
    (tmp_path / "t.csv").write_text("text,model,quality\n" + "\n".join(rows) + "\n")
    code, out, err = run("--table", str(tmp_path / "t.csv"), "--router", "random", "--no-progress")
    assert code == 0, err
    assert "random" in out


def test_help_lists_every_registered_router(run_cli):
    from sizewise.cli.eval_cmd import KNOWN_ROUTERS
    from sizewise.routers.base import router_names

    assert sorted(KNOWN_ROUTERS) == router_names()
    for command in ("eval", "train"):
        code, out, _ = run_cli(command, "--help")
        assert code == 0 and "embed-logreg" in out and "always-large" in out
