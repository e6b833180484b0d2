"""The live part of ``bench/cascade.py``: the embedded ladder on a table written by ``sizewise collect``.

Accuracy and CPU seconds of always-big vs the cascade with each scorer, the verifier's cost, and the
perfect-scorer bound; rendered as the "Live" subsection of the Cascades results.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from _results import markdown_table
from sizewise.cascade.policy import cost_at_quality, ladder_cut, pareto, quality_at_cost, sweep
from sizewise.cascade.scorers import Answer, make_scorer
from sizewise.evaluation.table import OutcomeTable


def folds(n: int, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Random k-fold split of n rows."""
    return [np.sort(f) for f in np.array_split(np.random.default_rng(seed).permutation(n), k)]


def evaluate_live(path: str) -> dict[str, Any]:
    """The embedded ladder on questions collected with ``sizewise collect``: accuracy and CPU seconds of
    always-big vs the cascade with each scorer the collected data supports: logprob (raw and fitted) and
    answer-classifier (5-fold out-of-fold) always; verifier and consistency where ``collect --scorers``
    recorded their model calls. Cost = CPU seconds of each call, plus the scorer's own calls on every
    rung that is scored (verifying or sampling is part of what a cascade spends)."""
    from sizewise.cascade.collect import load_collected

    table = load_collected(path)
    result = _live(table)
    covered = _with_scorer_data(table)
    if len(covered) < len(table):  # a run of ``collect --scorers`` that covered only some questions
        result["with_model_calls"] = _live(covered)
    return result


