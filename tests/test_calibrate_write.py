"""`calibrate` keeps what it chose (#23): the threshold, its interval and the data it came from go into the router
file (`--write`, or `--router NAME --param ... --out FILE`) or a catalog snippet (`--write-catalog`), the gateway
then routes on it and its start-up line says where it came from; `--plot` saves the threshold curves as a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from fakes import GatewayServer, fake_model
from learned_helpers import planted_pair
from sizewise.cli.serve_cmd import startup_lines
from sizewise.routers.base import load_router

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tables")
    train, fresh = folder / "train.parquet", folder / "fresh.parquet"
    planted_pair(300, seed=3).save(train)
    planted_pair(300, seed=4).save(fresh)  # other prompts, same kind: no in-sample warning
    return train, fresh


def _threshold(out: str) -> float:
    return float(next(line for line in out.splitlines() if line.startswith("threshold:")).split()[1])


def _catalog(tmp_path: Path, gateway: dict) -> Path:
    models = [fake_model(name, name, size, "http://127.0.0.1:9/v1") for name, size in (("small", 1), ("large", 8))]
    path = tmp_path / "sizewise.yaml"
    path.write_text(yaml.safe_dump({"models": models, "gateway": {"log_url": "none", **gateway}}))
    return path


def _started(catalog: Path) -> tuple[list[str], float]:
    """The gateway's start-up lines for ``catalog`` and the threshold ``/v1/route`` decides with."""
    from sizewise.catalog import load_catalog

    spec = load_catalog(catalog)
    with GatewayServer(spec) as gateway:
        lines = startup_lines(catalog, gateway.app.state.gateway, set())
        body = {"model": "sizewise", "messages": [{"role": "user", "content": "Solve 3x + 7 = 22."}]}
        route = httpx.post(gateway.url + "/route", json=body, timeout=30).json()
    return lines, route["sizewise"]["threshold"]


def test_write_records_threshold_and_provenance_and_the_gateway_uses_it(run_cli, tables, tmp_path: Path) -> None:
    train, fresh = tables
    router = tmp_path / "r.zip"
    assert run_cli("train", "--router", "tfidf-logreg", "--table", str(train), "--out", str(router))[0] == 0
    before = load_router(router)
    assert before.threshold_ is None
    png, snippet = tmp_path / "plots" / "cal.png", tmp_path / "snippet.yaml"
    args = ("calibrate", "--router-file", str(router), "--table", str(fresh), "--target-share", "0.3")
    code, out, err = run_cli(*args, "--write", "--write-catalog", str(snippet), "--plot", str(png))
    assert code == 0, err
    chosen = _threshold(out)
    assert f"in {router}: the gateway's default for this file" in out
    saved = load_router(router)
    assert saved.threshold_ == pytest.approx(chosen, rel=1e-5)
    record = saved.provenance_["calibration"]["targets"]["share_0.3"]
    assert saved.provenance_["calibration"]["default"] == "share_0.3"
    assert record["data"] == "synthetic" and record["source"] == str(fresh) and record["prompts"] == 300
    assert record["n_heldout"] == 150 and record["share_ci"][0] <= record["share"] <= record["share_ci"][1]
    assert record["calibrated"].endswith("Z")
    assert "training_prompts" in saved.provenance_  # what train recorded is kept (the in-sample warning needs it)
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
    # The gateway reads the threshold from the file and says so.
    lines, used = _started(_catalog(tmp_path, {"router": str(router)}))
    assert used == pytest.approx(chosen, rel=1e-5)
    line = next(line for line in lines if line.startswith("threshold:"))
    assert "(calibration recorded in the router file: share_0.3 on synthetic, " in line and "held-out share" in line
    # The snippet: router and threshold for a catalog, the provenance in comments; the gateway takes it as is.
    text = snippet.read_text()
    assert "share of strong calls 0.3 on synthetic" in text and "150 held-out prompts" in text
    gateway = yaml.safe_load(text)["gateway"]
    assert gateway == {"router": str(router.resolve()), "threshold": pytest.approx(chosen, abs=1e-6)}
    lines, used = _started(_catalog(tmp_path, gateway))
    assert used == pytest.approx(chosen, abs=1e-6)
    assert any(line.endswith("(catalog gateway.threshold)") for line in lines)


