"""Train the pretrained default router shipped in src/sizewise/routers/pretrained/default.zip.

Training data: RouteLLM MMLU + GSM8K + MT-Bench (Mixtral-8x7B vs GPT-4-1106) and MMLU-Pro outcome
pairs (see bench/routers.py MMLU_PRO_PAIRS), as one (weak, strong) table: "how much does this prompt
need a bigger model". 80% of the distinct prompts train it; thresholds are calibrated on the other 20%
and written to pretrained/thresholds.json (read by the README and by whoever loads the router).
Prompts are embedded with the static table distilled from MiniLM (``--embedding static``, the default:
a decision takes well under a millisecond plus the trees) or with MiniLM itself (``--embedding minilm``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.routers import MMLU_PRO_PAIRS, as_pair, concat, make
from sizewise.evaluation.loaders import load_dataset
from sizewise.routers.calibration import calibrate

OUT = Path(__file__).resolve().parents[1] / "src" / "sizewise" / "routers" / "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--router", default="gbdt")
    parser.add_argument("--param", action="append", default=[], help="KEY=JSON router parameter")
    parser.add_argument("--embedding", default="static", choices=["static", "minilm"], help="prompt embedder")
    args = parser.parse_args()
    args.param.append(f"embedding={json.dumps(args.embedding)}")
    names = ("weak", "strong")
    parts = []
    for name in ("routellm-mmlu", "routellm-gsm8k", "routellm-mtbench"):
        data = load_dataset(name)
        weak, strong = data.weak_strong()
        parts.append(as_pair(data, weak, strong, names))
    pro = load_dataset("mmlu-pro")
    parts += [as_pair(pro, w, s, names) for w, s in MMLU_PRO_PAIRS]
    table = concat(parts, name="default-router-data")
    # Split by prompt text: the MMLU-Pro pairs repeat each question, which must not straddle the split.
    texts = np.array(table.texts, dtype=object)
    unique = np.random.default_rng(0).permutation(np.unique(texts))
    train_texts = set(unique[: int(0.8 * len(unique))])
    in_train = np.array([t in train_texts for t in texts])
    rows = np.r_[np.flatnonzero(in_train), np.flatnonzero(~in_train)]
    cut = int(in_train.sum())
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    spec = args.router + ":" + ",".join(args.param)
    router = make(spec).fit(table.subset(rows[:cut]))
    router.save(OUT / "default.zip")
    held = table.subset(rows[cut:])
    thresholds = {}
    for share in (0.2, 0.3, 0.5, 0.8):
        r = calibrate(router, held, target_share=share, n_boot=300)
        thresholds[f"share_{share:g}"] = r.to_dict()
    r = calibrate(router, held, target_quality=0.95, n_boot=300)
    thresholds["quality_0.95"] = r.to_dict()
    meta = {
        "router": args.router,
        "params": params,
        "n_train": cut,
        "n_heldout": len(rows) - cut,
        "calibration": thresholds,
    }
    (OUT / "thresholds.json").write_text(json.dumps(meta, indent=2))
    for key, value in thresholds.items():
        print(
            key,
            "threshold",
            round(value["threshold"], 4),
            "share",
            round(value["share"], 3),
            "quality",
            round(value["quality"], 4),
        )


if __name__ == "__main__":
    main()
