"""OutcomeTable: which model did how well on which prompt, at what cost.

A table is "prompts x models". Per cell: quality in [0, 1] (0/1 for graded answers,
a judge score mapped to [0, 1] otherwise), cost in USD, tokens in/out, latency in
seconds and the response text, each NaN/None when unknown. Per prompt: an id, the
text a router sees (for a conversation, every turn joined), the conversation itself
when there is one, and tag columns (``dataset``, ``category``, ``domain``...).

numpy and pandas are imported here: the request path never imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sizewise.core.text import conversation_text
from sizewise.errors import DataError, UnknownModelError

__all__ = ["CELL_FIELDS", "OutcomeTable", "conversation_text", "frame_rows"]

CELL_FIELDS = ("quality", "cost", "tokens_in", "tokens_out", "latency")


def frame_rows(frame: pd.DataFrame) -> Iterator[Any]:
    """A frame's rows as named tuples, typed ``Any`` (pandas-stubs types every field as any scalar)."""
    return frame.itertuples(index=False)


@dataclass
class OutcomeTable:
    """Outcomes of ``models`` on ``prompts``: one row per prompt, one column per model.

    ``prompts`` has columns ``prompt_id`` and ``text``, optionally ``conversation``
    (a list of chat messages) and tag columns. Cell arrays have shape
    ``(len(prompts), len(models))``; ``responses`` is an object array or None.
    ``pair`` names the default (weak, strong) models for two-model routing.
    """

    name: str
    prompts: pd.DataFrame
    models: list[str]
    quality: np.ndarray
    cost: np.ndarray | None = None
    tokens_in: np.ndarray | None = None
    tokens_out: np.ndarray | None = None
    latency: np.ndarray | None = None
    responses: np.ndarray | None = None
    pair: tuple[str, str] | None = None
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prompts = self.prompts.reset_index(drop=True)
        for column in ("prompt_id", "text"):
            if column not in self.prompts.columns:
                raise DataError(f"table {self.name!r}: prompts need a {column!r} column")
        if isinstance(self.models, str) or not all(isinstance(m, str) for m in self.models):
            raise DataError(f"table {self.name!r}: models must be a list of model names, got {self.models!r}")
        self.models = list(self.models)
        duplicated = self.prompts["prompt_id"].astype(str).duplicated()
        if duplicated.any():  # save() would write a file that load() refuses
            first = self.prompts["prompt_id"][duplicated].iloc[0]
            raise DataError(f"table {self.name!r}: prompt_id {first!r} appears more than once")
        if len(set(self.models)) != len(self.models):
            raise DataError(f"table {self.name!r}: duplicate model names in {self.models}")
        shape = (len(self.prompts), len(self.models))
        if self.quality is None:
            raise DataError(f"table {self.name!r}: quality is required")
        for name in (*CELL_FIELDS, "responses"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                value = np.asarray(value, dtype=object if name == "responses" else float)
            except (TypeError, ValueError):
                raise DataError(f"table {self.name!r}: {name} values must be numbers (NaN where unknown)") from None
            if value.shape != shape:
                raise DataError(f"table {self.name!r}: {name} has shape {value.shape}, expected {shape}")
            if name not in ("quality", "responses") and ((value < 0) | np.isinf(value)).any():
                raise DataError(
                    f"table {self.name!r}: {name} values must not be negative or infinite (NaN where unknown)"
                )
            setattr(self, name, value)
        finite = self.quality[~np.isnan(self.quality)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise DataError(f"table {self.name!r}: quality must lie in [0, 1]")
        if self.pair is not None:
            for model in self.pair:
                self.index_of(model)
            if self.pair[0] == self.pair[1]:
                raise DataError(f"table {self.name!r}: weak and strong model of the pair are both {self.pair[0]!r}")

    # -- shape and lookup -------------------------------------------------
    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def texts(self) -> list[str]:
        """The text of each prompt, as a router sees it."""
        return self.prompts["text"].astype(str).tolist()

    def index_of(self, model: str) -> int:
        """Column index of ``model``; an :class:`UnknownModelError` naming the known ones otherwise."""
        try:
            return self.models.index(model)
        except ValueError:
            raise UnknownModelError(
                f"unknown model {model!r} in table {self.name!r}; known: {', '.join(self.models)}"
            ) from None

    def column(self, model: str, what: str = "quality") -> np.ndarray:
        """One model's column of ``what`` (``quality``, ``cost``, ...)."""
        values = getattr(self, what)
        if values is None:
            raise DataError(f"table {self.name!r} has no {what} values")
        return np.asarray(values[:, self.index_of(model)])

    def weak_strong(self, weak: str | None = None, strong: str | None = None) -> tuple[str, str]:
        """The (weak, strong) pair: as given, else ``pair``, else the cheapest and the best model."""
        if weak is None or strong is None:
            if self.pair is not None:
                default_weak, default_strong = self.pair
            else:
                means = np.nanmean(self.quality, axis=0)
                default_strong = self.models[int(np.nanargmax(means))]
                cost = self.cost if self.cost is not None and not np.isnan(self.cost).all() else None
                costs = np.nanmean(cost, axis=0) if cost is not None else means  # no prices: the least accurate
                default_weak = self.models[int(np.nanargmin(costs))]
            weak = weak or default_weak
            strong = strong or default_strong
        self.index_of(weak)
        self.index_of(strong)
        if weak == strong:
            raise DataError(f"weak and strong model are both {weak!r}")
        return weak, strong

    # -- slicing ------------------------------------------------------------
    def subset(self, rows: Sequence[int] | np.ndarray) -> OutcomeTable:
        """A new table with only the given rows (positions or a boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return replace(
            self,
            prompts=self.prompts.iloc[rows].reset_index(drop=True),
            models=list(self.models),
            meta=dict(self.meta),
            **self._cells(lambda values: values[rows]),
        )

    def select_models(self, models: Sequence[str]) -> OutcomeTable:
        """A new table with only ``models``, in that order."""
        columns = [self.index_of(model) for model in models]
        pair = self.pair if self.pair and all(m in models for m in self.pair) else None
        return replace(
            self,
            prompts=self.prompts.copy(),
            models=list(models),
            pair=pair,
            meta=dict(self.meta),
            **self._cells(lambda values: values[:, columns]),
        )

    def _cells(self, transform: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
        """Every per-cell array (and the responses) passed through ``transform``; None stays None."""
        return {
            key: None if getattr(self, key) is None else transform(getattr(self, key))
            for key in (*CELL_FIELDS, "responses")
        }

    def require_nonempty(self) -> OutcomeTable:
        """Raise a :class:`DataError` if the table has no prompts or no models."""
        if len(self) == 0 or not self.models:
            raise DataError(f"table {self.name!r} is empty ({len(self)} prompts, {len(self.models)} models)")
        return self

    def mean_quality(self) -> dict[str, float]:
        """Mean quality of each model over the prompts where it is known."""
        return {model: float(np.nanmean(self.quality[:, i])) for i, model in enumerate(self.models)}

    # -- long format (the on-disk and user-log schema) ----------------------
    def to_long(self) -> pd.DataFrame:
        """One row per (prompt, model): ``prompt_id, text, model, quality, cost, ...`` plus tags."""
        frames = []
        tag_columns = [c for c in self.prompts.columns if c not in ("conversation",)]
        for i, model in enumerate(self.models):
            frame = self.prompts[tag_columns].copy()
            frame["model"] = model
            for key in CELL_FIELDS:
                values = getattr(self, key)
                if values is not None:
                    frame[key] = values[:, i]
            if self.responses is not None:
                frame["response"] = self.responses[:, i]
            if "conversation" in self.prompts.columns:
                frame["conversation"] = [json.dumps(c) if c is not None else None for c in self.prompts["conversation"]]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def save(self, path: str | Path) -> Path:
        """Write the table as Parquet in long format (readable by any Parquet tool)."""
        path = Path(path)
        frame = self.to_long()
        frame.attrs = {}
        table_meta = {"name": self.name, "models": self.models, "pair": self.pair, "meta": self.meta}
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            arrow = pa.Table.from_pandas(frame, preserve_index=False)
            metadata = {**(arrow.schema.metadata or {}), b"sizewise": json.dumps(table_meta).encode()}
        except (TypeError, ValueError) as error:  # a tag column of mixed types, meta that is not JSON
            raise DataError(f"table {self.name!r} cannot be saved as Parquet: {error}") from None
        arrow = arrow.replace_schema_metadata(metadata)
        try:
            pq.write_table(arrow, path)
        except OSError as error:
            raise DataError(f"{path}: cannot write table {self.name!r} ({error.strerror or error})") from None
        return path

    @classmethod
    def load(cls, path: str | Path, **kwargs: object) -> OutcomeTable:
        """Read a table written by :meth:`save`, or a user's CSV/JSONL/Parquet log (see docs/data.md)."""
        from sizewise.core.tablefile import load_table

        return load_table(path, **kwargs)  # type: ignore[arg-type]
