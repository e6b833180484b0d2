"""Users' own outcome logs: CSV, JSON lines or Parquet, in long or wide format (see docs/data.md).

Long format, one row per (prompt, model):

=============  ========  ===================================================================
column         needed    meaning
=============  ========  ===================================================================
prompt_id      no        id of the prompt (default: rows with the same text share an id)
text           yes*      the prompt as a router sees it (``prompt`` is accepted too)
model          yes       model name
quality        yes       0/1 (or true/false) or a score in [0, 1]
cost           no        USD; computed from the price sheet and token counts when absent
tokens_in      no        prompt tokens; counted offline from ``text`` when absent
tokens_out     no        completion tokens; counted from ``response`` when absent
latency        no        seconds
response       no        the model's answer text
conversation   no        JSON list of chat messages; ``text`` may then be left empty (*)
anything else  no        a per-prompt tag (domain, category, ...)
=============  ========  ===================================================================

Wide format (RouteLLM's CSVs): a ``prompt`` (or ``text``) column, optional ``prompt_id``, one True/False
or [0, 1] column per model, optional ``<model>_response`` columns; other text columns are tags.

Files written by :meth:`OutcomeTable.save` load back to an equal table (model order, pair and meta
come from the Parquet metadata).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sizewise.checks import check_number
from sizewise.core.prices import PriceSheet, as_price_sheet
from sizewise.core.table import CELL_FIELDS, OutcomeTable
from sizewise.core.text import conversation_text
from sizewise.core.tokens import count_tokens
from sizewise.errors import DataError, UnknownModelError

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
NUMERIC = ("cost", "tokens_in", "tokens_out", "latency")
RESERVED = {"prompt_id", "text", "prompt", "model", "quality", "response", "conversation", *NUMERIC}


def read_frame(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The file as a DataFrame, plus the sizewise metadata of a file written by ``OutcomeTable.save``."""
    path = Path(path).expanduser()
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(sorted(SUFFIXES))}")
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    meta = None
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            arrow = pq.read_table(path)
            raw = (arrow.schema.metadata or {}).get(b"sizewise")
            meta = json.loads(raw) if raw else None
            frame = arrow.to_pandas()
        elif kind in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="," if kind == "csv" else "\t")
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_json(path, dtype=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except Exception as exc:  # any parser's error becomes one line naming the file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a readable {kind} file: {first}") from None
    return frame, meta


def load_table(
    path: str | Path,
    *,
    name: str | None = None,
    models: Sequence[str] | None = None,
    pair: tuple[str, str] | None = None,
    prices: PriceSheet | str | Path | None = None,
    token_method: str = "auto",
    complete: str = "drop",
    default_output_tokens: float = 0.0,
) -> OutcomeTable:
    """Load an outcome table from a CSV / JSONL / JSON / Parquet file in long or wide format.

    ``models`` keeps only those models (in that order); ``pair`` sets the (weak, strong) default.
    ``complete="drop"`` keeps prompts that have a row for every model, ``"keep"`` leaves NaN quality.
    Where a cell has no cost it is computed from ``prices`` with the token counts; without response
    text or ``tokens_out`` the output side counts ``default_output_tokens`` tokens.
    """
    path = Path(path).expanduser()
    if complete not in ("drop", "keep"):
        raise DataError(f"complete must be 'drop' or 'keep', not {complete!r}")
    check_number("load_table", "default_output_tokens", default_output_tokens, 0)
    frame, meta = read_frame(path)
    label = str(path)
    if len(frame) == 0:
        raise DataError(f"{label} has no rows")
    frame = frame.rename(columns={c: str(c).strip() for c in frame.columns})
    long_format = "model" in frame.columns or "quality" in frame.columns
    if not long_format and ("prompt" in frame.columns or "text" in frame.columns):
        frame = _wide_to_long(frame, label, models)
    elif "text" not in frame.columns and "prompt" in frame.columns:
        frame = frame.rename(columns={"prompt": "text"})
    return _from_long(
        frame,
        label,
        name or (meta or {}).get("name") or path.stem,
        meta,
        models,
        pair,
        prices,
        token_method,
        complete,
        default_output_tokens,
    )


def _wide_to_long(frame: pd.DataFrame, label: str, models: Sequence[str] | None) -> pd.DataFrame:
    text_column = "text" if "text" in frame.columns else "prompt"
    candidates = [c for c in frame.columns if c not in RESERVED and not c.endswith("_response")]
    if models is not None:
        model_columns = [c for c in candidates if c in models]
    else:
        model_columns = [
            c for c in candidates if pd.api.types.is_bool_dtype(frame[c]) or pd.api.types.is_numeric_dtype(frame[c])
        ]
    if not model_columns:
        raise DataError(f"{label}: no 'model' column (long format) and no True/False model columns (wide format)")
    tags = [
        c
        for c in frame.columns
        if c not in model_columns and c not in ("prompt_id", text_column) and not c.endswith("_response")
    ]
    base = pd.DataFrame(
        {
            "prompt_id": frame["prompt_id"]
            if "prompt_id" in frame.columns
            else [f"row-{i}" for i in range(len(frame))],
            "text": frame[text_column],
        }
    )
    for tag in tags:
        base[tag] = frame[tag]
    parts = []
    for model in model_columns:
        part = base.copy()
        part["model"] = model
        part["quality"] = frame[model]
        if f"{model}_response" in frame.columns:
            part["response"] = frame[f"{model}_response"]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _numeric(frame: pd.DataFrame, column: str, label: str) -> np.ndarray:
    values = frame[column]
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=float)
    if values.dtype == object:
        lowered = values.map(lambda v: v.strip().lower() if isinstance(v, str) else v)
        values = lowered.replace({"true": 1.0, "false": 0.0})
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{label}: column {column!r} must be numeric; row {row + 1} has {frame[column].iloc[row]!r}")
    return numbers.to_numpy(dtype=float)


