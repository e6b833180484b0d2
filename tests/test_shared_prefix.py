"""A prefix every prompt shares (few-shot examples, a system prompt) must not blind the embedding routers:
``fit`` learns the shared leading/trailing lines and the routers read what varies (``routers/prefix.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from learned_helpers import planted_pair, table_from
from sizewise.core.table import OutcomeTable
from sizewise.evaluation.harness import evaluate
from sizewise.paths import data_dir
from sizewise.routers._learned import embed_prompts
from sizewise.routers.base import load_router, make_router
from sizewise.routers.prefix import learn_shared, shared_from_meta, varying_part

SHOTS = "The following are multiple choice questions (with answers).\n\n"


def test_learns_the_lines_most_prompts_share_and_only_those() -> None:
    block = SHOTS + "Q: 2 + 2?\nA: 4\n\nQ: The capital of France?\nA: Paris\n\n"
    texts = [f"{block}Q: question {i} about item {i * 7}?\nA:" for i in range(8)] + ["hello", "hi\nthere"]
    prefix, suffix = learn_shared(texts)
    assert prefix == block and suffix == ""
    assert varying_part([texts[0], "hello", block], prefix, suffix) == [
        "Q: question 0 about item 0?\nA:",
        "hello",
        block,
    ]
    assert learn_shared([f"question {i}\nsame short line" for i in range(5)]) == ("", "")  # too short to matter
    assert learn_shared(["one prompt"]) == ("", "")


def test_a_shared_closing_instruction_is_learned_too() -> None:
    closing = "Reply with only the letter of the correct option, no explanation."
    texts = [f"Question {i}: which option?\n(A) x{i}\n(B) y{i}\n\n{closing}" for i in range(6)]
    prefix, suffix = learn_shared(texts)
    assert prefix == "" and suffix.endswith(closing)
    assert varying_part(texts[:1], prefix, suffix) == ["Question 0: which option?\n(A) x0\n(B) y0"]


def test_a_long_remainder_keeps_its_end() -> None:
    text = "word " * 600 + "the actual question?"
    (cut,) = varying_part([text], "", "", tail_chars=100)
    assert cut.endswith("the actual question?") and len(cut) <= 100 and not cut.startswith(" ")


@pytest.mark.usefixtures("private_embedding_cache")
def test_the_router_file_keeps_what_it_learned(tmp_path) -> None:
    table = planted_pair(40, seed=2)
    texts = [SHOTS + "Example: one\nExample: two\n\n" + t for t in table.texts]
    shot_table = table_from(texts, table.quality, list(table.models))
    router = make_router("knn", k=5).fit(shot_table)
    loaded = load_router(router.save(tmp_path / "knn.zip"))
    assert loaded.shared_ == router.shared_ and router.shared_[0].startswith(SHOTS)
    np.testing.assert_array_equal(loaded.score(texts[:5]), router.score(texts[:5]))
    assert shared_from_meta({}) is None  # a file written before it: whole prompts, as its embeddings saw them
    with pytest.raises(ValueError, match="not a \\[prefix, suffix\\] pair"):
        shared_from_meta({"shared": ["only one"]})


@pytest.mark.usefixtures("private_embedding_cache")
def test_a_file_from_before_reads_whole_prompts_as_its_embeddings_did(tmp_path) -> None:
    from learned_helpers import rewrite_bundle

    table = planted_pair(30, seed=4)
    path = make_router("embed-logreg").fit(table).save(tmp_path / "new.zip")

    def drop_shared(header: dict) -> dict:
        header["meta"]["state"].pop("shared")
        return header

    old = load_router(rewrite_bundle(path, tmp_path / "old.zip", header=drop_shared))
    new = load_router(path)
    assert old.shared_ is None and new.shared_ == ("", "")
    long = "word " * 400 + "and a question at the very end?"
    whole = old._predict(embed_prompts([long], "minilm").astype(np.float64))
    np.testing.assert_array_equal(old.predict_quality([long]), whole)  # head first, as MiniLM cuts it
    assert not np.array_equal(new.predict_quality([long]), whole)  # a new file reads the end


def mmlu_with_shots(n: int = 300, seed: int = 0) -> OutcomeTable:
    """RouteLLM MMLU questions behind the same five example questions: the 5-shot shape of the issue."""
    from sizewise.evaluation.loaders import load_dataset

    table = load_dataset("routellm-mmlu")
    order = np.random.default_rng(seed).permutation(len(table))
    shots, pick = order[:5], order[5 : 5 + n]
    block = SHOTS + "".join(table.texts[i] + "\n\n" for i in shots)
    return table_from([block + table.texts[i] for i in pick], table.quality[pick], list(table.models))


@pytest.fixture(scope="module")
def mmlu() -> OutcomeTable:
    return mmlu_with_shots()


@pytest.mark.parametrize("name", ["knn", "embed-logreg"])
def test_mmlu_behind_shared_shots_is_read_past_the_shots(mmlu: OutcomeTable, name: str) -> None:
    """Before: MiniLM's 256 tokens held only the shots, every prompt the same score, each fold 0.500."""
    router = make_router(name).fit(mmlu.subset(np.arange(240)))
    assert router.shared_[0].startswith(SHOTS) and len(router.shared_[0]) > 1000
    scores = router.score(mmlu.texts[240:])
    assert np.unique(scores).size > 30
    result = evaluate(mmlu, [name], cv=5, seed=0).results[0]
    assert result.metrics["apgr_fold_mean"] > 0.5


def overruling(n: int = 300) -> OutcomeTable:
    """FrugalGPT OVERRULING: every prompt is the same few-shot block, a sentence, the same question."""
    frame = pd.read_csv(data_dir() / "frugalgpt" / "overruling.csv").sample(n=n, random_state=0)
    reference = frame["ref_answer"].astype(str).str.strip()
    pair = ["gptj_6B", "gpt-4"]
    quality = np.stack([(frame[f"{m}_answer"].astype(str).str.strip() == reference).to_numpy(float) for m in pair], 1)
    return table_from(frame["query"].tolist(), quality, pair)


def test_overruling_routes_on_the_sentence_not_the_shots() -> None:
    table = overruling()
    prefix, suffix = learn_shared(table.texts)
    assert prefix.startswith("Context:") and suffix == "Question: Is it overruling?\nAnswer:"
    result = evaluate(table, ["knn"], cv=5, seed=0).results[0]
    assert result.metrics["apgr_fold_mean"] > 0.7  # 0.646 when the shots filled MiniLM's window
