"""Helpers shared by the dataset loaders: where files are, contamination lists, token counts and costs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sizewise.core.prices import PriceSheet, as_price_sheet
from sizewise.errors import ConfigError, DataError

SOURCES = ("local", "url")


def source_root(dataset: str, source: str = "local", data_dir: str | Path | None = None) -> Path:
    """The folder laid out like ``shared/data`` that ``dataset`` is read from.

    ``source="local"``: ``data_dir`` or :func:`sizewise.paths.data_dir`. ``source="url"``: the files are
    fetched from their public URLs into ``data_dir`` (default the cache) first, when not already there.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown data source {source!r}; known: {', '.join(SOURCES)}")
    if source == "url":
        from sizewise.evaluation.loaders.fetch import fetch_dataset

        return fetch_dataset(dataset, data_dir)
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataError(f"data folder not found: {path}")
        return path
    from sizewise.paths import data_dir as default_data_dir

    return default_data_dir()


def require_file(path: Path) -> Path:
    """``path`` if it is a file; a one-line :class:`DataError` naming it otherwise."""
    if not path.is_file():
        raise DataError(f"missing data file: {path} (set SIZEWISE_DATA, or load with source='url' to fetch it)")
    return path


def contaminated_prompts(path: Path) -> set[str]:
    """The ``eval_prompt`` strings of a RouteLLM ``contaminated_prompts.jsonl``.

    RouteLLM's harness (routellm/evals/benchmarks.py) drops a row when its prompt text is exactly one of
    these strings (``~df["prompt"].isin(contaminated)``); the loaders apply the same exact-match rule.
    """
    prompts = set()
    for number, line in enumerate(require_file(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            prompts.add(str(json.loads(line)["eval_prompt"]))
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path} line {number}: expected a JSON object with an 'eval_prompt'") from None
    return prompts


def costs(
    models: list[str], tokens_in: np.ndarray, tokens_out: np.ndarray, prices: PriceSheet | str | Path | None
) -> np.ndarray:
    """Cost per cell from the price sheet (NaN for a model the sheet does not price)."""
    return as_price_sheet(prices).cost_matrix(models, tokens_in, tokens_out)


def broadcast(values: np.ndarray, n_models: int) -> np.ndarray:
    """A per-prompt vector repeated as one column per model."""
    return np.repeat(np.asarray(values, dtype=float)[:, None], n_models, axis=1)