def _conversation(value: object, label: str, row: int) -> list[dict[str, Any]] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except ValueError:
            raise DataError(f"{label}: row {row + 1}: column 'conversation' is not valid JSON") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise DataError(f"{label}: row {row + 1}: column 'conversation' must be a JSON list of messages")
    return value


def _from_long(
    frame: pd.DataFrame,
    label: str,
    name: str,
    meta: dict[str, Any] | None,
    models: Sequence[str] | None,
    pair: tuple[str, str] | None,
    prices: PriceSheet | str | Path | None,
    token_method: str,
    complete: str,
    default_output_tokens: float,
) -> OutcomeTable:
    frame = _long_texts(_checked_long(frame, label, meta), label)
    frame, known, prompt_ids = _selected(frame, label, meta, models, complete)
    firsts = frame.drop_duplicates("prompt_id").set_index("prompt_id").loc[prompt_ids].reset_index()
    tag_columns = [c for c in frame.columns if c not in RESERVED]
    prompts = firsts[["prompt_id", "text", *tag_columns]].copy()
    if any(c is not None for c in firsts["conversation"]):
        prompts.insert(2, "conversation", firsts["conversation"].to_list())
    at = _cell_index(frame, prompt_ids, known)
    quality_cells = _cells(frame, at, "quality")
    assert quality_cells is not None  # the column was checked above
    values = {field: _cells(frame, at, field) for field in CELL_FIELDS}
    values["quality"] = quality_cells
    responses = _cells(frame, at, "response", object)
    table_meta = dict((meta or {}).get("meta") or {})
    if meta is None:
        values = _fill_costs(values, known, prompts, responses, prices, token_method, default_output_tokens, table_meta)
    table_pair = pair or (tuple(meta["pair"]) if meta and meta.get("pair") else None)
    if table_pair is not None and not all(m in known for m in table_pair):
        missing = next(m for m in table_pair if m not in known)
        raise UnknownModelError(f"unknown model {missing!r} in {label}; known: {', '.join(known)}")
    return OutcomeTable(
        name=name,
        prompts=prompts,
        models=known,
        quality=quality_cells,
        cost=values["cost"],
        tokens_in=values["tokens_in"],
        tokens_out=values["tokens_out"],
        latency=values["latency"],
        responses=responses,
        pair=(str(table_pair[0]), str(table_pair[1])) if table_pair else None,
        meta=table_meta,
    )