def test_a_second_target_becomes_the_default_and_the_first_is_kept(run_cli, tables, tmp_path: Path) -> None:
    train, fresh = tables
    router = tmp_path / "r.zip"
    run_cli("train", "--router", "tfidf-logreg", "--table", str(train), "--out", str(router))
    base = ("calibrate", "--router-file", str(router), "--table", str(fresh), "--write")
    assert run_cli(*base, "--target-share", "0.3")[0] == 0
    code, out, err = run_cli(*base, "--target-quality", "0.9", "--json")
    assert code == 0, err
    assert json.loads(out)["threshold"] == pytest.approx(load_router(router).threshold_)  # stdout stays JSON
    assert "recorded threshold" in err
    calibration = load_router(router).provenance_["calibration"]
    assert calibration["default"] == "quality_0.9" and set(calibration["targets"]) == {"share_0.3", "quality_0.9"}


def test_router_with_params_is_fitted_and_calibrated_on_other_prompts(run_cli, tables, tmp_path: Path) -> None:
    _, fresh = tables
    out_file = tmp_path / "fitted.zip"
    code, out, err = run_cli(
        "calibrate", "--router", "tfidf-logreg", "--param", "C=0.5", "--table", str(fresh),
        "--target-share", "0.4", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    assert "warning" not in err  # fitted on one half of the prompts, calibrated on the other
    saved = load_router(out_file)
    assert saved.get_params()["C"] == 0.5
    assert saved.threshold_ == pytest.approx(_threshold(out), rel=1e-5)
    record = saved.provenance_["calibration"]["targets"]["share_0.4"]
    assert record["fitted_on"] == {"data": "synthetic", "prompts": 150, "train_share": 0.5, "seed": 0}
    assert record["n_calibration"] + record["n_heldout"] == 150
    # Calibrating that file on the whole table again: half of it was its training set, and it says so.
    code, _, err = run_cli("calibrate", "--router-file", str(out_file), "--table", str(fresh), "--target-share", "0.4")
    assert code == 0 and "warning: about 50% of these prompts were the router's training prompts" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give exactly one of --router-file FILE (a trained router) or --router NAME"),
        (("--router-file", "r.zip", "--param", "C=1"), "--param and --out go with --router NAME"),
        (("--router", "tfidf-logreg"), "--router NAME fits a new router: give --out FILE for it"),
        (("--router", "tfidf-logreg", "--out", "o.zip", "--param", "nope=1"), "nope"),
        (("--router", "tfidf-logreg", "--out", "o.zip", "--param", "C"), "--param wants KEY=VALUE"),
        (("--router", "tfidf-logreg", "--out", "o.zip", "--write"), "drop --write"),
        (("--router-file", "missing.zip"), "--router-file missing.zip: no such file (write one with `sizewise train`)"),
        (("--router", "tfidf-logreg", "--out", "o.zip", "--train-share", "1"), "--train-share must lie strictly"),
        (("--router", "tfidf-logreg", "--out", "o.zip", "--target-quality", "0.9"), "give exactly one target"),
        (("--router-file", "r.zip", "--plot", "curves.txt"), "--plot curves.txt: end the name in .png, .svg or .pdf"),
        (("--router-file", "r.zip", "--plot", "curves"), "--plot curves: end the name in .png"),
    ],
)
def test_errors_are_one_line_that_say_what_to_do(run_cli, tables, tmp_path: Path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("calibrate", "--table", str(tables[1]), "--target-share", "0.3", *args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
