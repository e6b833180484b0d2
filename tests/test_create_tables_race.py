"""Gateway processes started at once on one new SQLite file all create their tables (storage.create_tables).

The existence check of ``CREATE TABLE`` is a read outside SQLite's write lock, so without a retry every
process but the first fails at start-up (``table sessions already exists``): 10 of 10 rounds failed.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, text

from sizewise.storage import create_tables, make_engine

PROCESSES = 6

metadata = MetaData()
Table("first", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)))
Table("second", metadata, Column("id", Integer, primary_key=True))
INDEX = text("CREATE INDEX IF NOT EXISTS first_name ON first (name)")


def _create(url: str, barrier: Barrier, results: multiprocessing.Queue[str]) -> None:
    engine = make_engine(url)
    barrier.wait()  # every process reaches CREATE TABLE at the same moment
    try:
        create_tables(metadata, engine, INDEX)
        results.put("ok")
    except Exception as error:  # reported to the test, which shows it
        results.put(f"{type(error).__name__}: {str(error)[:120]}")


def test_processes_racing_on_a_new_sqlite_file_all_create_their_tables(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # sizewise is imported already: each starts in milliseconds
    for round in range(3):
        url = f"sqlite:///{tmp_path / f'state-{round}.sqlite'}"
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=_create, args=(url, barrier, results)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(30)
        assert outcomes == ["ok"] * PROCESSES, outcomes
        assert set(inspect(make_engine(url)).get_table_names()) == {"first", "second"}
