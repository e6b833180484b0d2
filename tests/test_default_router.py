"""The default router's provenance: the shipped file records its embedding and calibration, a file that
does not fit the installed embedding (or whose calibration is unreadable) stops start-up with one line,
and ``sizewise train --default-router`` rebuilds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fakes import GatewayServer, fake_model
from learned_helpers import planted_pair, rewrite_bundle
from sizewise.errors import ConfigError, RouterFileError
from sizewise.learn import read_header
from sizewise.routers.base import calibrated_threshold, load_router, make_router

#: What the shipped file was trained with: the embedded pair's own collected outcomes (issue #22; 549
#: questions, 110 of them held out for calibration): bench/train_default_router.py, docs/results.md.
SHIPPED_THRESHOLD = 0.1348
SHIPPED_N_TRAIN = 439


@pytest.fixture(scope="module")
def shipped() -> Path:
    from sizewise.policy.routing import shipped_router

    return shipped_router()[0]


def test_the_shipped_router_records_its_embedding_and_calibration(shipped: Path) -> None:
    from sizewise.embedding.static import table_id
    from sizewise.policy.routing import shipped_router

    provenance = read_header(shipped, "router")["provenance"]
    assert provenance["embedding"] == {"name": "static", "id": table_id()}
    calibration = provenance["calibration"]
    assert calibration["default"] == "share_0.5"
    assert calibration["targets"]["share_0.5"]["threshold"] == pytest.approx(SHIPPED_THRESHOLD, abs=1e-4)
    assert provenance["training"]["n_train"] == SHIPPED_N_TRAIN
    router = load_router(shipped)
    assert router.threshold_ == calibrated_threshold(shipped) == shipped_router()[1]
    assert not (shipped.parent / "thresholds.json").exists()  # one source of truth: the file itself


def test_an_old_file_without_provenance_still_loads(tmp_path: Path) -> None:
    table = planted_pair(40, seed=2)
    router = make_router("knn").fit(table)
    path = router.save(tmp_path / "new.zip")
    assert read_header(path, "router")["provenance"]["embedding"]["name"] == "minilm"
    old = rewrite_bundle(path, tmp_path / "old.zip", header=lambda h: {k: v for k, v in h.items() if k != "provenance"})
    loaded = load_router(old)
    assert loaded.provenance_ == {} and loaded.threshold_ is None
    np.testing.assert_array_equal(loaded.score(table.texts[:5]), router.score(table.texts[:5]))


def _with_provenance(shipped: Path, out: Path, change: Any) -> Path:
    def edit(header: dict[str, Any]) -> dict[str, Any]:
        change(header["provenance"])
        return header

    return rewrite_bundle(shipped, out, header=edit)


def other_embedding(provenance: dict[str, Any]) -> None:
    provenance["embedding"]["id"] = "static-minilm-v0-pca128-sif0.01-0123456789abcdef"


def unreadable_calibration(provenance: dict[str, Any]) -> None:
    provenance["calibration"]["targets"]["share_0.5"]["threshold"] = "0.23"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (other_embedding, r"trained on embedding static-minilm-v0-pca128-sif0.01-0123456789abcdef, but the installed"),
        (unreadable_calibration, r"its calibration target 'share_0.5' has no finite threshold"),
        (lambda p: p["calibration"].pop("default"), r"its calibration needs a 'default'"),
        (lambda p: p["embedding"].update(name="minilm"), r"names embedding 'minilm', its parameters another"),
    ],
)
def test_a_file_that_does_not_fit_is_refused(shipped: Path, tmp_path: Path, change: Any, message: str) -> None:
    bad = _with_provenance(shipped, tmp_path / "default.zip", change)
    with pytest.raises(RouterFileError, match=message) as info:
        load_router(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change", [other_embedding, unreadable_calibration])
def test_a_default_router_that_does_not_fit_stops_start_up(shipped: Path, tmp_path: Path, change: Any) -> None:
    from sizewise.catalog.schema import CatalogSpec
    from sizewise.gateway.app import create_app

    _with_provenance(shipped, tmp_path / "default.zip", change)  # the router directory's default.zip
    models = [
        fake_model("small", "ok-s", 1.0, "http://127.0.0.1:9/v1"),
        fake_model("big", "ok-b", 2.0, "http://127.0.0.1:9/v1"),
    ]
    spec = CatalogSpec.model_validate({"models": models, "gateway": {"log_url": "none"}})
    with pytest.raises(ConfigError, match="default router unusable") as info:
        create_app(spec, router_dir=tmp_path)
    assert str(tmp_path / "default.zip") in str(info.value) and "\n" not in str(info.value)


def test_a_router_file_records_its_embedding_and_a_given_calibration(tmp_path: Path) -> None:
    from sizewise.embedding import embed_id

    table = planted_pair(60, seed=3)
    router = make_router("knn", embedding="minilm").fit(table)
    calibration = {"default": "share_0.5", "targets": {"share_0.5": {"threshold": 0.25}}}
    path = router.save(tmp_path / "knn.zip", provenance={"calibration": calibration})
    loaded = load_router(path)
    assert loaded.provenance_["embedding"] == {"name": "minilm", "id": embed_id("minilm")}
    assert loaded.threshold_ == 0.25
    np.testing.assert_array_equal(loaded.score(table.texts[:5]), router.score(table.texts[:5]))


def test_train_rebuilds_the_default_router(run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe end to end on a small planted table standing in for the public data (minutes otherwise)."""
    from sizewise.evaluation import default_router

    monkeypatch.setattr(default_router, "training_table", lambda: planted_pair(200, seed=4))
    out = tmp_path / "default.zip"
    code, stdout, err = run_cli("train", "--default-router", "--router", "tfidf-logreg", "--out", str(out))
    assert code == 0, err
    assert f"default router -> {out}" in stdout and "share_0.5: threshold" in stdout
    router = load_router(out)
    training = router.provenance_["training"]
    assert (
        training["recipe"] == "sizewise train --default-router" and training["n_train"] + training["n_heldout"] == 200
    )
    assert set(router.provenance_["calibration"]["targets"]) == {
        "share_0.2",
        "share_0.3",
        "share_0.5",
        "share_0.8",
        "quality_0.95",
    }
    assert router.threshold_ == router.provenance_["calibration"]["targets"]["share_0.5"]["threshold"]
    code, _, err = run_cli("train", "--default-router", "--dataset", "routellm-mmlu", "--out", str(out))
    assert code == 2 and "own recipe" in err
    code, _, err = run_cli("train", "--out", str(out))
    assert code == 2 and "give --router NAME and --out PATH" in err


