"""What the logprob scorer makes of answers cut at ``max_tokens`` in collected embedded-ladder outcomes (#23).

Usage: ``python bench/cut_answers.py [DIR] [--threshold 0.85]``; DIR holds ``sizewise collect`` files
(``*.jsonl``, default ``$SIZEWISE_COLLECTED`` or /tmp/collect, as ``bench/train_default_router.py``). Per
model and ``finish_reason``: answers, their accuracy, how many the unfitted logprob scorer accepts at the
threshold and the accuracy of those. The live cascade never accepts a cut one below its top rung.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.cascade.scorers.base import Answer, make_scorer


def read_rows(directory: Path) -> list[dict[str, Any]]:
    """Answered rows with logprobs from every collect file in ``directory`` (the last row per question wins)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("response") is not None and row.get("logprobs"):
                rows[(path.name, str(row["prompt_id"]), str(row["model"]))] = row
    return list(rows.values())


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default=os.environ.get("SIZEWISE_COLLECTED", "/tmp/collect"))
    parser.add_argument("--threshold", type=float, default=0.85)
    args = parser.parse_args()
    rows = read_rows(Path(args.directory))
    if not rows:
        raise SystemExit(f"no collected rows with logprobs in {args.directory}")
    scorer = make_scorer("logprob")
    print(f"{'model':20} {'finish':6} {'n':>5} {'right':>6} {'accepted':>9} {'right of accepted':>18}")
    for model in dict.fromkeys(str(r["model"]) for r in rows):
        for reason in ("length", "stop"):
            chosen = [r for r in rows if r["model"] == model and r.get("finish_reason") == reason]
            if not chosen:
                continue
            scores = scorer.score([Answer(r["text"], r["response"], logprobs=r["logprobs"]) for r in chosen])
            right = np.array([bool(r["correct"]) for r in chosen])
            kept = scores >= args.threshold
            share = f"{right[kept].mean():.2f}" if kept.any() else "-"
            print(f"{model:20} {reason:6} {len(chosen):5} {right.mean():6.2f} {int(kept.sum()):9} {share:>18}")


if __name__ == "__main__":
    main()
