"""``sizewise calibrate --plot FILE``: what each threshold would do, with the chosen one marked.

Three panels over the router's score threshold: the share of prompts sent to the strong model, the mean
quality (with the weak and strong models' own levels) and, when the table has costs, USD per 1,000
requests. The curves are measured on the same held-out prompts as the numbers ``calibrate`` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def threshold_curve(scores: np.ndarray, q_weak: np.ndarray, q_strong: np.ndarray, cost: np.ndarray | None) -> dict:
    """Share, quality (and cost per 1k) for every distinct threshold of ``scores`` (``cost``: n x 2, weak/strong)."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    n = len(order)
    k = np.arange(n + 1)  # k prompts (the top-scored) go to the strong model
    quality = (q_weak.sum() + np.r_[0.0, np.cumsum((q_strong - q_weak)[order])]) / n
    thresholds = np.r_[np.nextafter(ranked[0], np.inf), ranked]  # score >= t: exactly the top k (ties aside)
    curve: dict[str, Any] = {"threshold": thresholds, "share": k / n, "quality": quality}
    if cost is not None:
        curve["cost_per_1k"] = (cost[:, 0].sum() + np.r_[0.0, np.cumsum((cost[:, 1] - cost[:, 0])[order])]) / n * 1000
    return curve


def plot_calibration(curve: dict, result: Any, path: str | Path, title: str) -> Path:
    """Write the PNG: share, quality and cost against the threshold, ``result`` (a CalibrationResult) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("share", "share to strong model"), ("quality", "quality")]
    if "cost_per_1k" in curve:
        panels.append(("cost_per_1k", "USD per 1,000 requests"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True)
    chosen = {"share": result.share, "quality": result.quality, "cost_per_1k": result.cost_per_1k}
    intervals = {"share": result.share_ci, "quality": result.quality_ci, "cost_per_1k": result.cost_ci}
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.step(curve["threshold"], curve[key], where="post", color="tab:blue", lw=1.2)
        low, high = intervals[key] or (chosen[key], chosen[key])
        ax.errorbar(
            [result.threshold], [chosen[key]], yerr=[[chosen[key] - low], [high - chosen[key]]],
            fmt="o", color="tab:red", capsize=4, zorder=4, label=f"chosen: {chosen[key]:.4g} at {result.threshold:.4g}",
        )  # fmt: skip
        if key == "quality":
            ax.axhline(result.weak_quality, color="gray", ls=":", lw=1, label=f"{result.weak} alone")
            ax.axhline(result.strong_quality, color="black", ls="--", lw=1, label=f"{result.strong} alone")
        ax.axvline(result.threshold, color="tab:red", lw=0.8, alpha=0.5)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel(f"threshold (score >= threshold goes to {result.strong})")
    axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