@pytest.mark.parametrize(
    "prompt",
    [
        "Prove that the square root of 2 is irrational.",
        "What is 37 * 43? Show your work step by step, then give the final answer.",
    ],
)
def test_prompts_that_need_the_bigger_model_get_it(shipped: Path, prompt: str) -> None:
    """Issue #22: with the router trained on GPT-4 vs Mixtral, both went to qwen2.5-coder-0.5b."""
    router = load_router(shipped)
    assert router.threshold_ is not None and router.score([prompt])[0] >= router.threshold_


def _collected_row(prompt_id: str, model: str, text: str, correct: bool) -> str:
    import json

    row = {"prompt_id": prompt_id, "model": model, "text": text, "gold": "A", "response": "A", "correct": correct}
    return json.dumps(row | {"tokens_in": 10, "tokens_out": 1, "latency": 0.1, "logprobs": [-0.1]}) + "\n"


def test_the_recipe_reads_the_embedded_pairs_collected_outcomes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sizewise.errors import DataError
    from sizewise.evaluation.default_router import EMBEDDED_PAIR, embedded_table

    monkeypatch.setenv("SIZEWISE_COLLECTED", str(tmp_path))
    with pytest.raises(
        DataError, match=r"no outcomes of qwen2.5-coder-0.5b and qwen2.5-coder-1.5b in .*collect_embedded"
    ):
        embedded_table()
    closing = "\n\nReply with only the letter of the correct option, no explanation."
    lines = [
        _collected_row(
            f"q{i}", model, f"Question {i}: which one?{closing}", correct=(model == EMBEDDED_PAIR[1]) or i % 2 == 0
        )
        for i in range(6)
        for model in ("smollm2-135m", *EMBEDDED_PAIR)
    ]
    (tmp_path / "mmlupro.jsonl").write_text("".join(lines[:-1]))  # the last question lacks the 1.5B answer
    table = embedded_table()
    assert table.models == ["weak", "strong"] and len(table) == 5
    assert table.texts[1] == "Question 1: which one?"  # the collection's closing instruction is not traffic
    assert table.quality[:, 0].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0] and table.quality[:, 1].tolist() == [1.0] * 5
    assert table.meta["outcomes"]["sources"]["mmlupro.jsonl"]["questions"] == 5


@pytest.mark.model
@pytest.mark.slow
def test_cascade_logprob_does_not_accept_smollm2s_wrong_product() -> None:
    """Issue #22: cascade-logprob accepted SmolLM2's "12*12 = 120". Through a live gateway at the shipped
    threshold (calibrated on the embedded ladder's own outcomes, cut answers escalated: python
    bench/train_default_router.py) it is escalated both whole ("12*12 = 120.", sampled with seed 0, which
    the earlier 0.6 and a point-estimate 0.66 accepted) and cut at max_tokens ("12*12 = 120\n\n" at 12
    tokens). The rung above is a fake upstream only to keep the test to one model load."""
    import openai

    from fakes import FakeUpstream
    from sizewise.cascade.scorers.base import Answer, make_scorer
    from sizewise.catalog import load_catalog
    from sizewise.policy.cascading import DEFAULT_THRESHOLDS

    tiny = load_catalog(None).get("smollm2-135m").model_dump()
    asked = {"messages": [{"role": "user", "content": "What is 12*12?"}]}
    whole: dict[str, Any] = {"max_tokens": 64, "seed": 0}
    cut: dict[str, Any] = {"max_tokens": 12, "temperature": 0}
    with (
        FakeUpstream() as up,
        GatewayServer(
            {"models": [tiny, fake_model("big-ok", "big-ok", 8.0, up.base_url)], "gateway": {"log_url": "none"}}
        ) as gw,
    ):
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=120)
        alone = client.chat.completions.create(model="smollm2-135m", logprobs=True, **asked, **whole).choices[0]
        logprobs = [t.logprob for t in alone.logprobs.content]  # type: ignore[union-attr]
        score = float(make_scorer("logprob").score([Answer("", "", logprobs=logprobs)])[0])
        # Whole, wrong and trusted by the earlier threshold: otherwise this test checks nothing.
        assert alone.finish_reason == "stop" and "144" not in str(alone.message.content) and score > 0.6
        steps = {}
        for name, settings in (("whole", whole), ("cut", cut)):
            answer = client.chat.completions.create(model="cascade-logprob", **asked, **settings)
            decision = answer.model_extra["sizewise"]  # type: ignore[index]
            assert decision["model"] == "big-ok" and decision["steps"][0]["model"] == "smollm2-135m"
            steps[name] = decision["steps"][0]
    assert steps["whole"]["score"] == pytest.approx(score, abs=1e-6)
    assert score < steps["whole"]["threshold"] == pytest.approx(DEFAULT_THRESHOLDS["logprob"])
    assert "finish_reason length" in steps["cut"]["reason"]  # escalated unscored
