"""Benchmark of the learned routers (issue #4). Writes docs/results/routers.json and its docs/results.md section.

Parts (``--parts`` picks some): ``routellm`` (GPT-4 vs Mixtral on MMLU, GSM8K, MT-Bench, 5-fold CV;
``--routellm-datasets`` picks some),
``transfer`` (train on MMLU-Pro pairs, test on RouteLLM MMLU and GSM8K), ``mmlupro`` (9 models,
N-model routing, 5-fold CV), ``curve`` (APGR on RouteLLM MMLU with part of each training fold,
bench/_routers_curve.py; ``--curve-router``), ``interval`` (bootstrap interval of that router's MT-Bench
APGR with the most extra rows), ``headroom`` (how good a quality predictor the MMLU-Pro
goals need: ours against simulated ones, bench/_routers_headroom.py), ``speed`` (one decision incl. embedding a
200-token prompt; batches),
``embeddings`` (every learned router with MiniLM vs static embeddings on ``--datasets``, and the speed of
``gbdt`` with each; ``--routers ""`` re-measures only that speed), ``newmodel`` (a model added to a
fitted ``mf`` from ``--sizes`` outcomes; ``--held-out`` picks the models; not in the default parts).
Parts not run keep their stored results (docs/results/routers.json); ``--parts none`` only re-renders the section.

Metric definitions (RouteLLM / RouterBench), computed on pooled out-of-fold scores:
PGR(share) = (quality(share) - q_weak) / (q_strong - q_weak) with the top ``share`` of prompts by
score sent to the strong model; APGR = mean PGR over shares 0..1 (trapezoid on every prompt count);
CPT(x) = smallest share with PGR >= x. AIQ = area under the non-decreasing convex hull of the
(cost, quality) points, divided by the cost range of the single models.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import ROOT, update_section, write_json
from bench._routers_eval import (
    as_pair,
    concat,
    folds_for,
    make,
    n_model_points,
    n_model_summary,
    oof_quality,
    oof_scores,
    pair_metrics,
    split_routers,
)
from bench._routers_newmodel import part_newmodel
from bench._routers_render import GOALS, MMLU_PRO_PAIRS, render
from bench._routers_speed import new_prompt_speed, part_speed, speed_prompts
from sizewise.evaluation.loaders import load_dataset
from sizewise.evaluation.table import OutcomeTable
from sizewise.routers.cost import CostPredictor

LEARNED = ["sw-ranking", "knn", "embed-logreg", "embed-mlp", "mf", "gbdt", "ensemble"]
EMBEDDINGS = ["minilm", "static"]
N_MODEL = ["sw-ranking", "knn", "embed-logreg", "embed-mlp", "mf", 'ensemble:members=["knn","embed-logreg","mf"]']
JSON_PATH = ROOT / "docs" / "results" / "routers.json"


# -- parts --------------------------------------------------------------------------------------------
ROUTELLM = ("routellm-mmlu", "routellm-gsm8k", "routellm-mtbench")
MTBENCH_PRO_PAIR = ("Mixtral-8x7B-Instruct-v0.1", "gemini-1.5-pro-002")  # MMLU-Pro rows added to MT-Bench


def part_routellm(routers: list[str], datasets: Sequence[str] = ROUTELLM) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dataset in datasets:
        table = load_dataset(dataset)
        weak, strong = table.weak_strong()
        q_weak, q_strong = table.column(weak), table.column(strong)
        folds = folds_for(table)
        rows: dict[str, Any] = {}
        rng = np.random.default_rng(0)
        randoms = [pair_metrics(rng.random(len(table)), q_weak, q_strong) for _ in range(20)]
        rows["random"] = {k: float(np.mean([r[k] for r in randoms])) for k in randoms[0]}
        rows["oracle"] = pair_metrics(q_strong - q_weak + 1e-9 * rng.random(len(table)), q_weak, q_strong)
        for name in routers:
            start = time.perf_counter()
            rows[name] = pair_metrics(oof_scores(name, table, folds), q_weak, q_strong)
            rows[name]["seconds"] = time.perf_counter() - start
            print(dataset, name, {k: round(v, 3) for k, v in rows[name].items()}, flush=True)
        if dataset == "routellm-mtbench":
            # 115 training prompts per fold is little: also train with the other two benchmarks added,
            # then also with MMLU-Pro's Mixtral / Gemini-1.5-Pro pair (same weak model, a strong one).
            for name, (label, extra) in itertools.product(routers, mtbench_extras(table).items()):
                key = f"{name} {label}"
                rows[key] = pair_metrics(oof_scores(name, table, folds, extra=extra), q_weak, q_strong)
                print(dataset, key, {k: round(v, 3) for k, v in rows[key].items()}, flush=True)
        out[dataset] = {"n": len(table), "weak": weak, "strong": strong, "routers": rows}
    return out


def mtbench_extras(table: OutcomeTable) -> dict[str, OutcomeTable]:
    """Rows added to MT-Bench's training folds: the other two benchmarks, then also MMLU-Pro's pair."""
    weak, strong = table.weak_strong()
    routellm = [load_dataset("routellm-mmlu"), load_dataset("routellm-gsm8k")]
    pro = dict(zip((weak, strong), MTBENCH_PRO_PAIR, strict=True))
    pro_pair = as_pair(
        load_dataset("mmlu-pro"), pro[table.models[0]], pro[table.models[1]], (table.models[0], table.models[1])
    )
    return {"+mmlu+gsm8k": concat(routellm), "+mmlu+gsm8k+mmlu-pro": concat([*routellm, pro_pair])}


def part_interval(router: str, extra: str) -> dict[str, Any]:
    """MT-Bench APGR of ``router`` trained with the ``extra`` rows, with a bootstrap over its questions."""
    from bench._routers_curve import grouped_interval

    table = load_dataset("routellm-mtbench")
    weak, strong = table.weak_strong()
    scores = oof_scores(router, table, folds_for(table), extra=mtbench_extras(table)[extra])
    groups = table.prompts["question_id"].astype(str).to_numpy()
    out = grouped_interval(scores, table.column(weak), table.column(strong), groups)
    out.update(router=f"{router} {extra}", dataset="routellm-mtbench", goal=GOALS["routellm-mtbench"])
    print("interval", out, flush=True)
    return out


def mmlu_pro_pairs() -> OutcomeTable:
    """MMLU-Pro outcomes of several (weak, strong) pairs stacked as one two-column table."""
    pro = load_dataset("mmlu-pro")
    return concat([as_pair(pro, w, s, ("weak", "strong")) for w, s in MMLU_PRO_PAIRS], name="mmlu-pro-pairs")


def part_transfer(routers: list[str]) -> dict[str, Any]:
    train = mmlu_pro_pairs()
    out: dict[str, Any] = {"train": f"MMLU-Pro pairs {MMLU_PRO_PAIRS}", "n_train": len(train)}
    tests = {d: load_dataset(d) for d in ("routellm-mmlu", "routellm-gsm8k")}
    for name in routers:
        # A model-free "difficulty" is the mean over all nine models, not over a pair.
        router = make(name).fit(load_dataset("mmlu-pro") if 'target="difficulty"' in name else train)
        for dataset, table in tests.items():
            weak, strong = table.weak_strong()
            metrics = pair_metrics(router.score(table.texts), table.column(weak), table.column(strong))
            out.setdefault(dataset, {})[name] = metrics
            print("transfer", dataset, name, {k: round(v, 3) for k, v in metrics.items()}, flush=True)
    return out


def part_mmlupro(routers: list[str]) -> dict[str, Any]:
    table = load_dataset("mmlu-pro")
    assert table.cost is not None
    models = list(table.models)
    folds = folds_for(table)
    model_cost = np.nanmean(table.cost, axis=0) * 1000
    model_quality = np.nanmean(table.quality, axis=0)
    best = int(np.argmax(model_quality))
    from sizewise.evaluation import metrics
    from sizewise.routers.multi import lambda_grid, max_utility, realised

    # Oracle: per prompt the cheapest correct model (the best one when none is correct), over lambda.
    quality = np.nan_to_num(table.quality)
    oracle_points = [
        realised(max_utility(quality, model_cost, lam), table.quality, table.cost)
        for lam in lambda_grid(model_cost, 80)
    ]
    out: dict[str, Any] = {
        "models": {
            m: {
                "accuracy": float(model_quality[i]),
                "cost_per_1k": float(model_cost[i]),
                # How much one request's cost varies with the prompt: what a per-prompt cost model can use.
                "cost p90 / p10": float(np.divide(*np.nanpercentile(table.cost[:, i], [90, 10]))),
            }
            for i, m in enumerate(models)
        },
        "best_single": {
            "model": models[best],
            "accuracy": float(model_quality[best]),
            "cost_per_1k": float(model_cost[best]),
        },
        "single_models_hull": {"aiq": metrics.aiq(model_cost, model_quality)},
        "oracle": {
            **n_model_summary(oracle_points, model_quality[best], model_cost[best]),
            "best_quality": max(q for q, _ in oracle_points),
            "curve": [{"cost_per_1k": float(c), "quality": float(q)} for q, c in oracle_points],
        },
        "routers": {},
    }
    # Per-prompt cost of every model, predicted out-of-fold (sizewise.routers.cost): the same for every router.
    prompt_cost = np.zeros(table.quality.shape)
    for test in folds:
        fitted = CostPredictor().fit(table.subset(np.setdiff1d(np.arange(len(table)), test)))
        prompt_cost[test] = fitted.predict(table.subset(test).texts) * 1000
    # Upper bound for any cost model: deciding with the recorded cost itself (the mean where it is missing).
    true_cost = np.where(np.isnan(table.cost), np.nanmean(table.cost, axis=0), table.cost) * 1000
    for name in routers:
        start = time.perf_counter()
        pred = oof_quality(name, table, folds)
        seconds = time.perf_counter() - start
        variants = ((name, model_cost), (f"{name} +cost-model", prompt_cost), (f"{name} +true cost (bound)", true_cost))
        for label, costs in variants:
            points = n_model_points(pred, costs, table, model_cost)
            out["routers"][label] = {
                **n_model_summary(points, model_quality[best], model_cost[best]),
                "seconds": seconds,
                "curve": [{"cost_per_1k": float(c), "quality": float(q)} for q, c in points],
            }
            r = out["routers"][label]
            print("mmlu-pro", label, {k: v for k, v in r.items() if k != "curve"}, flush=True)
    return out


def part_headroom() -> dict[str, Any]:
    """Out-of-fold predictions of the best N-model router on MMLU-Pro, against simulated predictors."""
    from bench._routers_headroom import ROUTER, headroom

    table = load_dataset("mmlu-pro")
    out = headroom(table, oof_quality(ROUTER, table, folds_for(table)))
    print("headroom", out, flush=True)
    return out


def part_embeddings(routers: list[str], datasets: list[str]) -> dict[str, Any]:
    """APGR (5-fold CV) of each router with MiniLM and with static embeddings; decision speed of ``gbdt``
    with each, trained on the first dataset."""
    out: dict[str, Any] = {"datasets": {}}
    for dataset in datasets:
        table = load_dataset(dataset)
        weak, strong = table.weak_strong()
        folds = folds_for(table)
        rows: dict[str, Any] = {}
        for name in routers:
            for embedding in EMBEDDINGS:
                start = time.perf_counter()
                scores = oof_scores(f'{name}:embedding="{embedding}"', table, folds)
                metrics = pair_metrics(scores, table.column(weak), table.column(strong))
                rows.setdefault(name, {})[embedding] = {**metrics, "seconds": time.perf_counter() - start}
                print(dataset, name, embedding, {k: round(v, 3) for k, v in metrics.items()}, flush=True)
        out["datasets"][dataset] = {"n": len(table), "weak": weak, "strong": strong, "routers": rows}
    prompts, tokens = speed_prompts(1300)
    train = load_dataset(datasets[0])
    speed: dict[str, Any] = {"router": "gbdt", "trained_on": datasets[0], "prompt_tokens_mean": float(np.mean(tokens))}
    for i, embedding in enumerate(EMBEDDINGS):
        router = make(f'gbdt:embedding="{embedding}"').fit(train)
        router.score(["warm up"])  # loads the encoder or the static table
        part = prompts[i * 650 : (i + 1) * 650]  # disjoint prompts: nothing is cached from the other run
        speed[embedding] = new_prompt_speed(router, part, 100, 500 if embedding == "static" else 150)
        print("speed", embedding, speed[embedding], flush=True)
    speed["load_average_1min"] = os.getloadavg()[0]
    speed["blas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    out["speed"] = speed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="routellm,transfer,mmlupro,headroom,speed,embeddings")
    parser.add_argument(
        "--routers",
        default=",".join(LEARNED),
        help='registry names, comma-separated (`name:key="value",...` sets parameters)',
    )
    parser.add_argument("--routellm-datasets", default=",".join(ROUTELLM), help="datasets of the routellm part")
    parser.add_argument("--curve-router", default="ensemble", help="router of the curve and interval parts")
    parser.add_argument("--router-file", type=Path, default=None, help="router for the speed part")
    parser.add_argument(
        "--datasets", default="routellm-mmlu,routellm-gsm8k", help="datasets of the embeddings part (comma-separated)"
    )
    parser.add_argument(
        "--held-out", default="gemini-1.5-flash-002", help="newmodel part: models to add (comma-separated)"
    )
    parser.add_argument("--sizes", default="100,300,1000", help="newmodel part: outcomes given to add_model")
    args = parser.parse_args()
    routers = split_routers(args.routers)
    if args.routers == ",".join(LEARNED):
        try:  # the TF-IDF baseline from the harness, when it is registered
            make("tfidf-logreg")
            routers.insert(0, "tfidf-logreg")
        except Exception:
            print("tfidf-logreg not available; skipped", flush=True)
    results: dict[str, Any] = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
    parts = args.parts.split(",")
    if "routellm" in parts:
        fresh = part_routellm(routers, [d for d in args.routellm_datasets.split(",") if d])
        for dataset, data in fresh.items():  # merge, so one router or dataset can be (re)run alone
            old = results.get("routellm", {}).get(dataset, {}).get("routers", {})
            data["routers"] = {**old, **data["routers"]}
        results["routellm"] = {**results.get("routellm", {}), **fresh}
    if "transfer" in parts:
        fresh = part_transfer(routers)
        for dataset in ("routellm-mmlu", "routellm-gsm8k"):  # merge, so one router can be (re)run alone
            fresh[dataset] = {**results.get("transfer", {}).get(dataset, {}), **fresh[dataset]}
        results["transfer"] = fresh
    if "mmlupro" in parts:
        fresh = part_mmlupro([r for r in routers if r in N_MODEL])
        fresh["routers"] = {**results.get("mmlupro", {}).get("routers", {}), **fresh["routers"]}  # merge
        results["mmlupro"] = fresh
    if "rescore" in parts and "mmlupro" in results:  # recompute summaries from stored curves, no refitting
        fresh = part_mmlupro([])
        for name, r in results["mmlupro"]["routers"].items():
            points = [(p["quality"], p["cost_per_1k"]) for p in r["curve"]]
            best = fresh["best_single"]
            fresh["routers"][name] = {**r, **n_model_summary(points, best["accuracy"], best["cost_per_1k"])}
        results["mmlupro"] = fresh
    if "curve" in parts:
        from bench._routers_curve import learning_curve

        results["curve"] = learning_curve(args.curve_router, "routellm-mmlu", GOALS["routellm-mmlu"])
    if "interval" in parts:
        results["interval"] = part_interval(args.curve_router, "+mmlu+gsm8k+mmlu-pro")
    if "headroom" in parts:
        results["headroom"] = part_headroom()
    if "speed" in parts:
        results["speed"] = part_speed(args.router_file)
    if "embeddings" in parts:
        learned = [r for r in routers if r in LEARNED]
        fresh = part_embeddings(learned, [d for d in args.datasets.split(",") if d])
        old = results.get("embeddings", {}).get("datasets", {})
        for dataset, data in old.items():  # merge, so one router or dataset can be (re)run alone
            new = fresh["datasets"].setdefault(dataset, data)
            new["routers"] = {**data["routers"], **new["routers"]}
        results["embeddings"] = fresh
    if "newmodel" in parts:
        sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
        results["newmodel"] = part_newmodel([m for m in args.held_out.split(",") if m], sizes)
    write_json(JSON_PATH, results)
    body = render(results)
    print(body)
    update_section("routers", "Learned routers (issue #4)", "python bench/routers.py", body)


if __name__ == "__main__":
    main()
