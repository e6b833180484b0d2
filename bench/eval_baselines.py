"""Baselines on RouteLLM's three benchmarks: ``sizewise eval --cv 5`` for random, tfidf-logreg and the oracle.

Random must come out at APGR 0.5 and CPT(50%) 50%: that checks the harness. Writes
docs/results/eval_baselines.json and the ``eval-baselines`` section of docs/results.md.

Usage: ``python bench/eval_baselines.py [--datasets routellm-gsm8k ...]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, markdown_table, update_section, write_json

DATASETS = ["routellm-mmlu", "routellm-gsm8k", "routellm-mtbench"]
ROUTERS = ["random", "tfidf-logreg", "oracle"]


def run_eval(dataset: str, out: Path) -> dict:
    """``sizewise eval`` in a subprocess, exactly as a user would run it; returns its JSON."""
    command = [sys.executable, "-m", "sizewise.cli.main", "eval", "--dataset", dataset, "--cv", "5", "--seed", "0"]
    command += [arg for name in ROUTERS for arg in ("--router", name)]
    command += ["--json", str(out), "--no-progress"]
    subprocess.run(command, check=True, cwd=ROOT)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    args = parser.parse_args()
    runs, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            start = time.perf_counter()
            result = run_eval(dataset, Path(tmp) / f"{dataset}.json")
            seconds = time.perf_counter() - start
            runs[dataset] = {**result, "seconds": seconds}
            for item in result["routers"]:
                rows.append(
                    {
                        "dataset": dataset,
                        "router": item["router"],
                        "prompts": result["prompts"],
                        "APGR": item["apgr"],
                        "APGR fold sd": _sd(item["fold_apgr"]),
                        "CPT(20%)": _pct(item["cpt20"]),
                        "CPT(50%)": _pct(item["cpt50"]),
                        "CPT(80%)": _pct(item["cpt80"]),
                        "AIQ": item["aiq"] if item["aiq"] is not None else "–",
                        "cost at strong quality": _pct(item["cost_at_strong_quality"]),
                    }
                )
            random = next(r for r in result["routers"] if r["router"] == "random")
            if abs(random["apgr"] - 0.5) > 5e-4 or abs(random["cpt50"] - 0.5) > 5e-4:
                raise SystemExit(
                    f"harness check failed on {dataset}: random APGR {random['apgr']}, CPT50 {random['cpt50']}"
                )
    for run in runs.values():  # keep the JSON small: curves are long on MMLU
        for item in run["routers"]:
            item.pop("curve", None)
    write_json(ROOT / "docs" / "results" / "eval_baselines.json", runs)
    table = markdown_table(rows)
    print(table)
    pairs = "; ".join(f"{d}: weak {r['weak_quality']:.3f}, strong {r['strong_quality']:.3f}" for d, r in runs.items())
    body = (
        f"{table}\n\n5-fold cross-validation (folds fixed by seed 0), decontaminated prompts. Quality of the pair "
        f"(Mixtral-8x7B weak, GPT-4-1106 strong): {pairs}. Random is the exact expected curve, so APGR 0.5 and "
        "CPT(50%) = 50% check the harness. APGR fold sd: spread of the APGR of each held-out fold alone. "
        "The oracle reads the outcomes (APGR above 1 where the weak model "
        'sometimes wins). tfidf-logreg: TF-IDF 1-2-grams + logistic regression on "strong strictly better".'
    )
    command = "python bench/eval_baselines.py" + (
        "" if args.datasets == DATASETS else " --datasets " + " ".join(args.datasets)
    )
    update_section("eval-baselines", "Routing baselines on RouteLLM's benchmarks (sizewise eval --cv 5)", command, body)


def _sd(values: list[float | None]) -> str:
    """Spread of the per-fold APGR (each fold's held-out prompts alone)."""
    finite = [v for v in values if v is not None]
    return f"{statistics.stdev(finite):.3f}" if len(finite) > 1 else "–"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    main()
