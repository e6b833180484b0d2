"""``sizewise eval --report DIR``: one interactive HTML page (Plotly, offline) and the run's JSON.

The page holds: which threshold to use for a quality target, every router's quality vs share of
strong-model calls on one chart (hover: threshold, share, quality, cost), quality vs cost per 1,000
requests with each router's frontier of mixtures when costs are known, and the metrics table with
every column explained. ``report.json`` beside it holds the same numbers the charts draw.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.evaluation import html_page
from sizewise.evaluation.harness import EvalResult, RouterResult

#: Routers whose curve equals a reference line drawn on every chart.
REFERENCES = ("random", "oracle")
COLUMNS = ("apgr", "cpt20", "cpt50", "cpt80", "auc", "aiq", "cost_at_strong_quality")
#: Default quality target of the "which threshold" section: this fraction of the strong model's quality.
DEFAULT_TARGET = 0.95
EXPLAINED = {
    "apgr": "Average performance gap recovered: the mean over every share of strong calls (0 to 100%) of "
    "(quality - weak) / (strong - weak). Random routing scores 0.5; higher is better.",
    "cpt20": "Share of strong-model calls needed to recover 20% of the quality gap between the weak and the "
    "strong model. Random needs 20%; lower is better.",
    "cpt50": "Share of strong-model calls needed to recover 50% of the gap (random: 50%).",
    "cpt80": "Share of strong-model calls needed to recover 80% of the gap (random: 80%).",
    "auc": "RouteLLM's AUC: the area under quality vs share of strong calls, i.e. the mean quality over all "
    "shares. Not a ROC AUC: random scores (weak + strong) / 2, not 0.5.",
    "aiq": "RouterBench's average improvement in quality: the area under the router's best quality-vs-cost "
    "curve (mixes included) divided by the cost range.",
    "cost_at_strong_quality": "The cheapest cost at which the router matches the strong model's quality, as a "
    "share of the strong model's cost (lower is better; - when never reached).",
}


def format_value(key: str, value: float | None) -> str:
    """How the table shows a metric: shares and cost ratios as percentages, the rest with 3 decimals."""
    if value is None or not np.isfinite(value):
        return "–"
    if key.startswith("cpt") or key == "cost_at_strong_quality":
        return f"{100 * value:.1f}%"
    return f"{value:.3f}"


@dataclass
class Pick:
    """The cheapest point of a router's curve reaching the target quality."""

    router: str
    share: float
    quality: float
    threshold: float | None
    cost_per_1k: float | None
    ranked: bool = False  # the threshold is on within-fold ranks (cross-validation), not on raw scores


def ranked(item: RouterResult) -> bool:
    """Whether ``item``'s scores are within-fold ranks: fitted per fold in cross-validation (a router file
    or a transfer fit is scored once, on its own scale)."""
    return bool(item.fold_apgr)


def recommend(item: RouterResult, target: float) -> Pick | None:
    """The first (fewest strong calls) point of ``item``'s curve with quality >= ``target``; None if none."""
    curve = item.curve
    reached = np.flatnonzero(curve.quality >= target - 1e-12)
    if reached.size == 0:
        return None
    k = int(reached[0])
    threshold = None if curve.threshold is None or not np.isfinite(curve.threshold[k]) else float(curve.threshold[k])
    cost = None if curve.cost is None else float(curve.cost[k]) * 1000
    return Pick(item.name, float(curve.share[k]), float(curve.quality[k]), threshold, cost, ranked(item))


def _threshold_text(value: float, rank: bool) -> str:
    if not math.isfinite(value):
        return "none: every prompt to the weak model"
    return f"fold rank ≥ {value:.4g}" if rank else f"score ≥ {value:.4g}"


def _hover(item: RouterResult) -> list[list[str]]:
    curve, n = item.curve, item.curve.share.size
    thresholds = curve.threshold if curve.threshold is not None else [math.nan] * n
    costs = curve.cost * 1000 if curve.cost is not None else [math.nan] * n
    out = []
    for t, c in zip(thresholds, costs, strict=True):
        rule = "fixed share" if item.fixed_share is not None else _threshold_text(float(t), ranked(item))
        out.append([rule, "unknown" if not math.isfinite(c) else f"${c:.4f}"])
    return out


