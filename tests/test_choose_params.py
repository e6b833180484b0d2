"""`choose --param` (#23): the router `choose` builds takes parameters as in eval, train and calibrate (one
parser), and a parameter it does not take is a one-line error before any work."""

from __future__ import annotations

import pytest

from learned_helpers import planted_pair


@pytest.fixture(scope="module")
def table_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(planted_pair(200, seed=5).save(tmp_path_factory.mktemp("t") / "outcomes.parquet"))


def test_choose_builds_the_router_with_its_params(run_cli, table_file: str) -> None:
    base = ("choose", "--data", table_file, "--target", "95%", "--router", "knn")
    code, out, err = run_cli(*base, "--param", "embedding=static", "--param", "k=10")
    assert code == 0, err
    assert "router 'knn': small / large, threshold" in out
    # The value reaches the router: a bad one is the router's own error in the report.
    code, out, err = run_cli(*base, "--param", "embedding=nope")
    assert code == 0, err
    assert "router 'knn' failed" in out and "embedding must be one of minilm, static, got 'nope'" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--router", "knn", "--param", "bogus=1"), "router 'knn': bad parameter 'bogus'; it takes: k, embedding"),
        (("--param", "k=3"), "give --router NAME"),
        (("--router", "heuristic", "--param", "k=3"), "give --router NAME (not heuristic)"),
        (("--router", "knn", "--param", "k"), "--param wants KEY=VALUE"),
    ],
)
def test_bad_params_are_one_line(run_cli, table_file: str, args, message) -> None:
    code, _, err = run_cli("choose", "--data", table_file, "--target", "0.5", *args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_choose_reads_the_table_options_of_the_other_commands(run_cli, table_file: str) -> None:
    code, by_data, err = run_cli("choose", "--data", table_file, "--target", "0.5")
    assert code == 0, err
    code, by_table, err = run_cli("choose", "--table", table_file, "--target", "0.5")  # as eval, train, calibrate
    assert code == 0 and by_table == by_data, err
    for args in ((), ("--data", table_file, "--table", table_file)):
        code, _, err = run_cli("choose", "--target", "0.5", *args)
        assert code == 2 and "give exactly one of --data NAME_OR_FILE (or --dataset NAME, --table FILE)" in err
    code, out, _ = run_cli("choose", "--help")
    assert "--data" in out and "--table" not in out
