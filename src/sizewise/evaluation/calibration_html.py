"""``sizewise calibrate --plot FILE.html``: the threshold curves as an interactive page (Plotly, offline).

The same curves as the PNG (:mod:`sizewise.evaluation.calibration_plot`): share of strong calls, quality
and (with costs) USD per 1,000 requests against the router's threshold, on stacked panels sharing the
threshold axis; hover on any point shows all of them at that threshold. The chosen threshold is marked
with its held-out value and 95% interval.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sizewise.evaluation import html_page

PANELS = (("share", "share to the strong model"), ("quality", "quality"), ("cost_per_1k", "USD per 1,000 requests"))


def _plain(values: Any) -> list[float | None]:
    """Plain floats for the page (JSON has no infinity: an infinite threshold reads null)."""
    return [float(v) if math.isfinite(float(v)) else None for v in values]


def calibration_figure(curve: dict[str, Any], result: Any, title: str) -> Any:
    """Stacked panels over the threshold, ``result`` (a CalibrationResult) marked on each."""
    from plotly.subplots import make_subplots

    panels = [(key, label) for key, label in PANELS if key in curve]
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    threshold = _plain(curve["threshold"])
    cost = curve.get("cost_per_1k")
    hover = [
        [f"{s:.1%}", f"{q:.4f}", "–" if cost is None else f"${cost[i]:.4f}"]
        for i, (s, q) in enumerate(zip(curve["share"], curve["quality"], strict=True))
    ]
    template = (
        "threshold %{x:.4g}<br>strong calls: %{customdata[0]}<br>quality: %{customdata[1]}"
        "<br>cost per 1k requests: %{customdata[2]}<extra></extra>"
    )
    for row, (key, label) in enumerate(panels, start=1):
        fig.add_scatter(
            x=threshold,
            y=_plain(curve[key]),
            name=label,
            mode="lines",
            line={"shape": "hv"},
            customdata=hover,
            hovertemplate=template,
            row=row,
            col=1,
        )
        _mark_chosen(fig, result, key, label, row)
        fig.update_yaxes(
            title_text=label,
            row=row,
            col=1,
            tickformat=".0%" if key == "share" else None,
            tickprefix="$" if key == "cost_per_1k" else None,
        )
        if key == "quality":
            _mark_each_model_alone(fig, result, row)
    fig.add_vline(x=result.threshold, line={"color": "crimson", "width": 1}, opacity=0.5)
    fig.update_xaxes(title_text=f"threshold (score ≥ threshold goes to {result.strong})", row=len(panels), col=1)
    fig.update_layout(
        title=title, height=260 * len(panels) + 120, hovermode="x unified", showlegend=False, template="plotly_white"
    )
    return fig


def _mark_chosen(fig: Any, result: Any, key: str, label: str, row: int) -> None:
    """The chosen threshold's held-out value of ``key`` on its panel, with its 95% interval."""
    chosen = {"share": result.share, "quality": result.quality, "cost_per_1k": result.cost_per_1k}[key]
    intervals = {"share": result.share_ci, "quality": result.quality_ci, "cost_per_1k": result.cost_ci}
    low, high = intervals[key] or (chosen, chosen)
    fig.add_scatter(
        x=[result.threshold],
        y=[chosen],
        name=f"chosen {label}",
        mode="markers",
        showlegend=False,
        marker={"size": 11, "color": "crimson"},
        error_y={"type": "data", "array": [high - chosen], "arrayminus": [chosen - low]},
        hovertemplate=f"<b>chosen threshold %{{x:.4g}}</b><br>{label}: %{{y:.4g}} (95% CI {low:.4g} – {high:.4g})"
        "<br>measured on held-out prompts<extra></extra>",
        row=row,
        col=1,
    )


def _mark_each_model_alone(fig: Any, result: Any, row: int) -> None:
    """The weak and the strong model's quality alone, as lines across the quality panel."""
    # labels on the left, where the curve is near the strong model's level, not the weak one's
    ends = ((result.weak_quality, result.weak, "dot"), (result.strong_quality, result.strong, "dash"))
    for value, name, dash in ends:
        fig.add_hline(
            y=value,
            line={"dash": dash, "width": 1},
            annotation_text=f"{name} alone {value:.3f}",
            annotation_position="top left",
            row=row,
            col=1,
        )


def render_calibration_html(curve: dict[str, Any], result: Any, title: str) -> str:
    """The page: what the chosen threshold delivers, then the chart."""
    ci = result.quality_ci
    summary = (
        f"Target {result.target}: threshold {result.threshold:.6g} sends {result.share:.1%} of prompts to "
        f"{result.strong}; quality {result.quality:.4f} (95% CI {ci[0]:.4f} – {ci[1]:.4f}; {result.weak} alone "
        f"{result.weak_quality:.4f}, {result.strong} alone {result.strong_quality:.4f}), measured on "
        f"{result.n_heldout} held-out prompts after choosing on {result.n_calibration}."
    )
    if result.cost_per_1k is not None:
        summary += f" Cost ${result.cost_per_1k:.4f} per 1,000 requests."
    body = [html_page.paragraph(summary), html_page.chart(calibration_figure(curve, result, title), "calibration")]
    return html_page.page(f"sizewise calibrate: {result.weak} / {result.strong}", "\n".join(body))


def write_calibration_html(curve: dict[str, Any], result: Any, path: str | Path, title: str) -> Path:
    """Write :func:`render_calibration_html` to ``path``; returns it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_calibration_html(curve, result, title))
    return out
