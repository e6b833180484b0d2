"""``cascade-logprob``'s built-in threshold, calibrated on the embedded ladder's own collected answers.

The live cascade climbs SmolLM2-135M -> Qwen2.5-Coder-0.5B -> 1.5B and accepts a rung's answer when
``exp(mean token logprob)`` (the unfitted logprob scorer) reaches one threshold. On the questions all
three models answered (``bench/collect_embedded.py``), half chooses the cheapest threshold whose
cascade keeps 95% of the 1.5B model's accuracy, the other half measures it, beside the old 0.6. Cost is
what the gateway bills: tokens times the built-in catalog's per-token prices (proportional to size).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sizewise.cascade.policy import run_cascade
from sizewise.cascade.scorers.logprob import logprob_features
from sizewise.evaluation.default_router import COLLECTED, collected_dir

LADDER = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
TARGET = 0.95
OLD_THRESHOLD = 0.6


def ladder_outcomes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(quality, cost) of shape (questions, 3) and the scores of the first two rungs, (questions, 2)."""
    from sizewise.cascade.collect import load_collected
    from sizewise.catalog import load_catalog
    from sizewise.errors import DataError

    catalog = load_catalog(None)
    prices = [(catalog.get(m).price_in, catalog.get(m).price_out) for m in LADDER]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for path in sorted(collected_dir().glob(COLLECTED)):
        try:
            table = load_collected(path, models=list(LADDER))
        except DataError:
            continue
        assert table.tokens_in is not None and table.tokens_out is not None
        cost = np.stack(
            [
                (table.tokens_in[:, j] * p_in + table.tokens_out[:, j] * p_out) / 1e6
                for j, (p_in, p_out) in enumerate(prices)
            ],
            axis=1,
        )
        logprobs = table.meta["logprobs"]
        score = np.stack(
            [[float(np.exp(logprob_features(lp)[0])) for lp in logprobs[m]] for m in LADDER[:-1]],  # type: ignore[index]
            axis=1,
        )
        parts.append((table.quality, cost, score))
    if not parts:
        raise DataError(f"no question answered by all of {', '.join(LADDER)} in {collected_dir()}")
    return tuple(np.vstack([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def _point(quality: np.ndarray, cost: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    out = run_cascade(quality, cost, score, [threshold, threshold])
    return {
        "quality_vs_big": float(out.quality.mean() / max(quality[:, -1].mean(), 1e-12)),
        "cost_vs_big": float(out.cost.mean() / cost[:, -1].mean()),
        "accepted_tiny": float((out.step == 0).mean()),
        "tiny_accepted_accuracy": float(quality[out.step == 0, 0].mean()) if (out.step == 0).any() else float("nan"),
    }


def calibrate_logprob(seed: int = 0) -> dict[str, Any]:
    """Choose the threshold on one half of the questions, measure it and the old one on the other."""
    quality, cost, score = ladder_outcomes()
    order = np.random.default_rng(seed).permutation(len(quality))
    choose, measure = order[: len(order) // 2], order[len(order) // 2 :]
    grid = np.unique(np.r_[np.quantile(score, np.linspace(0, 1, 101)), np.inf])
    reaching = [
        (float(np.mean(run_cascade(quality[choose], cost[choose], score[choose], [t, t]).cost)), float(t))
        for t in grid
        if _point(quality[choose], cost[choose], score[choose], float(t))["quality_vs_big"] >= TARGET
    ]
    threshold = min(reaching)[1] if reaching else float("inf")
    return {
        "questions": len(quality),
        "accuracy": [float(q) for q in quality.mean(axis=0)],
        "target_quality_vs_big": TARGET,
        "threshold": threshold,
        "measured": _point(quality[measure], cost[measure], score[measure], threshold),
        "old_threshold": OLD_THRESHOLD,
        "old_measured": _point(quality[measure], cost[measure], score[measure], OLD_THRESHOLD),
    }


def render(report: dict[str, Any]) -> str:
    """Markdown lines for docs/results.md."""
    new, old = report["measured"], report["old_measured"]
    acc = " / ".join(f"{a:.3f}" for a in report["accuracy"])
    return "\n".join(
        [
            f"`cascade-logprob` on the embedded ladder ({report['questions']} questions all three answered; accuracy "
            f"{acc} for SmolLM2-135M / 0.5B / 1.5B): threshold **{report['threshold']:.4f}** (chosen on half for "
            f"{report['target_quality_vs_big']:.0%} of the 1.5B model's accuracy, measured on the other half).",
            "",
            "| threshold | quality vs always-1.5B | cost vs always-1.5B | SmolLM2 answers accepted | their accuracy |",
            "|---|---|---|---|---|",
            *(
                f"| {t:.4f} | {p['quality_vs_big']:.3f} | {p['cost_vs_big']:.3f} | {p['accepted_tiny']:.3f} | "
                f"{p['tiny_accepted_accuracy']:.3f} |"
                for t, p in ((report["threshold"], new), (report["old_threshold"], old))
            ),
        ]
    )
