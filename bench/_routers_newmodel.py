"""Adding a model to a fitted ``mf`` router from a few hundred outcomes (the ``newmodel`` part of bench/routers.py).

Protocol, on MMLU-Pro's 9 models with 5-fold CV: per fold, ``mf`` is fitted on the training prompts
*without* the held-out model's column; then the model is added with :meth:`MFRouter.add_model` from
``n`` of its outcomes (random training prompts). Compared on the test prompts with:

* ``mf, all 9 models`` (the model's outcomes on every training prompt were there from the start);
* ``without the model`` (routing among the other 8 only: what adding it is worth);
* ``own logistic regression, n`` (the same ``n`` outcomes, a classifier on the prompt embedding that
  does not share ``mf``'s projection: what the shared factors are worth);
* ``mean only, n`` (its accuracy on the ``n`` prompts, the same for every prompt).

Reported: AUC of the held-out model's predicted quality against its recorded correctness (pooled
out-of-fold), and the N-model routing goals with the other 8 columns from the same 8-model ``mf``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from bench._routers_eval import folds_for, make, n_model_points, n_model_summary, oof_quality
from sizewise.evaluation.loaders import load_dataset
from sizewise.routers._learned import embed_prompts

EXCLUDED = -1e9  # a predicted quality no lambda can pick


def part_newmodel(held_out: Sequence[str], sizes: Sequence[int], seed: int = 0) -> dict[str, Any]:
    table = load_dataset("mmlu-pro")
    assert table.cost is not None
    models = list(table.models)
    folds = folds_for(table)
    texts = np.asarray(table.texts, dtype=object)
    embeddings = embed_prompts(list(texts), "minilm")
    model_cost = np.nanmean(table.cost, axis=0) * 1000
    model_quality = np.nanmean(table.quality, axis=0)
    best = int(np.argmax(model_quality))

    def summary(pred: np.ndarray) -> dict[str, Any]:
        points = n_model_points(pred, model_cost, table, model_cost)
        return n_model_summary(points, model_quality[best], model_cost[best])

    start = time.perf_counter()
    full = oof_quality("mf", table, folds)
    out: dict[str, Any] = {"sizes": list(sizes), "seed": seed, "models": {}}
    for name in held_out:
        j = models.index(name)
        others = [m for m in models if m != name]
        other_columns = np.array([models.index(m) for m in others])
        known_q = table.quality[:, j]
        rows: dict[str, np.ndarray] = {"mf, all 9 models": full.copy(), "without the model": np.zeros(full.shape)}
        for n in sizes:
            for label in ("mf + add_model", "own logistic regression", "mean only"):
                rows[f"{label}, n={n}"] = np.zeros(full.shape)
        for fold, test in enumerate(folds):
            train = np.setdiff1d(np.arange(len(table)), test)
            base = make("mf").fit(table.subset(train).select_models(others))
            eight = base.predict_quality(list(texts[test]))
            for pred in rows.values():
                if pred is not rows["mf, all 9 models"]:
                    pred[np.ix_(test, other_columns)] = eight
            rows["without the model"][test, j] = EXCLUDED
            labelled = train[~np.isnan(known_q[train])]
            rng = np.random.default_rng(seed + fold)
            for n in sizes:
                pick = rng.choice(labelled, size=min(n, labelled.size), replace=False)
                q = known_q[pick]
                base.add_model(name, list(texts[pick]), q)
                rows[f"mf + add_model, n={n}"][test, j] = base.predict_quality(list(texts[test]))[:, -1]
                own = LogisticRegression(C=1.0, max_iter=2000).fit(embeddings[pick], q > 0.5)
                rows[f"own logistic regression, n={n}"][test, j] = own.predict_proba(embeddings[test])[:, 1]
                rows[f"mean only, n={n}"][test, j] = q.mean()
        seen = ~np.isnan(known_q)
        result = {}
        for label, pred in rows.items():
            column = pred[:, j]
            auc = (
                float(roc_auc_score(known_q[seen], column[seen]))
                if label != "without the model" and np.ptp(column[seen]) > 0
                else None
            )
            result[label] = {"auc": auc, **summary(pred)}
            print("newmodel", name, label, result[label], flush=True)
        out["models"][name] = {"accuracy": float(model_quality[j]), "cost_per_1k": float(model_cost[j]), **result}
    out["seconds"] = time.perf_counter() - start
    out["best_single"] = {"model": models[best], "accuracy": float(model_quality[best])}
    return out


def render_newmodel(data: dict[str, Any]) -> str:
    from bench._results import markdown_table

    parts = [
        "### Adding a model to `mf` from a few outcomes (MMLU-Pro, 5-fold CV)\n\n"
        "Per fold, `mf` is fitted without the held-out model, then `MFRouter.add_model` adds it from n of its "
        "outcomes (random training prompts), keeping the prompt projection fixed. `own logistic regression`: a "
        "classifier on the prompt embedding from the same n outcomes; `mean only`: its accuracy on those n. AUC: "
        "the held-out model's predicted quality against its recorded correctness (pooled out-of-fold). Routing: "
        f"all 9 models, max quality - lambda x cost; goals as above ({data['best_single']['model']} "
        f"{data['best_single']['accuracy']:.3f})."
    ]
    for name, result in data["models"].items():
        rows = [
            {
                "variant": label,
                "AUC": "" if r["auc"] is None else r["auc"],
                "AIQ": r["aiq"],
                "cost to reach the best single model": (
                    "not reached"
                    if r["cost_share_for_best_single_accuracy"] is None
                    else f"{100 * r['cost_share_for_best_single_accuracy']:.0f}%"
                ),
                "best accuracy at <= its cost": r["best_accuracy_within_best_single_cost"],
            }
            for label, r in result.items()
            if isinstance(r, dict)
        ]
        full, without = result["mf, all 9 models"]["aiq"], result["without the model"]["aiq"]
        share = {label: (r["aiq"] - without) / (full - without) for label, r in result.items() if isinstance(r, dict)}
        shares = "; ".join(
            f"n={n}: {share[f'mf + add_model, n={n}']:.0%} "
            f"(own logistic regression {share[f'own logistic regression, n={n}']:.0%})"
            for n in data["sizes"]
        )
        parts.append(
            f"Held out: **{name}** (accuracy {result['accuracy']:.3f}, {result['cost_per_1k']:.4f} per 1k requests)\n\n"
            + markdown_table(rows)
            + f"\n\nShare of the AIQ the model adds when `mf` has all its outcomes ({without:.3f} -> {full:.3f}) "
            f"recovered from n outcomes: {shares}."
        )
    return "\n\n".join(parts)
