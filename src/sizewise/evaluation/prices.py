"""Moved to :mod:`sizewise.core.prices`; kept so old imports work."""

from sizewise.core.prices import PRICE_COLUMNS as PRICE_COLUMNS
from sizewise.core.prices import Price as Price
from sizewise.core.prices import PriceSheet as PriceSheet
from sizewise.core.prices import as_price_sheet as as_price_sheet
from sizewise.core.prices import default_price_path as default_price_path
from sizewise.core.prices import load_prices as load_prices
from sizewise.core.prices import normalize_model_name as normalize_model_name
