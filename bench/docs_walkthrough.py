"""A newcomer's walkthrough (#23): every shell command of README.md and docs/, run as written, with its time and
what it printed, as a Markdown table.

The commands, the list of those not run (and why) and the environment come from tests/test_docs_commands.py
(a temporary folder, the project's .venv/bin on PATH, $SIZEWISE_DATA, the dataset URLs pointed at the data folder
served on 127.0.0.1). ``--all`` also runs the listed commands that only take long (MINUTES, SLOW); those needing
a model, a server, make or the reader's own files are reported with their reason.

    python bench/docs_walkthrough.py [--all] [--out walkthrough.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_docs_commands as docs  # the test owns the lists and the extractor

LONG = {docs.MINUTES, docs.SLOW}


def _shown(text: str, width: int = 110) -> str:
    """The last non-empty line of ``text``, short and safe in a Markdown table cell."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= set("─│`")]
    last = lines[-1] if lines else ""
    return (last[: width - 3] + "..." if len(last) > width else last).replace("|", "\\|")


def walk(run_long: bool, timeout: float) -> list[str]:
    """Table rows: page, command, seconds, exit status, what it printed (or why it was not run)."""
    rows = ["| page | command | s | exit | printed (last line) |", "|---|---|---:|---:|---|"]
    with docs.serving_data() as mirror, tempfile.TemporaryDirectory() as scratch:
        for page, commands in docs.doc_commands().items():
            folder = Path(scratch) / page.stem
            env = docs.command_folder(folder, mirror)
            name = str(page.relative_to(docs.ROOT))
            for command in commands:
                reason = docs.NOT_RUN.get(command)
                if reason is not None and not (run_long and reason in LONG):
                    rows.append(f"| {name} | `{command}` | | | not run: {reason} |")
                    continue
                start = time.perf_counter()
                try:
                    run = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                                         timeout=timeout)  # fmt: skip
                    status, printed = str(run.returncode), _shown(run.stdout) or _shown(run.stderr)
                    if run.returncode != 0:
                        printed = _shown(run.stderr)
                except subprocess.TimeoutExpired:
                    status, printed = "timeout", f"stopped after {timeout:.0f} s"
                rows.append(f"| {name} | `{command}` | {time.perf_counter() - start:.1f} | {status} | {printed} |")
                print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also run the commands listed only for taking long")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one command may take")
    parser.add_argument("--out", type=Path, help="write the table here (default: stdout)")
    args = parser.parse_args()
    table = "\n".join(walk(args.all, args.timeout)) + "\n"
    if args.out is not None:
        args.out.write_text(table)
        print(f"wrote {args.out}")
    else:
        print(table)


if __name__ == "__main__":
    main()