def _live(table: OutcomeTable) -> dict[str, Any]:
    """:func:`evaluate_live` on one collected table."""
    ladder = list(table.models)
    quality = table.quality
    cost = table.cost
    meta = table.meta
    # Cut answers are escalated unscored, as in the gateway: no accept, and no scorer calls paid for them.
    cut = ladder_cut(table, ladder)
    splits = folds(len(table), min(5, max(2, len(table) // 10)))
    answers = {
        m: [
            Answer(p, str(r or ""), model=m, logprobs=lp, samples=s, verdict=v)
            for p, r, lp, s, v in zip(
                table.texts,
                table.column(m, "responses"),
                meta["logprobs"][m],
                meta["samples"][m],
                meta["verdicts"][m],
                strict=True,
            )
        ]
        for m in ladder
    }
    scorers: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "logprob (unfitted)": (
            np.stack([make_scorer("logprob").score(answers[m]) for m in ladder[:-1]], axis=1),
            cost,
        )
    }
    for name in ("logprob", "answer-classifier"):
        scores = np.zeros((len(table), len(ladder) - 1))
        for j, model in enumerate(ladder[:-1]):
            for test in splits:
                train = np.setdiff1d(np.arange(len(table)), test)
                fitted = make_scorer(name).fit([answers[model][i] for i in train], quality[train, j])
                scores[test, j] = fitted.score([answers[model][i] for i in test])
        scorers[name + " (5-fold)"] = (scores, cost)
    verifier_cost: list[dict[str, Any]] = []
    for name, label in (("verifier", "verifier (next model, P(yes))"), ("consistency", "consistency")):
        spent = np.array([[s.get(name, np.nan) for s in meta["scorer_cpu_s"][m]] for m in ladder[:-1]]).T
        if np.isnan(spent).any():
            continue  # not recorded for every answer: run ``sizewise collect --scorers``
        scores = np.stack([make_scorer(name).score(answers[m]) for m in ladder[:-1]], axis=1)
        scorers[label] = (scores, cost + np.c_[np.where(cut[:, :-1], 0.0, spent), np.zeros(len(table))])
        if name == "verifier":  # reading an answer vs the same model writing its own
            verifier_cost = [
                {
                    "answer by": m,
                    "verifier": ladder[j + 1],
                    "verify CPU s": float(spent[:, j].mean()),
                    "answer CPU s": float(cost[:, j + 1].mean()),
                    "ratio": float(spent[:, j].mean() / cost[:, j + 1].mean()),
                }
                for j, m in enumerate(ladder[:-1])
            ]
    big_seconds = float(cost[:, -1].mean())
    result: dict[str, Any] = {
        "n": len(table),
        "ladder": ladder,
        "accuracy": {m: float(quality[:, j].mean()) for j, m in enumerate(ladder)},
        "seconds_per_question": {m: float(cost[:, j].mean()) for j, m in enumerate(ladder)},
        "scorers": {},
    }
    if verifier_cost:
        result["verifier_vs_generation"] = verifier_cost
    for name, (scores, paid) in scorers.items():
        front = pareto(sweep(quality, paid, scores, points=11, cut=cut))
        result["scorers"][name] = {
            "accuracy_at_half_big_time": quality_at_cost(front, 0.5 * big_seconds),
            "time_share_at_big_accuracy": cost_at_quality(front, float(quality[:, -1].mean())) / big_seconds,
            "scorer_cpu_s_per_scored_answer": _mean((paid - cost)[:, :-1][~cut[:, :-1]]),
            "auc_per_rung": {m: _auc(scores[:, j], quality[:, j]) for j, m in enumerate(ladder[:-1])},
        }
    return result


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def _with_scorer_data(table: OutcomeTable) -> OutcomeTable:
    """The questions on which every scorer recorded anywhere (``collect --scorers``) ran on every scored
    rung, so all scorers are compared on the same questions (a run cut short has a shorter tail)."""
    spent = table.meta["scorer_cpu_s"]
    scored = table.models[:-1]
    recorded = {name for m in scored for s in spent[m] for name in s}
    keep = np.array([all(recorded <= set(spent[m][i]) for m in scored) for i in range(len(table))])
    if keep.all():
        return table
    rows = np.flatnonzero(keep)
    subset = table.subset(rows)
    per_answer = ("logprobs", "finish_reasons", "verdicts", "samples", "scorer_cpu_s")
    subset.meta = {
        key: {m: [value[m][i] for i in rows] for m in table.models} if key in per_answer else value
        for key, value in table.meta.items()
    }
    return subset


def _auc(scores: np.ndarray, correct: np.ndarray) -> float | None:
    """ROC AUC of a scorer on one rung's answers (None when every answer is right or every one wrong)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(correct, scores)) if 0 < correct.mean() < 1 else None


def perfect_scorer_bound(accuracy: dict[str, float], seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Least CPU time any cascade could spend to reach the last model's accuracy, scorer perfect.

    For every sub-ladder ending in the last model: at least ``acc_last - sum(acc of earlier rungs)`` of
    the questions must reach each rung (earlier rungs can answer at most their own accuracy), so the
    time is at least ``sum(seconds_j * that share)``. A goal below every bound is out of reach for this
    ladder whatever the scorer.
    """
    models = list(accuracy)
    *lower, last = models
    target, top = accuracy[last], seconds[last]
    bounds = []
    for size in range(1, len(lower) + 1):
        for rungs in itertools.combinations(lower, size):
            ladder, time_s, solved = [*rungs, last], 0.0, 0.0
            for j, model in enumerate(ladder):
                time_s += seconds[model] * (1.0 if j == 0 else max(0.0, target - solved))
                solved += accuracy[model]
            bounds.append({"ladder": " -> ".join(ladder), "least time share at big accuracy": time_s / top})
    return bounds


def _or_none_fits(value: float) -> float | str:
    return "none fits" if np.isnan(value) else value


def _live_rows(live: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "scorer": name,
            # NaN: the first rung plus its scorer's own calls already cost more than half.
            "accuracy at half the big model's time": _or_none_fits(v["accuracy_at_half_big_time"]),
            "time share at the big model's accuracy": v["time_share_at_big_accuracy"],
            "scorer CPU s per scored answer": v.get("scorer_cpu_s_per_scored_answer", 0.0),
            **{f"AUC {m}": auc for m, auc in v.get("auc_per_rung", {}).items()},
        }
        for name, v in live["scorers"].items()
    ]


def _verifier_cost(live: dict[str, Any]) -> str:
    if "verifier_vs_generation" not in live:
        return ""
    return (
        "\nVerifier cost per rung (CPU s for the next model to read an answer and say yes/no vs CPU s for that "
        "model to answer the question itself):\n\n" + markdown_table(live["verifier_vs_generation"]) + "\n"
    )


def live_section(live: dict[str, Any]) -> str:
    models = [
        {"model": m, "accuracy": live["accuracy"][m], "CPU s/question": live["seconds_per_question"][m]}
        for m in live["ladder"]
    ]
    text = (
        f"\n### Live: embedded ladder on {live['n']} GSM8K test questions (`sizewise collect`)\n\n"
        "CPU seconds are each call's own (`time.process_time` of the collecting process, one llama.cpp thread per "
        "model), so other jobs do not add to them, but they grow when other jobs share the cores' caches: "
        "compare shares within one table, not seconds across runs.\n\n"
        + markdown_table(models)
        + "\n\n"
        + markdown_table(_live_rows(live))
        + "\n"
        + _verifier_cost(live)
    )
    subset = live.get("with_model_calls")
    if subset is not None:
        text += (
            f"\nEvery scorer, on the {subset['n']} questions where `collect --scorers verifier,consistency` "
            "recorded the verifier's and the samples' calls (cost includes them):\n\n"
            + markdown_table(
                [
                    {"model": m, "accuracy": subset["accuracy"][m], "CPU s/question": subset["seconds_per_question"][m]}
                    for m in subset["ladder"]
                ]
            )
            + "\n\n"
            + markdown_table(_live_rows(subset))
            + "\n"
            + _verifier_cost(subset)
        )
    return (
        text + "\nWith a perfect scorer (an upper bound on any scorer), the least CPU time that reaches the "
        "big model's accuracy, per sub-ladder:\n\n"
        + markdown_table(perfect_scorer_bound(live["accuracy"], live["seconds_per_question"]))
        + "\n"
    )
