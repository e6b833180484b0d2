"""Markdown for the learned-router benchmark's section of docs/results.md (see bench/routers.py)."""

from __future__ import annotations

from typing import Any

from bench._results import markdown_table
from bench._routers_curve import noise_lines
from bench._routers_headroom import headroom_lines

# (weak, strong) MMLU-Pro pairs used for transfer training and the default router.
MMLU_PRO_PAIRS = [
    ("Mixtral-8x7B-Instruct-v0.1", "gemini-1.5-pro-002"),
    ("Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-70B-Instruct"),
    ("Qwen1.5-7B-Chat", "Qwen1.5-72B-Chat"),
    ("Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"),
    ("Phi-3-mini-4k-instruct", "gemini-1.5-flash-002"),
]


# -- report ---------------------------------------------------------------------------------------------
GOALS = {"routellm-mmlu": 0.72, "routellm-gsm8k": 0.65, "routellm-mtbench": 0.80}


def render(results: dict[str, Any]) -> str:
    parts = []
    for dataset, data in results.get("routellm", {}).items():
        rows = [
            {
                "router": name,
                "APGR": r["apgr"],
                "CPT(50%)": f"{100 * r['cpt50']:.1f}%",
                "CPT(80%)": f"{100 * r['cpt80']:.1f}%",
            }
            for name, r in data["routers"].items()
        ]
        goal = f"goal APGR >= {GOALS[dataset]}" + (", CPT(50%) <= 13%" if dataset == "routellm-mtbench" else "")
        parts.append(
            f"### {dataset} ({data['n']} prompts, {data['weak']} vs {data['strong']}; {goal})\n\n{markdown_table(rows)}"
            + "\n".join(noise_lines(results, dataset))
        )
    if "transfer" in results:
        t = results["transfer"]
        rows = [
            {"router": name, **{f"{d} APGR": t[d][name]["apgr"] for d in ("routellm-mmlu", "routellm-gsm8k")}}
            for name in t["routellm-mmlu"]
        ]
        parts.append(
            f"### Transfer: trained on MMLU-Pro pairs only ({t['n_train']} rows), tested on RouteLLM "
            "(goal APGR >= 0.60)\n\n"
            f"Pairs: {', '.join(f'{w} / {s}' for w, s in MMLU_PRO_PAIRS)}. Note: MMLU-Pro reuses some MMLU "
            "questions (rewritten with 10 options), so MMLU transfer is not fully label-free in content. "
            '`gbdt:target="difficulty"` is fitted on the nine-model MMLU-Pro table instead and regresses one minus '
            "the mean quality of the nine models on each prompt, a score that names no model (command: "
            "`python bench/routers.py --parts transfer --routers 'gbdt:target=\"difficulty\"'`); it was added "
            "after the other rows had been measured on these test sets.\n\n"
            f"{markdown_table(rows)}"
        )
    if "mmlupro" in results:
        m = results["mmlupro"]
        best = m["best_single"]
        rows = [
            {"router": "single models (hull)", "AIQ": m["single_models_hull"]["aiq"]},
            {"router": "oracle (cheapest correct model)", "AIQ": m["oracle"]["aiq"]},
        ]
        variants = ("", " +cost-model", " +true cost (bound)")
        bases = list(dict.fromkeys(n.split(" +")[0] for n in m["routers"]))
        ordered = sorted(
            m["routers"], key=lambda n: (bases.index(n.split(" +")[0]), variants.index(n[len(n.split(" +")[0]) :]))
        )
        for name in ordered:
            r = m["routers"][name]
            share = r["cost_share_for_best_single_accuracy"]
            rows.append(
                {
                    "router": name,
                    "AIQ": r["aiq"],
                    f"cost to reach {best['accuracy']:.3f}": "not reached"
                    if share is None
                    else f"{100 * share:.0f}% of {best['model']}",
                    f"best accuracy at <= {best['model']} cost": r["best_accuracy_within_best_single_cost"],
                }
            )
        goal_columns = [
            "router",
            "AIQ",
            f"cost to reach {best['accuracy']:.3f}",
            f"best accuracy at <= {best['model']} cost",
        ]
        rows = [{c: row.get(c, "") for c in goal_columns} for row in rows]
        models = markdown_table([{"model": k, **v} for k, v in m["models"].items()], digits=4)
        parts.append(
            "### MMLU-Pro, 9 models, N-model routing (max quality - lambda x cost, 5-fold CV)\n\n"
            f"Goals: {best['accuracy']:.3f} ({best['model']}) at <= 30% of its cost; >= 0.72 at <= its cost. "
            f"Oracle best accuracy {m['oracle']['best_quality']:.3f}. Rows marked `+cost-model` decide with each "
            "prompt's predicted cost per model (`sizewise.routers.cost.CostPredictor`: ridge on log cost from the "
            "prompt embedding and text features, fitted out-of-fold) instead of each model's mean cost; the "
            "realised cost is the recorded one either way. `+true cost (bound)` decides with the recorded cost itself, "
            "the limit of any cost model.\n\n"
            f"{markdown_table(rows)}\n\nModels:\n\n{models}" + "\n".join(headroom_lines(results.get("headroom", {})))
        )
    if "speed" in results:
        s = results["speed"]
        rows = [
            {
                "case": "new prompt (embedding runs)",
                "p50 ms": s["uncached_ms"]["p50"],
                "p99 ms": s["uncached_ms"]["p99"],
            },
            {"case": "repeat prompt (memo hit)", "p50 ms": s["memo_hit_ms"]["p50"], "p99 ms": s["memo_hit_ms"]["p99"]},
            {
                "case": "repeat prompt (disk-cache hit)",
                "p50 ms": s["disk_hit_ms"]["p50"],
                "p99 ms": s["disk_hit_ms"]["p99"],
            },
        ]
        embedding = s.get("embedding", "minilm")
        cost = "an unloaded run embeds about 4,000 tokens/s, i.e. 50-70 ms for a 200-token prompt"
        if embedding == "static":  # no embedding cache: a repeated prompt costs what a new one does
            rows = [{**rows[0], "case": "new or repeated prompt (static embedding runs)"}]
            cost = "static embeddings have no cache, so repeated prompts cost the same as new ones"
        parts.append(
            f"### Decision speed ({s['router']} on {embedding} embeddings from {s['router_file']}, "
            f"prompts of {s['prompt_tokens_mean']:.0f} tokens; goal p50 <= 5 ms, >= 500 decisions/s)\n\n"
            f"{markdown_table(rows, digits=2)}\n\nBatches: "
            f"{s['batch_decisions_per_s_uncached']:.0f} decisions/s for new prompts, "
            f"{s['batch_decisions_per_s_cached']:.0f}/s for {'repeated' if embedding == 'static' else 'cached'} ones "
            "(1,020 prompts). Router file loads in "
            f"{1000 * s['load_seconds']:.0f} ms. Measured at 1-minute load average "
            f"{s.get('load_average_1min', 0):.1f} "
            f"on this 2-core machine shared with other jobs (BLAS threads: {s.get('blas_threads', 'default')}); "
            f"{cost}."
        )
    if "embeddings" in results:
        parts.append(render_embeddings(results["embeddings"]))
    if "newmodel" in results:
        from bench._routers_newmodel import render_newmodel

        parts.append(render_newmodel(results["newmodel"]))
    return "\n\n".join(parts)