HOVER = (
    "<b>%{fullData.name}</b><br>threshold: %{customdata[0]}<br>strong calls: %{x:.1%}"
    "<br>quality: %{y:.4f}<br>cost per 1k requests: %{customdata[1]}<extra></extra>"
)


def share_figure(result: EvalResult, picks: list[Pick], target: float) -> Any:
    """Quality vs share of strong calls: every router on one chart, the references and the targets."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for curve, name, dash in ((result.random, "random", "dash"), (result.oracle, "oracle", "dot")):
        fig.add_scatter(
            x=curve.share.tolist(),
            y=curve.quality.tolist(),
            name=f"{name} (reference)",
            mode="lines",
            line={"dash": dash, "color": "grey" if name == "random" else "black", "width": 1},
            hovertemplate="<b>%{fullData.name}</b><br>strong calls: %{x:.1%}<br>quality: %{y:.4f}<extra></extra>",
        )
    for item in result.results:
        if item.name in REFERENCES:
            continue  # drawn above as the reference line
        fixed = item.fixed_share is not None
        fig.add_scatter(
            x=item.curve.share.tolist(),
            y=item.curve.quality.tolist(),
            name=item.name,
            mode="markers" if fixed else "lines",
            marker={"size": 10},
            customdata=_hover(item),
            hovertemplate=HOVER,
        )
    _mark_levels(fig, result, target)
    if picks:
        _mark_picks(fig, picks)
    fig.update_layout(
        title=f"{result.dataset}: quality vs share of calls to {result.strong} ({result.mode})",
        xaxis={"title": "share of requests sent to the strong model", "tickformat": ".0%", "range": [0, 1]},
        yaxis={"title": "quality (mean score)"},
        hovermode="closest",
        height=520,
        template="plotly_white",
    )
    return fig


def _mark_levels(fig: Any, result: EvalResult, target: float) -> None:
    """Each model alone and the quality target, as lines across the chart."""
    ends = ((result.random.q_weak, result.weak, "royalblue"), (result.random.q_strong, result.strong, "red"))
    for value, label, color in ends:
        fig.add_hline(
            y=value,
            line={"width": 1, "color": color},
            opacity=0.5,
            annotation_text=f"{label} alone {value:.3f}",
            annotation_position="bottom right",
        )
    fig.add_hline(
        y=target,
        line={"width": 1, "dash": "dashdot", "color": "darkorange"},
        annotation_text=f"target {target:.3f}",
        annotation_position="top left",
    )


def _mark_picks(fig: Any, picks: list[Pick]) -> None:
    """The points recommended for the target, one star a router."""
    fig.add_scatter(
        x=[p.share for p in picks],
        y=[p.quality for p in picks],
        name="recommended for the target",
        mode="markers",
        marker={"symbol": "star", "size": 15, "color": "darkorange", "line": {"width": 1}},
        customdata=[[p.router, "" if p.threshold is None else f"{p.threshold:.4g}"] for p in picks],
        hovertemplate="<b>%{customdata[0]}</b> at the target<br>threshold: %{customdata[1]}"
        "<br>strong calls: %{x:.1%}<br>quality: %{y:.4f}<extra></extra>",
    )


def cost_figure(result: EvalResult) -> Any:
    """Quality vs cost per 1,000 requests: each router's points and its frontier of mixtures."""
    import plotly.graph_objects as go

    from sizewise.evaluation.hull import mixture_frontier

    fig = go.Figure()
    colors = iter(["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880"] * 4)
    for item in result.results:
        if item.curve.cost is None:
            continue
        color, cost = next(colors), (item.curve.cost * 1000).tolist()
        quality = item.curve.quality.tolist()
        hover = [[*row, f"{s:.1%}"] for row, s in zip(_hover(item), item.curve.share, strict=True)]
        fig.add_scatter(
            x=cost,
            y=quality,
            name=item.name,
            legendgroup=item.name,
            mode="markers",
            customdata=hover,
            marker={"size": 5 if item.fixed_share is None else 11, "color": color, "opacity": 0.6},
            hovertemplate="<b>%{fullData.name}</b><br>threshold: %{customdata[0]}<br>strong calls: %{customdata[2]}"
            "<br>quality: %{y:.4f}<br>cost per 1k requests: $%{x:.4f}<extra></extra>",
        )
        if len(cost) > 1:
            front = mixture_frontier(cost, quality)
            fig.add_scatter(
                x=[cost[i] for i in front],
                y=[quality[i] for i in front],
                mode="lines",
                name=f"{item.name}: frontier of mixes",
                legendgroup=item.name,
                line={"color": color},
                hoverinfo="skip",
            )
    fig.update_layout(
        title=f"{result.dataset}: quality vs cost (a mix of two points lies on the line between them)",
        xaxis={"title": "USD per 1,000 requests", "tickformat": "$.4~f"},
        yaxis={"title": "quality (mean score)"},
        hovermode="closest",
        height=520,
        template="plotly_white",
    )
    return fig


