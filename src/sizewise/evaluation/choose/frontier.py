"""The cost-quality frontier of measured models, its plot and the markdown report of ``sizewise choose``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sizewise.evaluation.choose import ChooseReport


def pareto(rows: Sequence[Any]) -> list[str]:
    """Eligible models on the cost-quality frontier of mixtures (:mod:`sizewise.evaluation.hull`), cheapest
    first: a model that a random mix of two others beats on both cost and quality is not on it."""
    from sizewise.evaluation.hull import mixture_frontier

    eligible = [r for r in rows if r.eligible]
    if not eligible:
        return []
    front = mixture_frontier([r.cost_per_1k for r in eligible], [r.quality for r in eligible])
    return [eligible[i].model for i in front]


def plot_frontier(report: ChooseReport, path: str) -> str:
    """Cost-quality plot (PNG): every model, the frontier of mixtures (curved on the log cost axis, as mixes
    are), the policies and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from sizewise.evaluation.choose.html import cost_floor, log_ticks
    from sizewise.evaluation.hull import mixture_path

    floor = cost_floor(report)
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in report.rows:
        ax.scatter(max(r.cost_per_1k, floor), r.quality, c="tab:blue" if r.eligible else "lightgray", zorder=3)
        ax.annotate(
            r.model, (max(r.cost_per_1k, floor), r.quality), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    front = [r for name in report.frontier for r in report.rows if r.model == name]
    if len(front) > 1:
        xs, ys = mixture_path([r.cost_per_1k for r in front], [r.quality for r in front], log_x=True, floor=floor)
        ax.plot(xs, ys, "b--", label="frontier of mixes")
    for p in report.policies:
        if p.curve:
            costs, qualities = zip(*p.curve, strict=True)
            ax.plot([max(x, floor) for x in costs], qualities, "-", alpha=0.6, label=f"{p.kind} curve")
        if math.isfinite(p.quality):
            ax.scatter(max(p.cost_per_1k, floor), p.quality, marker="*", s=160, c="tab:orange", zorder=4, label=p.kind)
    ax.axhline(report.target, color="tab:red", lw=1, label=f"target {report.target:.3f}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlapped the major ones on short ranges
    low, high = ax.get_xlim()
    ticks = log_ticks(low, high)
    if ticks:  # 1-2-5 per decade, in dollars, instead of one 10^k label per decade
        ax.set_xticks(ticks, [f"${t:.4g}" for t in ticks])
    ax.set_xlabel("USD per 1,000 requests (log)")
    ax.set_ylabel("quality")
    ax.set_title(f"{report.task}: cost vs quality")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_markdown(report: ChooseReport, plot: str | None = None) -> str:
    """The report as markdown: table, frontier, recommendation and config snippet."""
    c = report.constraints
    limits = [
        f"max p95 latency {c.max_latency_ms:g} ms" if c.max_latency_ms is not None else None,
        f"budget ${c.budget_per_1k:g} per 1,000 requests" if c.budget_per_1k is not None else None,
        f"local memory {c.memory_gb:g} GB" if c.memory_gb is not None else None,
        "must stay local" if c.local_only else None,
    ]
    lines = [
        f"# sizewise choose: {report.task}",
        "",
        f"{report.prompts} prompts; quality target {report.target_text}; constraints: "
        + (", ".join(x for x in limits if x) or "none"),
        "",
        "| model | quality | $ per 1k requests | p95 latency ms | memory GB | location | meets target | why not |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(report.rows, key=lambda r: (r.cost_per_1k, r.quality)):
        latency = "" if r.latency_p95_ms is None else f"{r.latency_p95_ms:.0f}"
        memory = "" if r.memory_gb is None else f"{r.memory_gb:.1f}"
        lines.append(
            f"| {r.model} | {r.quality:.3f} | {r.cost_per_1k:.4f} | {latency} | {memory} | {r.location} | "
            f"{'yes' if r.meets_target else 'no'} | {r.why_not} |"
        )
    lines += [
        "",
        f"Cost-quality frontier (eligible models, cheapest first): {' -> '.join(report.frontier) or '(none)'}",
    ]
    for p in report.policies:
        lines.append(
            f"\nPolicy measured on held-out prompts: **{p.kind}**: quality {p.quality:.3f}, "
            f"${p.cost_per_1k:.4f} per 1k. {p.description}"
        )
    if plot:
        lines += ["", f"![cost-quality frontier]({plot})"]
    lines += ["", "## Recommendation", "", report.recommendation]
    if report.snippet:
        lines += ["", "```yaml", report.snippet.rstrip(), "```"]
    return "\n".join(lines) + "\n"