def render_embeddings(e: dict[str, Any]) -> str:
    """The MiniLM-vs-static comparison (``--parts embeddings``)."""
    rows = []
    for dataset, data in e["datasets"].items():
        for name, r in data["routers"].items():
            minilm, static = r.get("minilm", {}), r.get("static", {})
            rows.append(
                {
                    "dataset": dataset,
                    "router": name,
                    "APGR MiniLM": minilm.get("apgr", float("nan")),
                    "APGR static": static.get("apgr", float("nan")),
                    "difference": static.get("apgr", float("nan")) - minilm.get("apgr", float("nan")),
                    "CPT(50%) MiniLM": f"{100 * minilm.get('cpt50', float('nan')):.1f}%",
                    "CPT(50%) static": f"{100 * static.get('cpt50', float('nan')):.1f}%",
                }
            )
    text = (
        "### Static vs MiniLM embeddings (`python bench/routers.py --parts embeddings`, 5-fold CV)\n\n"
        "Static: a token table distilled from MiniLM (`sizewise.embedding.static`), a prompt is the mean of its "
        "tokens' rows; MiniLM: the 6-layer encoder.\n\n" + markdown_table(rows)
    )
    s = e.get("speed")
    if s:
        speed_rows = [
            {
                "embedding": name,
                "new prompt p50 ms": s[name]["uncached_ms"]["p50"],
                "new prompt p99 ms": s[name]["uncached_ms"]["p99"],
                "decisions/s, batch of new prompts": s[name]["batch_decisions_per_s_uncached"],
            }
            for name in ("minilm", "static")
            if name in s
        ]
        text += (
            f"\n\nDecision speed of `{s['router']}` trained on {s['trained_on']} with each embedding (new prompts "
            f"of {s['prompt_tokens_mean']:.0f} tokens, embedding included; goal p50 <= 5 ms, >= 500 decisions/s; "
            f"1-minute load average {s['load_average_1min']:.1f}, BLAS threads {s['blas_threads']}):\n\n"
            + markdown_table(speed_rows, digits=2)
        )
    return text
