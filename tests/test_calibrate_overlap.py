"""`calibrate` warns when it is handed the prompts the router was trained on (#23): the docs' own sequence trained
on routellm-mmlu and calibrated on it, reporting an in-sample "quality 0.913 at 27% strong" with no word."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learned_helpers import planted_pair
from sizewise.evaluation.overlap import K, seen_share, training_sketch


def _texts(n: int, tag: str) -> list[str]:
    return [f"{tag} prompt number {i}" for i in range(n)]


def test_a_small_training_set_is_kept_whole_and_the_share_is_exact() -> None:
    sketch = training_sketch(_texts(100, "a"), "t")
    assert sketch["prompts"] == 100 and len(sketch["sketch"]) == 100
    assert seen_share(sketch, _texts(50, "a") + _texts(50, "b")) == (0.5, 100)


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_a_large_training_set_is_estimated_from_the_sketch(share: float) -> None:
    train = _texts(20_000, "a")
    sketch = training_sketch(train, "t")
    assert len(sketch["sketch"]) == K
    inside = int(share * 10_000)
    estimate, used = seen_share(sketch, train[:inside] + _texts(10_000 - inside, "b")) or (None, 0)
    assert used > 50 and estimate == pytest.approx(share, abs=0.12)


def test_no_sketch_no_estimate() -> None:
    assert seen_share(None, ["x"]) is None and seen_share({"table": "t"}, ["x"]) is None


def test_calibrate_warns_on_its_training_table_and_not_on_fresh_outcomes(tmp_path: Path, run_cli) -> None:
    train, fresh = tmp_path / "train.parquet", tmp_path / "fresh.parquet"
    planted_pair(400, seed=3).save(train)
    planted_pair(400, seed=4).save(fresh)  # other prompts, same kind
    router = tmp_path / "r.zip"
    code, _, err = run_cli("train", "--router", "tfidf-logreg", "--table", str(train), "--out", str(router))
    assert code == 0, err
    code, out, err = run_cli("calibrate", "--router-file", str(router), "--table", str(train), "--target-share", "0.3")
    assert code == 0 and "threshold:" in out, err
    assert "warning: about 100% of these prompts were the router's training prompts" in err
    code, out, err = run_cli("calibrate", "--router-file", str(router), "--table", str(fresh), "--target-share", "0.3")
    assert code == 0 and "threshold:" in out, err
    assert "warning" not in err
    code, out, _ = run_cli("calibrate", "--router-file", str(router), "--table", str(train), "--target-share", "0.3",
                           "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["warning"].startswith("about 100% of these prompts")