def _checked_long(frame: pd.DataFrame, label: str, meta: dict[str, Any] | None) -> pd.DataFrame:
    """The long frame with its model names stripped and its numeric columns as floats, each checked."""
    for column in ("model", "quality"):
        if column not in frame.columns:
            raise DataError(f"{label}: missing column {column!r} (long format needs text, model, quality)")
    if "text" not in frame.columns and "conversation" not in frame.columns:
        raise DataError(f"{label}: missing column 'text' (long format needs text, model, quality)")
    frame = frame.reset_index(drop=True)
    if frame["model"].isna().any() or (frame["model"].astype(str).str.strip() == "").any():
        row = int(
            np.flatnonzero((frame["model"].isna() | (frame["model"].astype(str).str.strip() == "")).to_numpy())[0]
        )
        raise DataError(f"{label}: row {row + 1} has no model name")
    frame["model"] = frame["model"].astype(str).str.strip()
    quality = _numeric(frame, "quality", label)
    if np.isnan(quality).any() and meta is None:
        row = int(np.flatnonzero(np.isnan(quality))[0])
        raise DataError(
            f"{label}: column 'quality' is empty or NaN in {int(np.isnan(quality).sum())} rows (first: row {row + 1})"
        )
    if ((quality < 0) | (quality > 1)).any():
        row = int(np.flatnonzero((quality < 0) | (quality > 1))[0])
        raise DataError(f"{label}: column 'quality' must lie in [0, 1]; row {row + 1} has {quality[row]}")
    frame["quality"] = quality
    for column in NUMERIC:
        if column in frame.columns:
            numbers = _numeric(frame, column, label)
            bad = (numbers < 0) | np.isinf(numbers)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{label}: column {column!r} must not be negative or infinite; row {row + 1} has {numbers[row]}"
                )
            frame[column] = numbers
    return frame


