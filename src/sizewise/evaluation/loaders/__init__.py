"""Dataset loaders: ``load_dataset(name, **kw) -> OutcomeTable`` by name, or from a file path.

Names: ``routellm-mmlu``, ``routellm-gsm8k``, ``routellm-mtbench`` (GPT-4-1106 vs Mixtral-8x7B, with
RouteLLM's decontamination) and ``mmlu-pro`` (any subset of nine models). A path to a CSV / JSONL /
JSON / Parquet file (a user's own logs, or a table written by ``OutcomeTable.save``) loads with
:func:`sizewise.evaluation.loaders.generic.load_table`. Loader modules are imported on use, so
importing this package stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from sizewise.core.table import OutcomeTable
from sizewise.errors import ConfigError, UnknownNameError

# name -> (module, function, one-line description)
DATASETS: dict[str, tuple[str, str, str]] = {
    "routellm-mmlu": ("routellm", "load_mmlu", "MMLU, 14,042 questions (14,037 decontaminated), GPT-4 vs Mixtral"),
    "routellm-gsm8k": ("routellm", "load_gsm8k", "GSM8K, 1,319 questions (1,307 decontaminated), with answers"),
    "routellm-mtbench": ("routellm", "load_mtbench", "MT-Bench, 80 questions x 2 turns, GPT-4 judge score"),
    "mmlu-pro": ("mmlupro", "load_mmlu_pro", "MMLU-Pro, 12,002 questions x 9 models, chain-of-thought text"),
}
FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


def dataset_names() -> list[str]:
    """Names :func:`load_dataset` knows (a file path is accepted too)."""
    return list(DATASETS)


def describe_datasets() -> dict[str, str]:
    """One line about each named dataset."""
    return {name: description for name, (_, _, description) in DATASETS.items()}


def is_table_file(name: str | Path) -> bool:
    """Whether ``name`` looks like a path to an outcome file rather than a dataset name."""
    return Path(name).suffix.lower() in FILE_SUFFIXES


def load_dataset(name: str | Path, **kwargs: Any) -> OutcomeTable:
    """Load dataset ``name`` (see :func:`dataset_names`) or the outcome file at path ``name``.

    Common keywords for named datasets: ``source`` (``"local"``, the default, reads ``data_dir`` or
    ``$SIZEWISE_DATA``; ``"url"`` fetches the public files into the cache first), ``data_dir``,
    ``prices`` (a :class:`~sizewise.evaluation.prices.PriceSheet` or CSV path), ``token_method``;
    the RouteLLM sets take ``decontaminate`` (default True); ``mmlu-pro`` takes ``models`` and ``pair``.
    For files, see :func:`sizewise.evaluation.loaders.generic.load_table`.
    """
    key = str(name)
    if key in DATASETS:
        module_name, function, _ = DATASETS[key]
        module = importlib.import_module(f"sizewise.evaluation.loaders.{module_name}")
        loader = getattr(module, function)
        _check_keywords(key, loader, kwargs)
        table: OutcomeTable = loader(**kwargs)
        return table
    if is_table_file(key) or Path(key).expanduser().is_file():
        from sizewise.core.tablefile import load_table

        _check_keywords(key, load_table, kwargs)
        return load_table(key, **kwargs)
    raise UnknownNameError(f"unknown dataset {key!r}; known: {', '.join(DATASETS)} (or a .csv/.jsonl/.parquet path)")


def _check_keywords(name: str, loader: Any, kwargs: dict[str, Any]) -> None:
    """A :class:`ConfigError` (not a TypeError traceback) for an option the loader does not take."""
    accepted = [p for p in inspect.signature(loader).parameters if p != "path"]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ConfigError(f"dataset {name!r} takes no option {unknown[0]!r}; options: {', '.join(accepted)}")


def fetch(name: str, **kwargs: Any) -> Path:
    """Download dataset ``name``'s public source files into the cache (see :mod:`.fetch`); return the folder."""
    from sizewise.evaluation.loaders.fetch import fetch_dataset

    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return fetch_dataset(name, **kwargs)


__all__ = ["DATASETS", "dataset_names", "describe_datasets", "fetch", "is_table_file", "load_dataset"]
