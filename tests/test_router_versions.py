"""Router versions on disk and the ``sizewise router`` commands: retrain behind the guard, promote, roll back,
history; what the gateway loads is always one whole recorded version (#22 item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from learned_helpers import planted_pair, prompts, table_from
from sizewise.errors import ConfigError
from sizewise.learn.versions import CURRENT, RouterVersions
from sizewise.routers.base import load_router
from sizewise.routers.retrained import RetrainedRouter


@pytest.fixture(scope="module")
def incumbent_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A router trained on another deployment's traffic, where the weak model fails chat instead."""
    rng = np.random.default_rng(1)
    texts, topics = prompts(500, 2)
    weak = rng.random(500) < np.where(topics == 2, 0.15, 0.95)
    strong = rng.random(500) < 0.9
    table = table_from(texts, np.c_[weak, strong].astype(float), ["small", "large"])
    return RetrainedRouter().fit(table).save(tmp_path_factory.mktemp("inc") / "incumbent.zip")


@pytest.fixture(scope="module")
def outcome_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Judged traffic with a signal, and judged traffic whose outcomes have nothing to do with the prompts."""
    folder = tmp_path_factory.mktemp("outcomes")
    good = planted_pair(1200, seed=31).save(folder / "judged.parquet")
    noise = planted_pair(400, seed=32, shuffle=True).save(folder / "noise.parquet")
    return good, noise


def test_retrain_promote_rollback_history_through_the_cli(run_cli, incumbent_file, outcome_files, tmp_path):
    good, noise = outcome_files
    where = ["--router-dir", str(tmp_path)]
    code, out, err = run_cli("router", "retrain", "--outcomes", str(good), "--incumbent", str(incumbent_file), *where)
    assert code == 0, err
    assert "promoted v0002" in out
    versions = RouterVersions(tmp_path)
    assert versions.current() == "v0002" and versions.versions() == ["v0001", "v0002"]
    assert (tmp_path / CURRENT).read_bytes() == versions.path("v0002").read_bytes()
    assert versions.path("v0001").read_bytes() == incumbent_file.read_bytes()  # the incumbent, kept as it was
    served = load_router(tmp_path / CURRENT)
    assert served.provenance_["parent"] == "v0001" and served.threshold_ is not None

    code, out, err = run_cli("router", "retrain", "--outcomes", str(noise), *where)  # from the current version
    assert code == 0, err
    assert "kept v0002" in out and "not shown better" in out
    assert versions.current() == "v0002" and versions.versions()[-1] == "v0003"
    assert versions.provenance("v0003")["parent"] == "v0002"

    code, out, _ = run_cli("router", "rollback", *where)
    assert code == 0 and "rolled back to v0001" in out
    assert (tmp_path / CURRENT).read_bytes() == incumbent_file.read_bytes()
    code, _, err = run_cli("router", "rollback", *where)
    assert code == 2 and "first version" in err and err.count("\n") == 1

    code, out, _ = run_cli("router", "promote", "v0003", *where)
    assert code == 0 and versions.current() == "v0003"
    code, out, _ = run_cli("router", "history", *where)
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()[:-1]] == [
        "add", "promote", "add", "promote", "add", "rollback", "promote"
    ]  # fmt: skip
    assert out.splitlines()[-1] == "current: v0003"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["router", "promote", "v0042"], "no router version 'v0042'"),
        (["router", "history"], "no router history"),
        (["router", "rollback"], "nothing to roll back"),
        (["router", "retrain", "--outcomes", "missing.csv", "--incumbent", "missing.zip"], "missing.zip"),
    ],
)
def test_bad_input_is_one_line(run_cli, tmp_path, args, message):
    code, _, err = run_cli(*args, "--router-dir", str(tmp_path))
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_bad_target_is_one_line(run_cli, incumbent_file, outcome_files, tmp_path):
    code, _, err = run_cli(
        "router", "retrain", "--outcomes", str(outcome_files[0]), "--incumbent", str(incumbent_file),
        "--target", "speed:1", "--router-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 2 and "target must be" in err and err.count("\n") == 1
    assert not (tmp_path / CURRENT).exists()  # nothing recorded for a command that failed


def test_a_damaged_history_is_named(tmp_path, incumbent_file):
    versions = RouterVersions(tmp_path)
    versions.promote(versions.add(incumbent_file), reason="start")
    with (tmp_path / "history.jsonl").open("a") as file:
        file.write("{not json\n")
    with pytest.raises(ConfigError, match=r"history.jsonl:3: not a JSON line"):
        versions.current()


def test_a_file_that_is_no_router_is_not_recorded(tmp_path):
    bogus = tmp_path / "bogus.zip"
    bogus.write_text(json.dumps({"not": "a router"}))
    with pytest.raises(Exception, match="not a valid sizewise router file"):
        RouterVersions(tmp_path / "dir").add(bogus)
    assert RouterVersions(tmp_path / "dir").versions() == []


def test_the_gateway_routes_with_the_promoted_version_and_again_with_the_incumbent_after_rollback(
    run_cli, incumbent_file, outcome_files, tmp_path
):
    import openai

    from fakes import FakeUpstream, GatewayServer, fake_model
    from sizewise.core.text import conversation_text

    code, out, err = run_cli(
        "router", "retrain", "--outcomes", str(outcome_files[0]), "--incumbent", str(incumbent_file),
        "--router-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0 and "promoted v0002" in out, err
    messages = [{"role": "user", "content": "Find all real roots of the polynomial x^3 - 12x^2 + 7x - 5."}]
    text = conversation_text(messages)

    def served_score() -> tuple[float, str]:
        with FakeUpstream() as upstream:
            models = [fake_model("small", "s", 0.5, upstream.base_url), fake_model("big", "b", 1.5, upstream.base_url)]
            config = {"models": models, "gateway": {"log_url": "none", "router_dir": str(tmp_path)}}
            with GatewayServer(config) as gateway:
                client = openai.OpenAI(base_url=gateway.url, api_key="x", max_retries=0, timeout=60)
                raw = client.chat.completions.with_raw_response.create(model="sizewise", messages=messages)
                return float(raw.headers["x-sizewise-score"]), raw.headers["x-sizewise-model"]

    promoted = load_router(tmp_path / CURRENT)
    score, model = served_score()
    assert score == pytest.approx(float(promoted.score([text])[0]), abs=1e-4)
    assert model == ("big" if score >= promoted.threshold_ else "small")
    assert run_cli("router", "rollback", "--router-dir", str(tmp_path))[0] == 0
    before = load_router(incumbent_file).score([text])[0]
    assert abs(before - promoted.score([text])[0]) > 0.1  # the two versions are told apart by the score
    score, _ = served_score()
    assert score == pytest.approx(float(before), abs=1e-4)


def test_the_pair_can_be_named_and_an_unknown_model_is_one_line(run_cli, incumbent_file, outcome_files, tmp_path):
    args = ["router", "retrain", "--outcomes", str(outcome_files[0]), "--incumbent", str(incumbent_file)]
    code, _, err = run_cli(*args, "--strong", "nope", "--router-dir", str(tmp_path / "a"))
    assert code == 2 and "unknown model 'nope'" in err and err.count("\n") == 1
    code, _, err = run_cli(*args, "--weak", "large", "--strong", "small", "--router-dir", str(tmp_path / "b"))
    assert code == 0, err
    candidate = load_router(RouterVersions(tmp_path / "b").path("v0002"))
    assert (candidate.weak_, candidate.strong_) == ("large", "small")
