"""Learning from served traffic (#22): replay streams the starting router never saw, judge a share of
them, retrain behind the paired guard, and measure what it recovers and what it costs.

For each stream (see ``bench/_learning_streams.py``) and each of four runs (exact or noisy judge, 15% of
verdicts flipped; active or uniform choice of what to judge), ``bench/_learning_replay.py`` reports the
APGR of the router in service on the not-yet-seen rest of the stream after 0, 100, 250, 500, 1,000 and
2,000 judged requests, every promotion's effect on the 1,000 requests after it, and the whole stream's
quality and cost (served + shadow calls) against always-strong. One setting for every stream.

    .venv/bin/python bench/learning.py            # about 5 minutes on 2 cores once the router is cached
    .venv/bin/python bench/learning.py --quick    # a smoke run: 600 requests of two streams, no docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._learning_replay import CHECKPOINTS, Replay, Setup, replay
from bench._learning_streams import STREAM_NAMES, Stream, load_streams, starting_router
from bench._results import ROOT, markdown_table, update_section, write_json
from sizewise import paths
from sizewise.learn.retrain import parse_target
from sizewise.routers.retrained import features

JSON_PATH = ROOT / "docs" / "results" / "learning.json"
PLOT_PATH = ROOT / "docs" / "results" / "learning.png"
RUNS = [("exact", 0.0, "active"), ("exact", 0.0, "uniform"), ("noisy", 0.15, "active"), ("noisy", 0.15, "uniform")]
#: A leaner learning budget beside the main one (judged share, cap): what judging costs against what it buys.
LEAN = (0.2, 1000)
GOAL_APGR, GOAL_QUALITY, GOAL_COST = 0.65, 0.95, 0.70


def run_stream(stream: Stream, start: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every run of one stream."""
    t0 = time.perf_counter()
    base_scores = start.score(stream.texts)
    phi = features(stream.texts)
    runs = {}
    plan = [(f"{judge}/{selection}", noise, selection, args.judge_share, args.cap) for judge, noise, selection in RUNS]
    if not args.quick:
        plan.append((f"exact/uniform, judge {LEAN[0]:g} to {LEAN[1]}", 0.0, "uniform", *LEAN))
    for label, noise, selection, share, cap in plan:
        setup = Setup(parse_target(args.target), share, cap, selection, noise, args.shrink, args.seed)
        result: Replay = replay(stream, start, base_scores, phi, setup)
        runs[label] = {
            "checkpoints": result.checkpoints,
            "promotions": result.promotions,
            "totals": result.totals,
        }
        curve = " ".join(
            f"{c['judged']}:{c['apgr_rest']:.3f}" for c in result.checkpoints if c["apgr_rest"] is not None
        )
        print(
            f"{stream.name} {label}: {curve}; promotions {len(result.promotions)}; "
            f"quality {result.totals['quality_vs_strong']:.3f} cost {result.totals['cost_vs_strong']:.3f}",
            flush=True,
        )
    return {
        "n": len(stream.texts),
        "weak": stream.weak,
        "strong": stream.strong,
        "runs": runs,
        "seconds": time.perf_counter() - t0,
    }


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's three goals, each met or missed with its numbers."""
    worse = []
    for name, data in results.items():
        for run, r in data["runs"].items():
            for p in r["promotions"]:
                if p["next_apgr_candidate"] is not None and p["next_apgr_candidate"] < p["next_apgr_incumbent"]:
                    worse.append(
                        f"{name} {run} at {p['judged']} judged: APGR {p['next_apgr_candidate']:.3f} "
                        f"vs {p['next_apgr_incumbent']:.3f} on the next {p['next_n']}"
                    )
    promotions = sum(len(r["promotions"]) for d in results.values() for r in d["runs"].values())
    apgr_1000 = {}
    for name in ("routellm-mmlu", "routellm-gsm8k"):
        for run, r in results.get(name, {}).get("runs", {}).items():
            at = [c["apgr_rest"] for c in r["checkpoints"] if c["judged"] == 1000]
            apgr_1000[f"{name} {run}"] = at[0] if at else None
    budget = {
        f"{name} {run}": (r["totals"]["quality_vs_strong"], r["totals"]["cost_vs_strong"])
        for name, d in results.items()
        for run, r in d["runs"].items()
    }
    return {
        "no_worse_promotion": {"met": not worse, "promotions": promotions, "worse": worse},
        "apgr_after_1000": {
            "met": all(v is not None and v >= GOAL_APGR for v in apgr_1000.values()) and bool(apgr_1000),
            "values": apgr_1000,
        },
        "quality_at_cost": {
            "met": all(q >= GOAL_QUALITY and c <= GOAL_COST for q, c in budget.values()),
            "values": budget,
        },
    }


