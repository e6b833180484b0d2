"""``sizewise choose --out DIR``: ``frontier.html``, the cost-quality chart to explore (Plotly, offline).

Cost runs on a log axis (models' prices span orders of magnitude), so the frontier of mixtures is drawn
as what it is there: a random mix of two models lies on the straight line between them in linear cost,
which is a curve on the log axis (:func:`sizewise.evaluation.hull.mixture_path`). Hover on any point
gives its model or setting, quality, cost, latency and why it is not eligible.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sizewise.evaluation import html_page
from sizewise.evaluation.hull import mixture_path

if TYPE_CHECKING:
    from sizewise.evaluation.choose import ChooseReport, ModelRow

MODEL_HOVER = (
    "<b>%{text}</b><br>quality: %{y:.4f}<br>cost per 1k requests: $%{customdata[0]}<br>p95 latency: "
    "%{customdata[1]}<br>memory: %{customdata[2]}<br>%{customdata[3]}<extra></extra>"
)


def cost_floor(report: ChooseReport) -> float:
    """Where a free model (cost 0) sits on the log axis: a tenth of the cheapest priced point, else 1e-4."""
    costs = [r.cost_per_1k for r in report.rows] + [c for p in report.policies for c, _ in p.curve]
    costs += [p.cost_per_1k for p in report.policies if math.isfinite(p.cost_per_1k)]
    positive = [c for c in costs if c > 0]
    return min(positive) / 10 if positive else 1e-4


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values 1-2-5 per decade from ``low`` to ``high`` (Plotly's log ticks crowd and overlap on ranges
    of a few decades); empty when fewer than three fall inside."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    ticks = [m * 10.0**e for e in range(first, last + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if low * 0.999 <= t <= high * 1.001]
    if len(inside) < 3:
        return []  # a short range: Plotly's own ticks do better
    return inside if len(inside) <= 12 else [t for t in inside if str(t).lstrip("0.").startswith("1")]


def _label_sides(rows: list[ModelRow]) -> list[str]:
    """Labels above and below in turn, by cost, so neighbours' names do not print over each other."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i].cost_per_1k, rows[i].quality))
    sides = [""] * len(rows)
    for rank, i in enumerate(order):
        sides[i] = "top center" if rank % 2 == 0 else "bottom center"
    return sides


def _model_hover(row: ModelRow) -> list[str]:
    latency = "–" if row.latency_p95_ms is None else f"{row.latency_p95_ms:.0f} ms"
    memory = "–" if row.memory_gb is None else f"{row.memory_gb:.1f} GB ({row.location})"
    status = (
        "meets the target" if row.meets_target else ("eligible" if row.eligible else f"not eligible: {row.why_not}")
    )
    return [f"{row.cost_per_1k:.4f}", latency, memory, status]


