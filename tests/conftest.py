"""Fixtures shared by several test modules."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def private_embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Embeddings of synthetic prompts go to a throwaway cache shared by one module's tests.

    Use with ``pytestmark = pytest.mark.usefixtures("private_embedding_cache")``.
    """
    import sizewise.embedding as module

    patch = pytest.MonkeyPatch()
    patch.setenv("SIZEWISE_CACHE", str(tmp_path_factory.mktemp("cache")))
    patch.setattr(module, "_CACHE", None)
    yield
    patch.undo()
    module._CACHE = None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the PostgreSQL ``.ci/run`` starts, dropped afterwards (tests/pg_helpers.py); the test
    is skipped, with the reason, without ``SIZEWISE_TEST_POSTGRES_URL``."""
    from pg_helpers import postgres_url as fresh_schema

    yield from fresh_schema()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test runs twice: on a SQLite file in ``tmp_path``, and on PostgreSQL (``postgres_url``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``sizewise ARGS...`` in-process: (exit code, stdout, stderr)."""
    from sizewise.cli import main as cli

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["sizewise", *args])
        code = 0
        try:
            cli.main()
        except SystemExit as exit:
            code = int(exit.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(autouse=True, scope="session")
def _no_request_log_in_the_checkout() -> Iterator[None]:
    """A test gateway without its own ``log_url`` would write ``sizewise-log.sqlite`` into the directory pytest
    runs in (the checkout), where a later ``sizewise log`` reads it as the user's traffic."""
    from pathlib import Path

    stray = Path.cwd() / "sizewise-log.sqlite"
    existed = stray.exists()
    yield
    assert existed or not stray.exists(), f"a test wrote {stray}: give its gateway a log_url (tmp_path or 'none')"
