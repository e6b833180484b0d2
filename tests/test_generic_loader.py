"""The generic loader for users' own logs: long and wide formats, round trips, and every bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from sizewise.core.prices import load_prices
from sizewise.core.table import OutcomeTable
from sizewise.core.tablefile import load_table
from sizewise.errors import ConfigError, DataError, UnknownModelError
from sizewise.evaluation.loaders import load_dataset
from sizewise.paths import data_dir

GPT4 = "gpt-4-1106-preview"
SMALL = "Phi-3-mini-4k-instruct"


def long_frame() -> pd.DataFrame:
    conversation = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                               {"role": "user", "content": "tell me a joke"}])  # fmt: skip
    rows = [
        ("p1", "What is 2+2?", SMALL, 1, "4", "math", None),
        ("p1", "What is 2+2?", GPT4, 1, "The answer is 4.", "math", None),
        ("p2", "Prove Fermat's last theorem.", SMALL, 0, "I cannot.", "math", None),
        ("p2", "Prove Fermat's last theorem.", GPT4, 0.5, "Wiles did.", "math", None),
        ("p3", "", SMALL, 0.25, "Why did...", "chat", conversation),
        ("p3", "", GPT4, 0.75, "A joke.", "chat", conversation),
    ]
    return pd.DataFrame(rows, columns=["prompt_id", "text", "model", "quality", "response", "domain", "conversation"])


def write(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_long_format(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    write(long_frame(), path)
    table = load_table(path, pair=(SMALL, GPT4))
    assert table.name == "log" and table.models == [SMALL, GPT4] and len(table) == 3
    np.testing.assert_array_equal(table.quality, [[1, 1], [0, 0.5], [0.25, 0.75]])
    assert table.prompts["domain"].tolist() == ["math", "math", "chat"]
    assert table.prompts.loc[2, "conversation"][2]["content"] == "tell me a joke"
    assert table.texts[2] == "user: hi\nassistant: hello\nuser: tell me a joke"  # from the conversation
    assert table.responses[1, 1] == "Wiles did."
    # No cost column: tokens counted offline, cost from the default price sheet.
    assert np.all(table.tokens_in > 0) and np.all(table.tokens_out > 0)
    prices = load_prices()
    expected = prices.cost(GPT4, table.tokens_in[:, 1], table.tokens_out[:, 1])
    np.testing.assert_allclose(table.cost[:, 1], expected)
    assert table.meta["cost"].startswith("computed")


def test_given_costs_are_kept_and_unpriced_models_are_nan(tmp_path):
    frame = pd.DataFrame(
        {
            "prompt_id": ["a", "a", "b", "b"],
            "text": ["x", "x", "y", "y"],
            "model": ["mine", GPT4] * 2,
            "quality": [1, 0, 1, 1],
            "cost": [0.5, None, 0.25, 0.125],
            "tokens_in": [10, 10, 20, 20],
            "tokens_out": [5, 5, 5, 5],
            "latency": [1.0, 2.0, 3.0, 4.0],
        }
    )
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    table = load_table(path)
    assert table.cost[0, 0] == 0.5 and table.cost[1, 1] == 0.125
    assert table.cost[0, 1] == pytest.approx((10 * 10 + 5 * 30) / 1e6)  # filled from the sheet, given tokens
    assert table.latency.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert table.meta["unpriced_models"] == ["mine"]


def test_wide_routellm_csv():
    path = data_dir() / "routellm/mmlu/responses/mmlu_anatomy.csv"
    raw = pd.read_csv(path)
    table = load_table(path)
    assert table.models == ["mistralai/Mixtral-8x7B-Instruct-v0.1", GPT4] and len(table) == len(raw) == 135
    assert table.mean_quality()[GPT4] == pytest.approx(raw[GPT4].mean())
    gsm = load_dataset(str(data_dir() / "routellm/gsm8k/gsm8k_responses.csv"))
    assert len(gsm) == 1319 and gsm.responses[0, 1].startswith("Janet uses 3 eggs")


@pytest.mark.parametrize("name", ["routellm-gsm8k", "routellm-mtbench"])
def test_round_trip_of_saved_tables(tmp_path, name):
    table = load_dataset(name)
    path = table.save(tmp_path / "t.parquet")
    back = OutcomeTable.load(path)
    assert (back.name, back.models, back.pair, back.meta) == (table.name, table.models, table.pair, table.meta)
    for field in ("quality", "cost", "tokens_in", "tokens_out"):
        np.testing.assert_array_equal(getattr(back, field), getattr(table, field))
    assert back.latency is None and (back.responses == table.responses).all()
    pd.testing.assert_frame_equal(back.prompts, table.prompts, check_dtype=False)


def test_round_trip_keeps_nan_cells_and_model_order(tmp_path):
    prompts = pd.DataFrame({"prompt_id": ["a", "b"], "text": ["x", "y"], "tag": ["t1", "t2"]})
    table = OutcomeTable("mine", prompts, ["zeta", "alpha"], np.array([[1.0, np.nan], [0.0, 0.5]]),
                         latency=np.array([[0.1, np.nan], [0.2, 0.3]]), pair=("zeta", "alpha"))  # fmt: skip
    back = load_table(table.save(tmp_path / "m.parquet"))
    assert back.models == ["zeta", "alpha"] and back.pair == ("zeta", "alpha")
    np.testing.assert_array_equal(back.quality, table.quality)
    np.testing.assert_array_equal(back.latency, table.latency)
    assert back.cost is None and back.prompts["tag"].tolist() == ["t1", "t2"]


def test_incomplete_prompts(tmp_path):
    frame = long_frame().iloc[:5]  # p3 has no GPT-4 row
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    assert len(load_table(path)) == 2
    kept = load_table(path, complete="keep")
    assert len(kept) == 3 and np.isnan(kept.quality[2, 1])


def test_select_models_and_pair(tmp_path):
    path = tmp_path / "log.csv"
    long_frame().to_csv(path, index=False)
    assert load_table(path, models=[GPT4]).models == [GPT4]
    with pytest.raises(UnknownModelError, match=rf"unknown model 'gpt-5' in .*log.csv; known: {SMALL}, {GPT4}"):
        load_table(path, models=["gpt-5"])
    with pytest.raises(UnknownModelError, match=r"unknown model 'gpt-5'"):
        load_table(path, pair=(SMALL, "gpt-5"))
    with pytest.raises(ConfigError, match=r"takes no option 'decontaminate'"):
        load_dataset(str(path), decontaminate=True)


def bad(tmp_path, frame: pd.DataFrame | None = None, text: str | None = None, suffix: str = ".csv"):
    path = tmp_path / f"bad{suffix}"
    if text is not None:
        path.write_text(text)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda f: f.drop(columns="quality"), DataError, "missing column 'quality'"),
        (lambda f: f.drop(columns="model"), DataError, "missing column 'model'"),
        (lambda f: f[["text", "domain"]], DataError, "no 'model' column .*no True/False model columns"),
        (lambda f: f.drop(columns=["text"]).drop(columns=["conversation"]), DataError, "missing column 'text'"),
        (lambda f: f.assign(quality=["1", "good", "0", "1", "0", "1"]), DataError,
         "column 'quality' must be numeric; row 2 has 'good'"),
        (lambda f: f.assign(quality=[1, np.nan, 0, 1, 0, 1]), DataError, "column 'quality' is empty or NaN in 1 rows"),
        (lambda f: f.assign(quality=[1, 7, 0, 1, 0, 1]), DataError, r"column 'quality' must lie in \[0, 1\]; row 2"),
        (lambda f: f.assign(cost=[0.1, -1, 0, 0, 0, 0]), DataError, "column 'cost' must not be negative"),
        (lambda f: f.assign(tokens_in=["a"] * 6), DataError, "column 'tokens_in' must be numeric"),
        (lambda f: f.assign(prompt_id="same"), DataError, "more than one row for prompt_id='same'"),
        (lambda f: f.assign(conversation="{not json"), DataError, "column 'conversation' is not valid JSON"),
        (lambda f: f.assign(model=[SMALL, None, SMALL, GPT4, SMALL, GPT4]), DataError, "row 2 has no model name"),
        (lambda f: f.assign(conversation=None), DataError, "row 5 has no text"),
        (lambda f: f.assign(model=[f"m{i}" for i in range(6)]), DataError, "empty table .*no prompt has a row"),
    ],
)  # fmt: skip
def test_bad_long_files(tmp_path, make, error, message):
    path = bad(tmp_path, make(long_frame()))
    with pytest.raises(error, match=message) as info:
        load_table(path)
    assert "\n" not in str(info.value) and "bad.csv" in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.csv", "", "is empty"),
        ("header.csv", "prompt_id,text,model,quality\n", "has no rows"),
        ("broken.jsonl", '{"prompt_id": 1\n', "is not a readable jsonl file"),
        ("broken.parquet", "not parquet", "is not a readable parquet file"),
        ("log.xlsx", "x", "unknown file type '.xlsx'"),
    ],
)
def test_bad_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        load_table(path)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"missing file: .*nothing.csv"):
        load_dataset(str(tmp_path / "nothing.csv"))
    with pytest.raises(DataError, match=r"missing file"):
        OutcomeTable.load(tmp_path / "nothing.parquet")


def test_a_table_refuses_duplicate_prompt_ids_a_string_of_models_and_a_one_model_pair(tmp_path):
    frame = pd.DataFrame({"prompt_id": ["x", "x"], "text": ["a", "b"]})
    # Duplicate ids used to be accepted, then saved to a file that load() refuses.
    with pytest.raises(DataError, match="appears more than once"):
        OutcomeTable("t", frame, ["m1", "m2"], np.zeros((2, 2)))
    frame["prompt_id"] = ["x", "y"]
    with pytest.raises(DataError, match="models must be a list"):
        OutcomeTable("t", frame, "ab", np.zeros((2, 2)))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="both 'm1'"):
        OutcomeTable("t", frame, ["m1", "m2"], np.zeros((2, 2)), pair=("m1", "m1"))


def test_a_table_refuses_non_numeric_quality_and_negative_or_infinite_costs() -> None:
    frame = pd.DataFrame({"prompt_id": ["x", "y"], "text": ["a", "b"]})
    with pytest.raises(DataError, match="table 't': quality values must be numbers"):
        OutcomeTable("t", frame, ["m1", "m2"], np.array([["good", "bad"], ["1", "0"]]))
    with pytest.raises(DataError, match="table 't': quality is required"):
        OutcomeTable("t", frame, ["m1", "m2"], None)  # type: ignore[arg-type]
    for cost in ([[0.1, -1.0], [0.0, 0.0]], [[0.1, np.inf], [0.0, 0.0]]):
        with pytest.raises(DataError, match="table 't': cost values must not be negative or infinite"):
            OutcomeTable("t", frame, ["m1", "m2"], np.zeros((2, 2)), cost=np.array(cost))
    with pytest.raises(DataError, match="table 't': latency values must be numbers"):
        OutcomeTable("t", frame, ["m1", "m2"], np.zeros((2, 2)), latency=[["fast", 1], [1, 1]])  # type: ignore[arg-type]
    unknown = OutcomeTable("t", frame, ["m1", "m2"], np.zeros((2, 2)), cost=np.full((2, 2), np.nan))
    assert np.isnan(unknown.cost).all()  # type: ignore[arg-type]  # NaN = unknown, still fine


def test_saving_where_no_file_can_be_written_names_the_path(tmp_path) -> None:
    table = OutcomeTable("t", pd.DataFrame({"prompt_id": ["x"], "text": ["a"]}), ["m1", "m2"], np.zeros((1, 2)))
    for path in (tmp_path, tmp_path / "missing" / "t.parquet"):
        with pytest.raises(DataError, match=rf"{re.escape(str(path))}: cannot write table 't'") as info:
            table.save(path)
        assert "\n" not in str(info.value)
    table.meta["note"] = object()
    with pytest.raises(DataError, match="table 't' cannot be saved as Parquet"):
        table.save(tmp_path / "t.parquet")


def test_an_infinite_cost_in_a_file_names_the_row(tmp_path) -> None:
    path = bad(tmp_path, long_frame().assign(cost=[0.1, 0, np.inf, 0, 0, 0]))
    with pytest.raises(DataError, match=r"column 'cost' must not be negative or infinite; row 3 has inf"):
        load_table(path)


@pytest.mark.parametrize("value", [-1, "many", float("nan"), None])
def test_load_table_refuses_a_bad_default_output_tokens(tmp_path, value) -> None:
    path = bad(tmp_path, long_frame())
    with pytest.raises(ConfigError, match=rf"default_output_tokens must be a number >= 0, got {value!r}"):
        load_table(path, default_output_tokens=value)
