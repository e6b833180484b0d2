"""Write one benchmark's section of docs/results.md, leaving the other sections alone.

Each bench script owns the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``.
"""

from __future__ import annotations

import fcntl
import json
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
HEADER = (
    "# Measured results\n\n"
    "Every number here was written by a script in `bench/`; each section names the command that made it.\n"
    "Do not edit by hand: re-run the command.\n"
)


def machine() -> str:
    """One line describing where the numbers were taken."""
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"


def update_section(name: str, title: str, command: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/results.md.

    The read-modify-write holds an exclusive lock, so two benchmarks finishing at once both land.
    """
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with (RESULTS.parent / ".results.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _replace_section(name, title, command, body)


def _replace_section(name: str, title: str, command: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"Command: `{command}`  \nMachine: {machine()}\n\n{body.strip()}\n<!-- /bench:{name} -->"
    )
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def write_json(path: str | Path, payload: Any) -> Path:
    """Write benchmark results as JSON (numbers only; numpy scalars converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None, digits: int = 3) -> str:
    """A GitHub markdown table from a list of dicts."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
