"""Train the pretrained default router shipped in src/sizewise/routers/pretrained/default.zip.

The recipe lives in :mod:`sizewise.evaluation.default_router` (``sizewise train --default-router`` runs
it too): RouteLLM MMLU + GSM8K + MT-Bench and MMLU-Pro outcome pairs as one (weak, strong) table, 80% of
the distinct prompts to train, the rest to calibrate; the thresholds and the embedding's id are recorded
in the file's provenance. ``--embedding minilm`` trains on MiniLM itself instead of the static table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sizewise.evaluation.default_router import DEFAULT_PARAMS, build_default_router, shipped_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--router", default="gbdt")
    parser.add_argument("--param", action="append", default=[], help="KEY=JSON router parameter")
    parser.add_argument("--embedding", default="static", choices=["static", "minilm"], help="prompt embedder")
    parser.add_argument("--out", type=Path, default=None, help="default: the package's pretrained/default.zip")
    args = parser.parse_args()
    params = {**DEFAULT_PARAMS, "embedding": args.embedding}
    params.update({k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)})
    build_default_router(args.out or shipped_path(), args.router, params)


if __name__ == "__main__":
    main()