def _long_texts(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Each row's text (given, or written from its conversation) and prompt id, one row per prompt and model."""
    conversations: list[Any] = (
        [_conversation(v, label, i) for i, v in enumerate(frame["conversation"])]
        if "conversation" in frame.columns
        else [None] * len(frame)
    )
    given = list(frame["text"]) if "text" in frame.columns else [None] * len(frame)
    texts = [
        t if isinstance(t, str) and t else (conversation_text(c) if c else ("" if t is None or t != t else str(t)))
        for t, c in zip(given, conversations, strict=True)
    ]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DataError(f"{label}: row {empty[0] + 1} has no text (give 'text' or a 'conversation')")
    frame["text"] = texts
    frame["conversation"] = conversations
    if "prompt_id" not in frame.columns:
        frame["prompt_id"] = "p" + pd.Series(pd.factorize(frame["text"])[0]).astype(str)
    frame["prompt_id"] = frame["prompt_id"].astype(str)
    duplicated = frame.duplicated(["prompt_id", "model"])
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise DataError(f"{label}: more than one row for prompt_id={first['prompt_id']!r}, model={first['model']!r}")
    return frame


def _selected(
    frame: pd.DataFrame, label: str, meta: dict[str, Any] | None, models: Sequence[str] | None, complete: str
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(the rows kept, the table's models in order, its prompt ids): ``models`` only, complete prompts only
    when ``complete`` is ``drop`` (a sizewise-written table keeps its missing cells)."""
    known = list(dict.fromkeys(frame["model"]))
    if meta and isinstance(meta.get("models"), list) and set(meta["models"]) == set(known):
        known = list(meta["models"])
    if models is not None:
        for model in models:
            if model not in known:
                raise UnknownModelError(f"unknown model {model!r} in {label}; known: {', '.join(known)}")
        known = list(models)
        frame = frame[frame["model"].isin(known)]
    prompt_ids = list(dict.fromkeys(frame["prompt_id"]))
    counts = frame.groupby("prompt_id", sort=False)["model"].nunique()
    if complete == "drop" and meta is None:
        prompt_ids = [p for p in prompt_ids if counts[p] == len(known)]
    if not prompt_ids:
        raise DataError(f"{label}: empty table (no prompt has a row for every model: {', '.join(known)})")
    return frame[frame["prompt_id"].isin(set(prompt_ids))], known, prompt_ids


_CellIndex = tuple[np.ndarray, np.ndarray, tuple[int, int]]


def _cell_index(frame: pd.DataFrame, prompt_ids: list[str], models: list[str]) -> _CellIndex:
    """Each row's cell in the prompts x models matrix: (row numbers, column numbers, the matrix's shape)."""
    row_of = {p: i for i, p in enumerate(prompt_ids)}
    col_of = {m: j for j, m in enumerate(models)}
    rows, cols = frame["prompt_id"].map(row_of).to_numpy(), frame["model"].map(col_of).to_numpy()
    return rows, cols, (len(prompt_ids), len(models))


def _cells(frame: pd.DataFrame, at: _CellIndex, column: str, dtype: Any = float) -> np.ndarray | None:
    """``column`` as a prompts x models matrix (NaN, or None for text, where a cell has no row); None without it."""
    if column not in frame.columns:
        return None
    rows, cols, shape = at
    out = np.full(shape, np.nan) if dtype is float else np.full(shape, None, dtype=object)
    values = frame[column].to_numpy()
    if dtype is not float:
        values = np.array(
            [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values], dtype=object
        )
    out[rows, cols] = values
    return out


def _fill_costs(
    values: dict[str, np.ndarray | None],
    models: list[str],
    prompts: pd.DataFrame,
    responses: np.ndarray | None,
    prices: PriceSheet | str | Path | None,
    token_method: str,
    default_output_tokens: float,
    meta: dict[str, Any],
) -> dict[str, np.ndarray | None]:
    """Fill missing token counts (offline counter) and missing costs (price sheet)."""
    shape = values["quality"].shape  # type: ignore[union-attr]
    tokens_in = values["tokens_in"] if values["tokens_in"] is not None else np.full(shape, np.nan)
    gap = np.isnan(tokens_in)
    if gap.any():
        counted = np.repeat(count_tokens(prompts["text"].tolist(), token_method)[:, None], shape[1], axis=1)
        tokens_in = np.where(gap, counted, tokens_in)
    tokens_out = values["tokens_out"] if values["tokens_out"] is not None else np.full(shape, np.nan)
    gap = np.isnan(tokens_out)
    if gap.any() and responses is not None:
        counted = count_tokens(list(responses.ravel()), token_method).reshape(shape)
        tokens_out = np.where(gap, counted, tokens_out)
    cost = values["cost"] if values["cost"] is not None else np.full(shape, np.nan)
    if np.isnan(cost).any():
        sheet = as_price_sheet(prices)
        out_for_cost = np.where(np.isnan(tokens_out), default_output_tokens, tokens_out)
        computed = sheet.cost_matrix(models, tokens_in, out_for_cost)
        cost = np.where(np.isnan(cost), computed, cost)
        unpriced = [m for m in models if m not in sheet]
        if unpriced:
            meta["unpriced_models"] = unpriced
        meta.setdefault("cost", "computed from the price sheet where the file had none")
    return {**values, "tokens_in": tokens_in, "tokens_out": tokens_out, "cost": cost}