def frontier_figure(report: ChooseReport) -> Any:
    """Models, the frontier of mixtures, the policies' curves and points, the target and the recommendation."""
    import plotly.graph_objects as go

    floor = cost_floor(report)
    fig = go.Figure()
    for eligible in (True, False):
        rows = [r for r in report.rows if r.eligible == eligible]
        if rows:
            fig.add_scatter(
                x=[max(r.cost_per_1k, floor) for r in rows],
                y=[r.quality for r in rows],
                text=[r.model for r in rows],
                customdata=[_model_hover(r) for r in rows],
                name="models" if eligible else "models ruled out by the constraints",
                mode="markers+text",
                textposition=_label_sides(rows),
                marker={"size": 11, "color": "#1f77b4" if eligible else "lightgray", "line": {"width": 1}},
                hovertemplate=MODEL_HOVER,
            )
    front = [r for name in report.frontier for r in report.rows if r.model == name]
    if len(front) > 1:
        xs, ys = mixture_path([r.cost_per_1k for r in front], [r.quality for r in front], log_x=True, floor=floor)
        fig.add_scatter(
            x=xs,
            y=ys,
            name="frontier of mixes (a random mix of two models)",
            mode="lines",
            line={"dash": "dash", "color": "#1f77b4"},
            hovertemplate="mix: quality %{y:.4f} at $%{x:.4f} per 1k<extra></extra>",
        )
    for p in report.policies:
        _add_policy(fig, p, floor, chosen=p is report.policy)
    fig.add_hline(
        y=report.target,
        line={"width": 1, "color": "red"},
        annotation_text=f"target {report.target:.3f}",
        annotation_position="bottom left",
    )
    xs_all = [x for trace in fig.data for x in trace.x]
    ticks = log_ticks(min(xs_all), max(xs_all))
    margin = 0.12 * max(math.log10(max(xs_all) / min(xs_all)), 1.0)  # room for the end labels
    span = [math.log10(min(xs_all)) - margin, math.log10(max(xs_all)) + margin]
    fig.update_layout(
        title=f"{report.task}: quality vs cost, {report.prompts} prompts",
        xaxis={
            "title": "USD per 1,000 requests (log scale)",
            "type": "log",
            "range": span,
            "tickvals": ticks or None,
            "ticktext": [f"${t:.4g}" for t in ticks] or None,
            "tickformat": "$.3~g",
        },
        yaxis={"title": "quality (mean score)"},
        hovermode="closest",
        height=560,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _add_policy(fig: Any, policy: Any, floor: float, chosen: bool) -> None:
    if policy.curve:
        xs, ys = zip(*policy.curve, strict=True)
        settings = policy.settings or [math.nan] * len(xs)
        label = "threshold" if policy.kind == "router" else "quality target"
        fig.add_scatter(
            x=[max(x, floor) for x in xs],
            y=list(ys),
            name=f"{policy.kind}: every setting (held-out prompts)",
            mode="lines+markers",
            marker={"size": 5},
            opacity=0.7,
            customdata=[f"{s:.4g}" for s in settings],
            hovertemplate=f"<b>{html.escape(policy.kind)}</b><br>{label}: %{{customdata}}<br>quality: %{{y:.4f}}"
            "<br>cost per 1k requests: $%{x:.4f}<extra></extra>",
        )
    if math.isfinite(policy.quality) and math.isfinite(policy.cost_per_1k):
        fig.add_scatter(
            x=[max(policy.cost_per_1k, floor)],
            y=[policy.quality],
            name=f"{policy.kind}{' (recommended)' if chosen else ''}",
            mode="markers",
            marker={
                "symbol": "star",
                "size": 20 if chosen else 14,
                "color": "darkorange" if chosen else "orange",
                "line": {"width": 1},
            },
            hovertemplate=f"<b>{html.escape(policy.kind)}</b> at its chosen setting<br>quality: %{{y:.4f}}"
            "<br>cost per 1k requests: $%{x:.4f}<extra></extra>",
        )


def render_html(report: ChooseReport) -> str:
    """The whole page: recommendation, chart, table of models."""
    columns = [
        ("model", ""),
        ("quality", "Mean quality on the task's prompts."),
        ("USD per 1k requests", "Mean cost of 1,000 requests (0 for a local model without prices)."),
        ("p95 latency", "95th percentile latency, measured or from the catalog."),
        ("on the frontier", "No random mix of other models is both cheaper and better."),
        ("meets target", f"Eligible and quality at least {report.target:.3f}."),
        ("why not", "The constraint that rules the model out."),
    ]
    rows = [
        [
            r.model,
            f"{r.quality:.4f}",
            f"${r.cost_per_1k:.4f}",
            "–" if r.latency_p95_ms is None else f"{r.latency_p95_ms:.0f} ms",
            "yes" if r.model in report.frontier else "",
            "yes" if r.meets_target else "no",
            r.why_not,
        ]
        for r in sorted(report.rows, key=lambda r: (r.cost_per_1k, r.quality))
    ]
    body = [
        html_page.paragraph(f"{report.prompts} prompts; quality target {report.target_text}."),
        "<h2>Recommendation</h2>",
        html_page.paragraph(report.recommendation),
    ]
    if report.snippet:
        body.append(f"<pre>{html.escape(report.snippet)}</pre>")
    body += ["<h2>Cost and quality</h2>", html_page.chart(frontier_figure(report), "frontier")]
    body += ["<h2>Models</h2>", html_page.table(columns, rows), html_page.definitions(columns)]
    body += [html_page.paragraph(f"{p.kind}: {p.description}", "note") for p in report.policies]
    return html_page.page(f"sizewise choose: {report.task}", "\n".join(body))


def write_html(report: ChooseReport, path: str | Path) -> Path:
    """Write :func:`render_html` to ``path``; returns it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report))
    return out
