"""Moved: the pipeline is :mod:`sizewise.serve.pipeline`, the retry/fallback loop :mod:`sizewise.serve.call`.

Kept for old imports only; nothing in sizewise imports it (it would point upward, policy -> serve).
"""

from sizewise.core.text import modalities as _modalities
from sizewise.serve.call import AllModelsFailed as AllModelsFailed
from sizewise.serve.pipeline import Engine as Engine

__all__ = ["AllModelsFailed", "Engine", "_modalities"]
