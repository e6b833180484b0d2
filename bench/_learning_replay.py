"""Replay one stream through route -> shadow-judge -> retrain -> guard -> promote, as the gateway would.

Each request is routed by the current router at its threshold and served (its recorded outcome and cost
count). While fewer than ``cap`` requests are judged, a request is judged with probability pi: ``uniform``
pi = share; ``active`` a fifth of that share uniformly and the rest weighted toward requests whose score
rank lies near the threshold's (where the router is least sure), weight 1/pi in every estimate. A judged
request costs a shadow call of the other model; its verdicts are the recorded outcomes (``noise`` flips
each at random). At each checkpoint the router is retrained on all verdicts so far
(:func:`sizewise.learn.retrain.retrain`), promoted only when the guard passes, and its threshold is
recalibrated on the judged traffic to the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench._learning_streams import Stream
from sizewise.core.table import OutcomeTable
from sizewise.evaluation.metrics import apgr, routing_curve
from sizewise.learn.retrain import Target, retrain
from sizewise.routers.base import Router
from sizewise.routers.retrained import RetrainedRouter

CHECKPOINTS = (100, 250, 500, 1000, 2000)
NEXT = 1000  # a promotion is judged on this many of the requests that follow it


@dataclass
class Setup:
    """One replay's settings (the same for every stream: nothing is tuned per dataset)."""

    target: Target
    judge_share: float = 0.8
    cap: int = 2000
    selection: str = "uniform"
    noise: float = 0.0
    shrink: float = 300.0
    seed: int = 0


@dataclass
class Replay:
    """What one replay measured."""

    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)


def _apgr(scores: np.ndarray, stream: Stream, rows: slice) -> float | None:
    q_w, q_s = stream.q_weak[rows], stream.q_strong[rows]
    if len(q_w) < 20 or abs(q_s.mean() - q_w.mean()) < 1e-9:
        return None
    return float(apgr(routing_curve(scores[rows], q_w, q_s)))


def _quality_at_share(scores: np.ndarray, stream: Stream, rows: slice, share: float) -> float:
    s, q_w, q_s = scores[rows], stream.q_weak[rows], stream.q_strong[rows]
    k = round(share * len(s))
    strong = np.zeros(len(s), dtype=bool)
    strong[np.argsort(-s, kind="stable")[:k]] = True
    return float(np.where(strong, q_s, q_w).mean())


def _judge_probability(setup: Setup, rank: float, threshold_rank: float) -> float:
    if setup.selection == "uniform":
        return setup.judge_share
    near = max(0.0, 1.0 - 2.0 * abs(rank - threshold_rank))  # 1 at the threshold, 0 half the ranks away
    return min(1.0, 0.2 * setup.judge_share + 0.8 * setup.judge_share * 2.0 * near)


def _table(stream: Stream, rows: list[int], verdicts: np.ndarray) -> OutcomeTable:
    prompts = pd.DataFrame({"prompt_id": [str(r) for r in rows], "text": [stream.texts[r] for r in rows]})
    cost = np.column_stack([stream.c_weak[rows], stream.c_strong[rows]])
    return OutcomeTable(stream.name, prompts, ["weak", "strong"], verdicts, cost=cost, pair=("weak", "strong"))