def render(results: dict[str, Any], summary: dict[str, Any], args: argparse.Namespace) -> str:
    """The docs/results.md section."""
    rows = []
    for name, data in results.items():
        for run, r in data["runs"].items():
            row: dict[str, Any] = {"stream": f"{name} ({data['n']})", "judge/selection": run}
            at = {c["judged"]: c["apgr_rest"] for c in r["checkpoints"]}
            for k in (0, *CHECKPOINTS):
                row[f"APGR@{k}"] = "n/a" if at.get(k) is None else f"{at[k]:.3f}"
            t = r["totals"]
            row["promoted"] = len(r["promotions"])
            row["quality"] = f"{t['quality_vs_strong']:.3f}"
            row["cost"] = f"{t['cost_vs_strong']:.3f}"
            row["cost, llm judge"] = f"{t['cost_vs_strong_llm_judge']:.3f}"
            rows.append(row)
    g = summary
    lines = [
        f"Starting router: the default recipe without RouteLLM MMLU and GSM8K (gbdt, static embedding). "
        f"Target {args.target}; judged share {args.judge_share:g} until {args.cap} judged (the last row of each "
        f"stream: {LEAN[0]:g} until {LEAN[1]}); shrink {args.shrink:g}; "
        f"retrain at {', '.join(map(str, CHECKPOINTS))} judged. APGR@k: on the rest of the stream after k judged "
        "(n/a: the stream ended first or fewer than 20 remain); it moves without a promotion too, as the rest "
        "it is measured on shrinks, and is noisy with a few hundred requests left. quality / cost: the whole "
        "stream against always-strong, cost including shadow calls (the recorded verdicts are graded answers: "
        "no judge call); `cost, llm judge` adds two strong-model calls per judged request (a pairwise judge, "
        "both orders).",
        "",
        markdown_table(rows),
        "",
        f"- No promotion worse than the incumbent on the next 1,000 requests: "
        f"**{'met' if g['no_worse_promotion']['met'] else 'missed'}** "
        f"({g['no_worse_promotion']['promotions']} promotions; worse: "
        f"{'; '.join(g['no_worse_promotion']['worse']) or 'none'}).",
        "- APGR >= 0.65 after 1,000 judged on RouteLLM MMLU and GSM8K: "
        f"**{'met' if g['apgr_after_1000']['met'] else 'missed'}** ("
        + ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in g["apgr_after_1000"]["values"].items())
        + ").",
        "- 95% of the strong model's quality at <= 70% of its cost, learning included: "
        f"**{'met' if g['quality_at_cost']['met'] else 'missed'}** ("
        + ", ".join(f"{k} {q:.3f} at {c:.3f}" for k, (q, c) in g["quality_at_cost"]["values"].items())
        + ").",
        "",
        f"![APGR on the rest of each stream against judged requests]({PLOT_PATH.relative_to(ROOT / 'docs')})",
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any]) -> None:
    """APGR on the rest of the stream against judged requests, one panel per stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.4), squeeze=False)
    for ax, (name, data) in zip(axes[0], results.items(), strict=True):
        for run, r in data["runs"].items():
            points = [(c["judged"], c["apgr_rest"]) for c in r["checkpoints"] if c["apgr_rest"] is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=run)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xscale("symlog", linthresh=100)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("judged requests")
        ax.set_ylabel("APGR on the rest")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    PLOT_PATH.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT_PATH, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default=",".join(STREAM_NAMES))
    parser.add_argument("--target", default="quality:0.95", help="the operating point, for every stream")
    parser.add_argument("--judge-share", type=float, default=0.8)
    parser.add_argument("--cap", type=int, default=2000, help="judged requests after which judging stops")
    parser.add_argument("--shrink", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N requests of each stream")
    parser.add_argument("--quick", action="store_true", help="smoke run: 600 requests of two streams, no docs")
    parser.add_argument("--render", action="store_true", help="rewrite the docs section and plot from the JSON")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(JSON_PATH.read_text())
        args = argparse.Namespace(**{**saved["settings"], "render": True})
        publish(saved["streams"], saved["goals"], args)
        return
    if args.quick:
        args.streams, args.limit, args.cap = "routellm-gsm8k,frugalgpt-overruling", 600, 250
    start = starting_router(paths.cache_dir())
    results = {}
    for stream in load_streams(tuple(args.streams.split(",")), args.seed):
        if args.limit:
            stream = Stream(
                stream.name,
                stream.weak,
                stream.strong,
                stream.texts[: args.limit],
                *(v[: args.limit] for v in (stream.q_weak, stream.q_strong, stream.c_weak, stream.c_strong)),
            )
        results[stream.name] = run_stream(stream, start, args)
    summary = goals(results)
    for name, goal in summary.items():
        print(name, "met" if goal["met"] else "MISSED", flush=True)
    if args.quick:
        return
    write_json(JSON_PATH, {"settings": vars(args), "streams": results, "goals": summary})
    publish(results, summary, args)


def publish(results: dict[str, Any], summary: dict[str, Any], args: argparse.Namespace) -> None:
    """The plot and the docs/results.md section."""
    plot(results)
    command = "python bench/learning.py"
    update_section("learning", "Learning from served traffic (#22)", command, render(results, summary, args))


if __name__ == "__main__":
    main()
