"""The price sheet: USD per 1M input and output tokens, per model, from an editable CSV.

The default sheet is ``prices.csv`` in the data folder (:func:`sizewise.paths.data_dir`; columns ``model,
usd_per_1m_input, usd_per_1m_output`` and a ``source`` or ``basis`` note); ``$SIZEWISE_PRICES`` or an
explicit path replaces it. Model names
are matched exactly first, then loosely (case, an ``org/`` prefix, ``.`` vs ``_``), so
``mistralai/Mixtral-8x7B-Instruct-v0.1`` and ``meta-llama-3.1-8b-instruct`` find their rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sizewise.errors import DataError, UnknownModelError

PRICE_COLUMNS = ("model", "usd_per_1m_input", "usd_per_1m_output")


def normalize_model_name(name: str) -> str:
    """Loose key for a model name: lower case, no ``org/`` prefix, ``.`` written as ``_``."""
    return name.strip().split("/")[-1].lower().replace(".", "_")


@dataclass(frozen=True)
class Price:
    """One row of the sheet."""

    model: str
    usd_per_1m_input: float
    usd_per_1m_output: float
    source: str = ""

    def cost(self, tokens_in: np.ndarray | float, tokens_out: np.ndarray | float) -> np.ndarray:
        """USD for ``tokens_in`` prompt tokens and ``tokens_out`` completion tokens."""
        return (
            np.asarray(tokens_in, dtype=float) * self.usd_per_1m_input
            + np.asarray(tokens_out, dtype=float) * self.usd_per_1m_output
        ) / 1e6


class PriceSheet:
    """Prices by model name, with exact then loose lookup."""

    def __init__(self, prices: Sequence[Price], path: Path | None = None) -> None:
        self.prices = {price.model: price for price in prices}
        self.path = path
        self._loose = {normalize_model_name(price.model): price for price in prices}

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.find(model) is not None

    @property
    def models(self) -> list[str]:
        """Model names as written in the sheet."""
        return list(self.prices)

    def find(self, model: str) -> Price | None:
        """The price of ``model``, or None when the sheet has no row for it."""
        return self.prices.get(model) or self._loose.get(normalize_model_name(model))

    def get(self, model: str) -> Price:
        """The price of ``model``; an :class:`UnknownModelError` naming the priced models otherwise."""
        price = self.find(model)
        if price is None:
            where = f" in {self.path}" if self.path else ""
            raise UnknownModelError(f"no price for model {model!r}{where}; priced: {', '.join(self.prices)}")
        return price

    def cost(self, model: str, tokens_in: np.ndarray | float, tokens_out: np.ndarray | float) -> np.ndarray:
        """USD cost of calls to ``model`` with the given token counts."""
        return self.get(model).cost(tokens_in, tokens_out)

    def cost_matrix(
        self, models: Sequence[str], tokens_in: np.ndarray, tokens_out: np.ndarray, missing: str = "nan"
    ) -> np.ndarray:
        """Cost per cell for a ``(prompts, models)`` pair of token arrays.

        ``missing="nan"`` leaves unpriced models' columns NaN; ``"raise"`` raises :class:`UnknownModelError`.
        """
        tokens_in = np.asarray(tokens_in, dtype=float)
        tokens_out = np.asarray(tokens_out, dtype=float)
        cost = np.full(tokens_in.shape, np.nan)
        for j, model in enumerate(models):
            price = self.get(model) if missing == "raise" else self.find(model)
            if price is not None:
                cost[:, j] = price.cost(tokens_in[:, j], tokens_out[:, j])
        return cost


def default_price_path() -> Path:
    """The sheet in use: ``$SIZEWISE_PRICES`` when set, else ``prices.csv`` in the data folder."""
    env = os.environ.get("SIZEWISE_PRICES")
    if env:
        return Path(env).expanduser()
    from sizewise.paths import data_dir

    return data_dir() / "prices.csv"


def load_prices(path: str | Path | None = None) -> PriceSheet:
    """Read a price sheet CSV (default :func:`default_price_path`); a :class:`DataError` if it is malformed."""
    import pandas as pd

    path = Path(path) if path is not None else default_price_path()
    if not path.is_file():
        raise DataError(f"price sheet not found: {path} (set SIZEWISE_PRICES to a sheet, see docs/prices.md)")
    try:
        frame = pd.read_csv(path, dtype={"model": str}, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"price sheet {path} is not a readable CSV: {str(exc).splitlines()[0]}") from None
    for column in PRICE_COLUMNS:
        if column not in frame.columns:
            raise DataError(f"price sheet {path} has no {column!r} column")
    prices = []
    for row_number, row in enumerate(frame.itertuples(index=False), start=2):
        values = []
        for column in PRICE_COLUMNS[1:]:
            try:
                value = float(getattr(row, column))
            except (TypeError, ValueError):
                value = float("nan")
            if not np.isfinite(value) or value < 0:
                raise DataError(f"price sheet {path} line {row_number}: {column} must be a number >= 0")
            values.append(value)
        source = getattr(row, "source", getattr(row, "basis", ""))
        prices.append(Price(str(row.model).strip(), values[0], values[1], "" if source != source else str(source)))
    if not prices:
        raise DataError(f"price sheet {path} has no rows")
    return PriceSheet(prices, path)


def as_price_sheet(prices: PriceSheet | str | Path | None) -> PriceSheet:
    """Accept a sheet, a path to one, or None (the default sheet)."""
    return prices if isinstance(prices, PriceSheet) else load_prices(prices)
