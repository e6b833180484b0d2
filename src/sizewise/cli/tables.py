"""How CLI commands read an outcome table argument: a named dataset, a table file, or a file written
by ``sizewise collect`` (one row per question and model), so what a user collects trains and
evaluates routers directly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def is_collect_file(data: str | Path) -> bool:
    """Whether ``data`` is a JSONL file written by ``sizewise collect``."""
    path = Path(data)
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with path.open() as handle:
        first = handle.readline()
    try:
        row = json.loads(first)
    except ValueError:
        return False
    return isinstance(row, dict) and {"prompt_id", "model", "correct"} <= set(row)


def read_table(data: str | Path, models: Sequence[str] | None = None, **kwargs: Any) -> Any:
    """The :class:`~sizewise.evaluation.table.OutcomeTable` named or stored at ``data``.

    A collect file keeps the questions every model in ``models`` (default: all it holds) answered;
    ``kwargs`` go to :func:`sizewise.evaluation.loaders.load_dataset` for anything else.
    """
    if is_collect_file(data):
        from sizewise.cascade.collect import load_collected

        return load_collected(data, models)
    from sizewise.evaluation.loaders import load_dataset

    return load_dataset(data, **kwargs)
