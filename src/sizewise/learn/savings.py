"""Savings with quality: cost against always-big, and the share of the big model's quality kept.

Quality retained is ``R = sum_i q_served(i) / sum_i q_big(i)`` over the answered requests, estimated
from the judged ones, stratified by the model that served them (a router sends different prompts to
different models, and judging may not be spread evenly over them):

    R_hat = sum_k n_k * mean_k(a) / sum_k n_k * mean_k(b)

``n_k`` is the number of answered requests served by model ``k`` (from the request log), ``(a, b)``
are (served, big) quality pairs of stratum ``k``'s judged requests:

* served by the big model: ``(s, s)`` for its score ``s`` (the served answer *is* the big one);
* served by another model, both judged on an absolute scale: ``(s_served, s_big)``;
* served by another model, a pairwise verdict against the big one with ``w`` = P(served is better):
  ``(min(1, 2w), 1)``, i.e. a tie or a win keeps the big model's quality, a loss keeps none.

Means are weighted by ``1 / inclusion_p`` where an outcome's ``detail`` gives the probability that its
request was chosen for judging (shadow judging picks uncertain prompts more often than others; the
weight undoes that), else 1. A stratum with requests but no judged pair borrows the pooled means of the
judged strata of its kind (the big model's own, or the others'). The 95% interval is a stratified
percentile bootstrap (judged pairs resampled within each stratum, ``n_k`` fixed), seeded so the same
data give the same interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sizewise.learn.outcomes import Outcome

BOOTSTRAP = 2000


@dataclass
class Savings:
    """Cost against always-big and the estimated quality retained (None when nothing is judged)."""

    requests: int = 0
    cost_ratio: float | None = None
    quality: float | None = None
    low: float | None = None
    high: float | None = None
    judged: int = 0
    big: str | None = None
    strata: dict[str, dict[str, float]] = field(default_factory=dict)

    def line(self) -> str:
        """One sentence, e.g. "58% of always-big cost at 96% (93-98%) of its quality, from 412 judged requests"."""
        cost = (
            f"{self.cost_ratio:.0%} of always-big cost" if self.cost_ratio is not None else "cost vs always-big unknown"
        )
        if self.quality is None or self.low is None or self.high is None:
            return f"{cost}, quality unknown ({self.judged} judged)"
        interval = f"{self.low * 100:.0f}-{self.high * 100:.0f}%"
        return f"{cost} at {self.quality:.0%} ({interval}) of its quality, from {self.judged} judged requests"

    def compact(self) -> dict[str, Any]:
        """The few numbers the decision object carries."""
        interval = [_round(self.low), _round(self.high)] if self.low is not None else None
        return {
            "cost_ratio": _round(self.cost_ratio),
            "quality": _round(self.quality),
            "interval": interval,
            "judged": self.judged,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def infer_big(totals: Sequence[dict[str, Any]], outcomes: Iterable[Outcome] = ()) -> str | None:
    """The always-big model when nobody names it: the serving model whose cost equals its always-big cost
    (the most used such), else the model most often on the other side of a pairwise verdict."""
    same = [t for t in totals if t["cost"] > 0 and abs(t["cost"] - t["big_cost"]) <= 1e-12 + 1e-6 * abs(t["big_cost"])]
    if same:
        return str(max(same, key=lambda t: t["requests"])["model"])
    others: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.other_model:
            others[outcome.other_model] = others.get(outcome.other_model, 0) + 1
    return max(others, key=lambda m: others[m]) if others else None


def _scores(outcomes: list[Outcome]) -> tuple[dict[str, float], dict[str, float]]:
    """Absolute score per model (mean over sources of each source's latest), and pairwise
    ``other_model -> P(model better)`` as seen from each (model, other) pair's latest verdict."""
    latest: dict[tuple[str, str, str | None], Outcome] = {}
    for outcome in sorted(outcomes, key=lambda o: o.time):
        latest[(outcome.model, outcome.source, outcome.other_model)] = outcome
    absolute: dict[str, list[float]] = {}
    pairwise: dict[tuple[str, str], list[float]] = {}
    for (model, _, other), outcome in latest.items():
        if other is None:
            absolute.setdefault(model, []).append(outcome.score)
        else:
            pairwise.setdefault((model, other), []).append(outcome.score)
            pairwise.setdefault((other, model), []).append(1.0 - outcome.score)
    # Plain sums: a handful of scores per request, thousands of requests per refresh (np.mean costs 10x here).
    return {m: sum(v) / len(v) for m, v in absolute.items()}, {
        f"{a}\x00{b}": sum(v) / len(v) for (a, b), v in pairwise.items()
    }


def _weight(outcomes: list[Outcome]) -> float:
    """1 / the request's inclusion probability for judging, when an outcome records one; else 1."""
    for outcome in outcomes:
        p = outcome.detail.get("inclusion_p")
        if isinstance(p, int | float) and not isinstance(p, bool) and 0 < p <= 1:
            return 1.0 / float(p)
    return 1.0


Pairs = dict[str, list[tuple[float, float, float]]]


def judged_pairs(requests: Sequence[dict[str, Any]], outcomes: Iterable[Outcome], big: str) -> Pairs:
    """``served model -> [(q_served, q_big, weight), ...]`` over the judged, answered requests (module doc)."""
    by_request: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_request.setdefault(outcome.request_id, []).append(outcome)
    pairs: Pairs = {}
    for row in requests:
        served, judged = row.get("model"), by_request.get(row["request_id"])
        if not served or not judged or row.get("status") is None or row["status"] >= 400:
            continue
        absolute, pairwise = _scores(judged)
        pair: tuple[float, float] | None = None
        if served == big:
            pair = (absolute[big], absolute[big]) if big in absolute else None
        elif served in absolute and big in absolute:
            pair = (absolute[served], absolute[big])
        elif f"{served}\x00{big}" in pairwise:
            pair = (min(1.0, 2 * pairwise[f"{served}\x00{big}"]), 1.0)
        if pair is not None:
            pairs.setdefault(served, []).append((*pair, _weight(judged)))
    return pairs


def estimate(
    totals: Sequence[dict[str, Any]],
    pairs: Pairs,
    big: str | None,
    *,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> Savings:
    """The stratified ratio estimate of quality retained with its bootstrap interval, and the cost ratio."""
    requests = sum(int(t["requests"]) for t in totals)
    cost, big_cost = sum(t["cost"] for t in totals), sum(t["big_cost"] for t in totals)
    out = Savings(requests=requests, cost_ratio=cost / big_cost if big_cost > 0 else None, big=big)
    out.judged = sum(len(p) for p in pairs.values())
    counts = {str(t["model"]): int(t["requests"]) for t in totals if t["requests"]}
    for model, judged in pairs.items():  # judged strata missing from the totals (another time window) count too
        counts.setdefault(model, 0)
        out.strata[model] = {"requests": counts[model], "judged": len(judged)}
    if big is None or out.judged == 0 or not _estimable(counts, pairs, big):
        return out
    rng = np.random.default_rng(seed)
    a_sums, b_sums = _stratum_sums(counts, pairs, big, rng, bootstrap)
    point = a_sums[:, 0].sum() / b_sums[:, 0].sum()
    replicates = a_sums[:, 1:].sum(axis=0) / np.maximum(b_sums[:, 1:].sum(axis=0), 1e-300)
    out.quality = float(point)
    out.low, out.high = (float(v) for v in np.percentile(replicates, [2.5, 97.5]))
    return out


def _estimable(counts: dict[str, int], pairs: Pairs, big: str) -> bool:
    """Every stratum with requests has judged pairs of its own or of its kind to borrow."""
    others_judged = any(model != big and judged for model, judged in pairs.items())
    return all(n == 0 or model == big or others_judged for model, n in counts.items())


def _stratum_sums(
    counts: dict[str, int], pairs: Pairs, big: str, rng: Any, bootstrap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per stratum, ``n_k * mean(a)`` and ``n_k * mean(b)``: column 0 the estimate, then ``bootstrap`` replicates."""
    means: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for model, judged in pairs.items():
        values = np.asarray(judged, dtype=float)
        wa, wb, w = values[:, 0] * values[:, 2], values[:, 1] * values[:, 2], values[:, 2]
        draws = np.empty((bootstrap, 2))
        for start in range(0, bootstrap, 256):  # bounded memory for large judged sets
            rows = rng.integers(0, len(values), size=(min(256, bootstrap - start), len(values)))
            total = w[rows].sum(axis=1)
            draws[start : start + len(rows)] = np.stack([wa[rows].sum(axis=1) / total, wb[rows].sum(axis=1) / total], 1)
        point_a, point_b = wa.sum() / w.sum(), wb.sum() / w.sum()
        means[model] = (np.concatenate([[point_a], draws[:, 0]]), np.concatenate([[point_b], draws[:, 1]]))
    a_rows, b_rows = [], []
    for model, n in counts.items():
        if n == 0:
            continue
        if model in means:
            a_mean, b_mean = means[model]
        else:  # borrow the pooled means of the judged strata of its kind, weighted by their judged counts
            kind = [m for m in means if (m == big) == (model == big)] or list(means)
            weights = np.array([len(pairs[m]) for m in kind], dtype=float)[:, None]
            a_mean = (np.stack([means[m][0] for m in kind]) * weights).sum(axis=0) / weights.sum()
            b_mean = (np.stack([means[m][1] for m in kind]) * weights).sum(axis=0) / weights.sum()
            if model == big:  # the big model's own answers: served quality is the big model's quality
                a_mean = b_mean
        a_rows.append(n * a_mean)
        b_rows.append(n * b_mean)
    return np.stack(a_rows), np.stack(b_rows)


def savings_of(
    store: Any, *, big: str | None = None, since: float | None = None, seed: int = 0, api_key: str | None = None
) -> Savings:
    """The savings estimate over an :class:`~sizewise.learn.outcomes.OutcomeStore`'s log (from ``since`` on;
    only the requests made with key name ``api_key`` when given, e.g. for that client's dashboard)."""
    totals = store.served_totals(since, api_key)
    outcomes = store.outcomes()
    big = big or infer_big(totals, outcomes)
    pairs = judged_pairs(store.judged_requests(since, api_key), outcomes, big) if big else {}
    return estimate(totals, pairs, big, seed=seed)