def replay(stream: Stream, start: Router, base_scores: np.ndarray, phi: np.ndarray, setup: Setup) -> Replay:
    """Run ``stream`` from ``start``; ``base_scores``/``phi``: the start router's scores and the features."""
    rng = np.random.default_rng(setup.seed)
    n = len(stream.texts)
    router: Router = start
    scores = base_scores.copy()
    threshold = float(start.provenance_["calibration"]["targets"][setup.target.key]["threshold"])
    out = Replay()
    out.checkpoints.append({"judged": 0, "at": 0, "apgr_rest": _apgr(scores, stream, slice(0, n)), "promoted": False})
    judged: list[int] = []
    verdicts: list[tuple[float, float]] = []
    weights: list[float] = []
    served_q = served_c = shadow_c = 0.0
    seen_scores: list[float] = []
    for i in range(n):
        strong = scores[i] >= threshold
        served_q += stream.q_strong[i] if strong else stream.q_weak[i]
        served_c += stream.c_strong[i] if strong else stream.c_weak[i]
        seen_scores.append(scores[i])
        if len(judged) >= setup.cap:
            continue
        recent = np.asarray(seen_scores[-500:])
        rank, threshold_rank = float((recent < scores[i]).mean()), float((recent < threshold).mean())
        pi = _judge_probability(setup, rank, threshold_rank)
        if rng.random() >= pi:
            continue
        shadow_c += stream.c_weak[i] if strong else stream.c_strong[i]  # the answer the client did not get
        truth = (stream.q_weak[i], stream.q_strong[i])
        flips = rng.random(2) < setup.noise
        verdicts.append(tuple(1.0 - q if f else q for q, f in zip(truth, flips, strict=True)))  # type: ignore[arg-type]
        judged.append(i)
        weights.append(1.0 / pi)
        if len(judged) in CHECKPOINTS:
            router, scores, threshold = _checkpoint(
                stream,
                setup,
                out,
                router,
                threshold,
                base_scores,
                phi,
                i,
                judged,
                np.array(verdicts),
                np.array(weights),
                scores,
            )
    out.totals = {
        "requests": n,
        "judged": len(judged),
        "quality_vs_strong": served_q / float(stream.q_strong.sum()),
        "cost_vs_strong": (served_c + shadow_c) / float(stream.c_strong.sum()),
        "cost_vs_strong_llm_judge": (served_c + shadow_c + 2 * float(stream.c_strong[judged].sum()))
        / float(stream.c_strong.sum()),
        "served_cost_vs_strong": served_c / float(stream.c_strong.sum()),
        "shadow_cost_vs_strong": shadow_c / float(stream.c_strong.sum()),
    }
    return out


def _checkpoint(
    stream: Stream,
    setup: Setup,
    out: Replay,
    router: Router,
    threshold: float,
    base_scores: np.ndarray,
    phi: np.ndarray,
    i: int,
    judged: list[int],
    verdicts: np.ndarray,
    weights: np.ndarray,
    scores: np.ndarray,
) -> tuple[Router, np.ndarray, float]:
    """Retrain on every verdict so far; promote through the guard; recalibrate; record the rest's APGR."""
    rows = np.array(judged)
    cached = {"base": base_scores[rows], "phi": phi[rows], "incumbent": scores[rows]}
    result = retrain(
        router,
        _table(stream, judged, verdicts),
        setup.target,
        shrink=setup.shrink,
        weights=weights,
        seed=setup.seed,
        n_boot=1000,
        cached=cached,
    )
    n, rest, following = len(stream.texts), slice(i + 1, len(stream.texts)), slice(i + 1, i + 1 + NEXT)
    if result.promote:
        candidate: RetrainedRouter = result.candidate
        new_scores = candidate.score_from(base_scores, phi)
        share = result.comparison.share
        out.promotions.append(
            {
                "judged": len(judged),
                "at": i + 1,
                "next_n": min(NEXT, n - i - 1),
                "guard_diff": result.comparison.diff,
                "guard_ci": result.comparison.ci,
                "next_apgr_incumbent": _apgr(scores, stream, following),
                "next_apgr_candidate": _apgr(new_scores, stream, following),
                "next_quality_incumbent": _quality_at_share(scores, stream, following, share),
                "next_quality_candidate": _quality_at_share(new_scores, stream, following, share),
            }
        )
        router, scores = candidate, new_scores
        threshold = float(result.calibration["targets"][setup.target.key]["threshold"])
    elif result.incumbent_honest:  # recalibrated on traffic it never trained on; a retrained one keeps its own
        threshold = float(result.incumbent_calibration["targets"][setup.target.key]["threshold"])
    out.checkpoints.append(
        {
            "judged": len(judged),
            "at": i + 1,
            "apgr_rest": _apgr(scores, stream, rest),
            "promoted": result.promote,
            "reason": result.comparison.reason,
        }
    )
    return router, scores, threshold
