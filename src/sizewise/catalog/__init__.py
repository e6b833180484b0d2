"""The model catalog (``sizewise.yaml``): which models exist, where they run and what they cost."""

from __future__ import annotations

from sizewise.catalog.catalog import Catalog
from sizewise.catalog.loader import load_catalog, parse_catalog

__all__ = ["Catalog", "load_catalog", "parse_catalog"]
