"""Where sizewise finds shared data and keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path

from sizewise.errors import DataError


def data_dir() -> Path:
    """The public outcome data folder: ``$SIZEWISE_DATA``, else ``../shared/data`` when it exists.

    ``../shared/data`` is looked for beside the current directory and beside the source
    checkout, so commands work from the repo root and from a test's temporary directory.
    """
    env = os.environ.get("SIZEWISE_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataError(f"SIZEWISE_DATA={env} is not a directory")
        return path
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd().parent / "shared" / "data", repo_root.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    raise DataError("no data folder: set SIZEWISE_DATA or place the data in ../shared/data")


def cache_dir() -> Path:
    """Cache for assembled model files, embeddings and the like: ``$SIZEWISE_CACHE`` or ``~/.cache/sizewise``."""
    path = Path(os.environ.get("SIZEWISE_CACHE", Path.home() / ".cache" / "sizewise")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
