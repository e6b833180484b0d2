"""How good a quality predictor the MMLU-Pro cost goals need (bench/routers.py, part ``headroom``).

The two goals ask for the best single model's accuracy at <= ``GOAL_SHARE`` of its cost, and ``GOAL_ABOVE``
at no more than its cost. Three views, on the recorded outcomes:

- **Ours**: out-of-fold per-model predictions of ``ROUTER`` (the best N-model router): their mean per-model
  AUC, and their *disagreement AUC* on the pair (cheap model, best model): among prompts where exactly one of
  the two is right, how well ``pred[best] - pred[cheap]`` ranks the best model's wins first. Picking a model
  per prompt needs this relative signal; a per-model AUC mostly measures shared prompt difficulty.
- **Simulated N-model predictor**: per model, score = separation x correct + N(0, 1) with independent noise
  (AUC = Phi(separation / sqrt 2)), turned into the exact posterior and routed like ours (max quality -
  lambda x cost). Independent noise is optimistic: it tells the router which model is right on a prompt,
  which real predictors, whose errors move together across models, do not. The AUC it needs is a lower
  bound on what a real predictor needs, not a promise.
- **Simulated pair router** (cheap -> best, the cheap model being the most accurate one within the cost goal):
  a binormal score on the gain (best right and cheap wrong vs the reverse) with a given disagreement AUC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sizewise.evaluation.table import OutcomeTable

ROUTER = "knn"
GOAL_SHARE = 0.30
GOAL_ABOVE = 0.72
AUC_GRID = np.round(np.arange(0.62, 0.995, 0.01), 2)
DRAWS = 3


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _n_model(pred: np.ndarray, table: OutcomeTable, best: int) -> tuple[float, float]:
    """(cost share of the best model to reach its accuracy, best accuracy within its cost) of ``pred``."""
    from bench._routers_eval import n_model_points, n_model_summary

    assert table.cost is not None
    model_cost = np.nanmean(table.cost, axis=0) * 1000
    model_quality = np.nanmean(table.quality, axis=0)
    points = n_model_points(pred, model_cost, table, model_cost)
    s = n_model_summary(points, model_quality[best], model_cost[best])
    share, above = s["cost_share_for_best_single_accuracy"], s["best_accuracy_within_best_single_cost"]
    return (np.nan if share is None else share), (np.nan if above is None else above)


def _binormal_posterior(correct: np.ndarray, auc: float, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.stats import norm

    separation = np.sqrt(2) * norm.ppf(auc)
    score = separation * correct + rng.standard_normal(correct.shape)
    right, wrong = base * norm.pdf(score - separation), (1 - base) * norm.pdf(score)
    posterior: np.ndarray = right / (right + wrong)
    return posterior


def _pair_cost_share(quality: np.ndarray, cost: np.ndarray, score: np.ndarray, target: float) -> float:
    """Least cost (share of always calling the best model) at which sending the top of ``score`` to the
    best model (column 1) instead of the cheap one (column 0) reaches ``target`` accuracy."""
    order = np.argsort(-score, kind="stable")
    q = quality[order]
    c = cost[order]
    n = len(q)
    # Quality and cost with the first k prompts (by score) on the best model, for every k.
    q_k = q[:, 0].sum() + np.r_[0.0, np.cumsum(q[:, 1] - q[:, 0])]
    c_k = c[:, 0].sum() + np.r_[0.0, np.cumsum(c[:, 1] - c[:, 0])]
    ok = q_k / n >= target - 1e-12
    return float(c_k[ok].min() / c[:, 1].sum()) if ok.any() else float("nan")


def _first_auc(measure: Any, meets: Any) -> float | None:
    """Least AUC of the grid whose mean measure over ``DRAWS`` draws meets the goal."""
    for auc in AUC_GRID:
        if meets(np.nanmean([measure(float(auc), draw) for draw in range(DRAWS)])):
            return float(auc)
    return None


def headroom(table: OutcomeTable, pred: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """The headroom table's numbers for ``table`` (quality in {0, 1}, cost recorded) and out-of-fold ``pred``."""
    assert table.cost is not None
    quality = np.nan_to_num(table.quality)
    correct = quality >= 0.5
    cost = np.where(np.isnan(table.cost), np.nanmean(table.cost, axis=0), table.cost)
    model_cost = cost.mean(axis=0)
    accuracy = correct.mean(axis=0)
    best = int(np.argmax(accuracy))
    affordable = np.flatnonzero(model_cost <= GOAL_SHARE * model_cost[best])
    cheap = int(affordable[np.argmax(accuracy[affordable])])
    one_right = correct[:, cheap] != correct[:, best]
    rng = np.random.default_rng(seed)

    ours_share, ours_above = _n_model(pred, table, best)
    per_model_auc = [_auc(correct[:, j], pred[:, j]) for j in range(len(table.models))]

    def sim(auc_per_model: Any) -> tuple[float, float]:
        return _n_model(_binormal_posterior(correct, auc_per_model, accuracy, rng), table, best)

    at_ours = sim(np.array(per_model_auc))
    n_share = _first_auc(lambda auc, _: sim(auc)[0], lambda v: v <= GOAL_SHARE)
    n_above = _first_auc(lambda auc, _: sim(auc)[1], lambda v: v >= GOAL_ABOVE)

    def implied_disagreement(auc: Any) -> float | None:
        if auc is None:
            return None
        posts = [_binormal_posterior(correct, auc, accuracy, rng) for _ in range(DRAWS)]
        return float(np.mean([_auc(correct[one_right, best], p[one_right, best] - p[one_right, cheap]) for p in posts]))

    pair_q, pair_c = quality[:, [cheap, best]], cost[:, [cheap, best]]
    gain = (correct[:, best].astype(int) - correct[:, cheap].astype(int)) / 2.0

    def pair_share(auc: float, _: int) -> float:
        from scipy.stats import norm

        score = np.sqrt(2) * norm.ppf(auc) * gain + rng.standard_normal(len(gain))
        return _pair_cost_share(pair_q, pair_c, score, accuracy[best])

    ours_pair = pred[:, best] - pred[:, cheap]
    return {
        "router": ROUTER,
        "best": table.models[best],
        "cheap": table.models[cheap],
        "goal_share": GOAL_SHARE,
        "goal_above": GOAL_ABOVE,
        "ours": {
            "per_model_auc": float(np.mean(per_model_auc)),
            "disagreement_auc": _auc(correct[one_right, best], ours_pair[one_right]),
            "cost_share": ours_share,
            "best_within_cost": ours_above,
            "pair_cost_share": _pair_cost_share(pair_q, pair_c, ours_pair, accuracy[best]),
        },
        "simulated_at_our_auc": {
            "cost_share": at_ours[0],
            "best_within_cost": at_ours[1],
            "disagreement_auc": implied_disagreement(np.array(per_model_auc)),
        },
        "n_model_auc_needed": {
            "cost_share": n_share,
            "cost_share_disagreement_auc": implied_disagreement(n_share),
            "best_within_cost": n_above,
            "best_within_cost_disagreement_auc": implied_disagreement(n_above),
        },
        "pair_disagreement_auc_needed": _first_auc(pair_share, lambda v: v <= GOAL_SHARE),
    }


