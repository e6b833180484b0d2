"""Small models that see and hear (#20): latency, memory and quality of the local vision and speech models.

Each half lives in its own module and exposes ``run(args) -> dict``: ``bench/_modalities_vision.py``
(EfficientNet-Lite0: latency, peak memory, top-1 on the photos that ship in packages, share answered
locally) and ``bench/_modalities_speech.py`` (Whisper tiny.en vs base: latency, peak memory, word error
rate on espeak-ng sentences, share escalated at the calibrated threshold). A half returns ``rows`` (a
list of dicts, one table) and optionally ``notes`` (markdown lines); everything it returns is written to
``docs/results/modalities.json``. A half that cannot be imported or fails is reported, not hidden.

    .venv/bin/python bench/modalities.py            # both halves, updates docs/results.md
    .venv/bin/python bench/modalities.py --quick    # a smoke run: fewer items, no docs
    .venv/bin/python bench/modalities.py --only speech
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import ROOT, markdown_table, update_section, write_json

JSON_PATH = ROOT / "docs" / "results" / "modalities.json"
HALVES = {"vision": "bench._modalities_vision", "speech": "bench._modalities_speech"}
TITLES = {"vision": "Images: EfficientNet-Lite0 (ONNX)", "speech": "Speech: Whisper tiny.en vs base (faster-whisper)"}


def run_half(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One half's result, or ``{"error": ...}`` when its module is missing or it fails."""
    try:
        module = importlib.import_module(HALVES[name])
    except Exception as error:  # the other half may not exist yet; say so instead of failing both
        return {"error": f"cannot import {HALVES[name]}: {type(error).__name__}: {error}"}
    t0 = time.perf_counter()
    try:
        result = dict(module.run(args))
    except Exception as error:
        traceback.print_exc()
        return {"error": f"{HALVES[name]}.run failed: {type(error).__name__}: {error}"}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def section(name: str, result: dict[str, Any]) -> str:
    """The markdown of one half: its table and notes, or the error."""
    lines = [f"### {TITLES[name]}", ""]
    if "error" in result:
        return "\n".join([*lines, f"Not measured: {result['error']}", ""])
    rows = result.get("rows") or []
    lines += [markdown_table(rows, result.get("columns")), ""]
    lines += [str(note) for note in result.get("notes", [])]
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items, no docs/results.md update")
    parser.add_argument("--only", choices=sorted(HALVES), help="run one half")
    parser.add_argument("--repeats", type=int, default=5, help="timed requests per item and model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(HALVES)
    results = {name: run_half(name, args) for name in names}
    body = "\n".join(section(name, results[name]) for name in names)
    print(body)
    if args.quick:
        return 0 if all("error" not in r for r in results.values()) else 1
    previous: dict[str, Any] = {}
    if JSON_PATH.exists() and args.only:  # one half re-run keeps the other's numbers
        import json

        previous = json.loads(JSON_PATH.read_text())
    write_json(JSON_PATH, {**previous, **results})
    if args.only:
        body = "\n".join(
            section(name, {**previous, **results}[name]) for name in HALVES if name in {**previous, **results}
        )
    update_section(
        "modalities",
        "Small models that see and hear (#20)",
        ".venv/bin/python bench/modalities.py",
        body + "\nJSON: `docs/results/modalities.json`.",
    )
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