def write_report(result: EvalResult, directory: str | Path, target: float = DEFAULT_TARGET) -> Path:
    """Write ``index.html`` (interactive, self-contained) and ``report.json`` into ``directory``;
    returns the HTML path. ``target``: the quality goal as a fraction of the strong model's quality."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**result.to_json(), "target_fraction": target}, indent=2))
    page = out / "index.html"
    page.write_text(render(result, target))
    return page


def render(result: EvalResult, target: float = DEFAULT_TARGET) -> str:
    """The report page as HTML."""
    goal = target * result.random.q_strong
    picks = [p for p in (recommend(item, goal) for item in result.results) if p is not None]
    setup = (
        f"{result.n_prompts} prompts ({result.n_dropped} dropped for unknown quality), {result.mode}; "
        f"weak model {result.weak} scores {result.random.q_weak:.3f}, strong model {result.strong} "
        f"{result.random.q_strong:.3f}."
    )
    parts = [html_page.paragraph(setup), "<h2>Which threshold do I use?</h2>", _threshold_section(result, picks, goal)]
    parts += ["<h2>Quality vs share of strong calls</h2>", html_page.chart(share_figure(result, picks, goal), "share")]
    if result.random.cost is not None:
        parts += ["<h2>Quality vs cost</h2>", html_page.chart(cost_figure(result), "cost")]
    columns = [("router", ""), *((c, EXPLAINED[c]) for c in COLUMNS)]
    rows = [[item.name, *(format_value(c, item.metrics.get(c)) for c in COLUMNS)] for item in result.results]
    parts += ["<h2>Metrics</h2>", html_page.table(columns, rows), html_page.definitions(columns)]
    return html_page.page(f"sizewise eval: {result.dataset}", "\n".join(parts))


def _threshold_section(result: EvalResult, picks: list[Pick], goal: float) -> str:
    cv = any(p.ranked for p in picks)
    intro = (
        f"Target: quality {goal:.3f} ({goal / result.random.q_strong:.0%} of {result.strong}'s "
        f"{result.random.q_strong:.3f}). "
        "Each router's cheapest point reaching it (the orange stars on the chart):"
    )
    columns = [
        ("router", ""),
        ("threshold", "Send a prompt to the strong model when the router's score is at least this."),
        ("strong calls", "Share of requests the strong model answers at this threshold."),
        ("quality", "Mean quality at this threshold."),
        ("USD per 1k requests", "Mean cost of 1,000 requests at this threshold."),
    ]
    rows = [
        [
            p.router,
            "–" if p.threshold is None else f"{p.threshold:.4g}{' (fold rank)' if p.ranked else ''}",
            f"{p.share:.1%}",
            f"{p.quality:.4f}",
            "–" if p.cost_per_1k is None else f"${p.cost_per_1k:.4f}",
        ]
        for p in picks
    ]
    missing = [item.name for item in result.results if item.name not in {p.router for p in picks}]
    notes = [f"Never reach the target: {', '.join(missing)}."] if missing else []
    if cv:
        notes.append(
            "In cross-validation every fold is a different fit, so scores are ranks within each fold (0 to 1) and "
            "the threshold is a rank: it says which share to send, not a score a saved router can use. Train the "
            "router (sizewise train) and turn the share into a score threshold with sizewise calibrate "
            f"--router-file ROUTER --target-quality {goal / result.random.q_strong:.2f} on outcomes it was not "
            "trained on."
        )
    notes_html = [html_page.paragraph(n, "note") for n in notes]
    return "\n".join([html_page.paragraph(intro), html_page.table(columns, rows), *notes_html])