def headroom_lines(h: dict[str, Any]) -> list[str]:
    """Markdown for the headroom table (empty when the part has not run)."""
    if not h:
        return []
    ours, at, need = h["ours"], h["simulated_at_our_auc"], h["n_model_auc_needed"]

    def pct(v: float | None) -> str:
        return "not reached" if v is None or np.isnan(v) else f"{100 * v:.0f}%"

    def num(v: float | None) -> str:
        return "beyond 0.99" if v is None else f"{v:.3f}"

    best, cheap, share = h["best"], h["cheap"], pct(h["goal_share"])
    return [
        "",
        "#### How good a quality predictor the goals need (`--parts headroom`; module docstring of "
        "bench/_routers_headroom.py)",
        "",
        f"Per-model AUC: how well a router's predicted quality for a model ranks that model's right answers "
        f"first. Disagreement AUC: among prompts where exactly one of {cheap} and {best} is right, how well the "
        f"predicted difference ranks {best}'s wins first. Simulated predictors are binormal; the N-model one has "
        "independent noise per model, which makes it optimistic (real errors move together across models: at our "
        "own per-model AUC it needs far less than we do), so the AUC it needs is a lower bound.",
        "",
        f"| predictor | per-model AUC | disagreement AUC | cost share to reach {best} | best accuracy at <= its cost |",
        "|---|---|---|---|---|",
        f"| ours ({h['router']}, 5-fold CV) | {ours['per_model_auc']:.3f} | {ours['disagreement_auc']:.3f} | "
        f"{pct(ours['cost_share'])} | {ours['best_within_cost']:.3f} |",
        f"| simulated N-model, at our per-model AUC | {ours['per_model_auc']:.3f} | {num(at['disagreement_auc'])} | "
        f"{pct(at['cost_share'])} | "
        f"{at['best_within_cost']:.3f} |",
        f"| simulated N-model, least AUC for <= {share} | {num(need['cost_share'])} | "
        f"{num(need['cost_share_disagreement_auc'])} | <= {share} |  |",
        f"| simulated N-model, least AUC for >= {h['goal_above']} | {num(need['best_within_cost'])} | "
        f"{num(need['best_within_cost_disagreement_auc'])} |  | >= {h['goal_above']} |",
        f"| ours as a pair router {cheap} -> {best} |  | {ours['disagreement_auc']:.3f} | "
        f"{pct(ours['pair_cost_share'])} |  |",
        f"| simulated pair router, least AUC for <= {share} |  | {num(h['pair_disagreement_auc_needed'])} | "
        f"<= {share} |  |",
    ]
