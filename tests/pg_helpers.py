"""A throwaway schema in the PostgreSQL that ``.ci/run`` starts (``SIZEWISE_TEST_POSTGRES_URL``).

Tests that need it use conftest.py's ``postgres_url`` fixture, or ``db_url`` for SQLite and PostgreSQL both;
without the variable they skip and say why, so a developer machine without PostgreSQL still runs the
rest of the suite while CI runs them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

VARIABLE = "SIZEWISE_TEST_POSTGRES_URL"


def postgres_url() -> Iterator[str]:
    """A URL whose tables live in a fresh schema, dropped afterwards."""
    base = os.environ.get(VARIABLE)
    if not base:
        pytest.skip(f"{VARIABLE} is not set: no PostgreSQL to test against (.ci/run starts one)")
    pytest.importorskip("psycopg", reason="psycopg is needed for PostgreSQL (pip install -e '.[dev]')")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"create schema {schema}"))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()
