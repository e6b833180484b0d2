"""``sizewise log --plot FILE``: the request log drawn: requests per model over time, each model's share,
latency p50/p95 per model and cost against always-big, as an interactive HTML page (Plotly, offline) or
a PNG when FILE ends in ``.png``.

:func:`plot_data` computes every number drawn, so the charts and a test read the same values.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sizewise.errors import ConfigError

#: Bucket widths to pick from (seconds): about 40 buckets over the log's span, on a round width.
BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


def bucket_width(span_s: float) -> int:
    """A round bucket width giving at most about 40 buckets over ``span_s`` seconds."""
    return next((b for b in BUCKETS if span_s / b <= 40), BUCKETS[-1])


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def plot_data(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers drawn: per-bucket answered requests per model, failures, shares, latency and cost.

    Buckets start at multiples of the width (UTC); ``cost``/``always_big`` are running totals at each
    bucket's end. Answered means a status below 400, as in the text summary.
    """
    if not rows:
        raise ConfigError("the request log has no requests to plot (in the chosen time range)")
    times = [float(r["time"]) for r in rows]
    width = bucket_width(max(times) - min(times))
    first = math.floor(min(times) / width) * width
    n = int((max(times) - first) // width) + 1
    ok = [r for r in rows if r["status"] is not None and r["status"] < 400]
    models = [m for m, _ in Counter(str(r["model"]) for r in ok).most_common()]
    per_model = {m: [0] * n for m in models}
    failed, cost, big = [0] * n, [0.0] * n, [0.0] * n
    for r in rows:
        k = int((float(r["time"]) - first) // width)
        if r["status"] is not None and r["status"] < 400:
            per_model[str(r["model"])][k] += 1
            cost[k] += float(r["cost"] or 0.0)
            big[k] += float(r["big_cost"] or 0.0)
        else:
            failed[k] += 1
    latency: dict[str, list[float]] = {m: [] for m in models}
    for r in ok:
        if r["latency_ms"] is not None:
            latency[str(r["model"])].append(float(r["latency_ms"]))
    return {
        "bucket_s": width,
        "buckets": [datetime.fromtimestamp(first + k * width, UTC).strftime("%Y-%m-%d %H:%M:%S") for k in range(n)],
        "requests": per_model,
        "failed": failed,
        "share": {m: sum(per_model[m]) / len(ok) for m in models} if ok else {},
        "p50_ms": {m: _percentile(v, 50) for m, v in latency.items() if v},
        "p95_ms": {m: _percentile(v, 95) for m, v in latency.items() if v},
        "cost": _running(cost),
        "always_big": _running(big),
    }


def _running(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def figure(data: dict[str, Any], title: str) -> Any:
    """Four Plotly panels: requests per model over time, share, latency, cost vs always-big."""
    from plotly.subplots import make_subplots

    width = data["bucket_s"]
    fig = make_subplots(
        rows=2,
        cols=2,
        vertical_spacing=0.14,
        horizontal_spacing=0.1,
        subplot_titles=(
            f"answered requests per model (per {_span(width)}, UTC)",
            "share of answered requests",
            "latency per model (ms)",
            "cumulative cost (USD)",
        ),
    )
    for model, counts in data["requests"].items():
        fig.add_bar(x=data["buckets"], y=counts, name=model, legendgroup=model, row=1, col=1)
    if any(data["failed"]):
        fig.add_bar(
            x=data["buckets"], y=data["failed"], name="failed (status >= 400)", marker_color="gray", row=1, col=1
        )
    models = list(data["share"])
    fig.add_bar(
        x=models,
        y=[data["share"][m] for m in models],
        name="share",
        showlegend=False,
        hovertemplate="%{x}: %{y:.1%}<extra></extra>",
        row=1,
        col=2,
    )
    for key, label, symbol in (("p50_ms", "p50", "circle"), ("p95_ms", "p95", "triangle-up")):
        names = list(data[key])  # markers, not bars: bars stack in this figure (the time panel's bars must)
        fig.add_scatter(
            x=names,
            y=[data[key][m] for m in names],
            name=f"latency {label}",
            mode="markers",
            marker={"size": 12, "symbol": symbol},
            row=2,
            col=1,
        )
    fig.add_scatter(x=data["buckets"], y=data["cost"], name="cost", mode="lines+markers", row=2, col=2)
    fig.add_scatter(
        x=data["buckets"],
        y=data["always_big"],
        name="always-big cost",
        mode="lines",
        line={"dash": "dash"},
        row=2,
        col=2,
    )
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=2, col=1)
    fig.update_layout(title=title, barmode="stack", height=760, template="plotly_white")
    return fig


def _span(seconds: int) -> str:
    return {60: "minute", 3600: "hour", 86400: "day", 7 * 86400: "week"}.get(seconds, f"{seconds // 60} minutes")


def write_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Draw the log into ``path``: interactive HTML, or a PNG (matplotlib) when it ends in ``.png``."""
    data = plot_data(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        return _png(data, path, title)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--plot {path}: give a file ending in .html (interactive) or .png")
    from sizewise.evaluation import html_page

    path.write_text(html_page.page(title, html_page.chart(figure(data, ""), "log")))
    return path


def _png(data: dict[str, Any], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    x = np.arange(len(data["buckets"]))
    bottom = np.zeros(len(x))
    for model, counts in data["requests"].items():
        axes[0, 0].bar(x, counts, bottom=bottom, label=model)
        bottom += counts
    if any(data["failed"]):
        axes[0, 0].bar(x, data["failed"], bottom=bottom, color="gray", label="failed (status >= 400)")
    ticks = x[:: max(1, len(x) // 6)]
    axes[0, 0].set_xticks(ticks, [data["buckets"][i][5:16] for i in ticks], fontsize=7)
    axes[0, 0].set_title(f"answered requests per model (per {_span(data['bucket_s'])}, UTC)", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    models = list(data["share"])
    axes[0, 1].bar(models, [data["share"][m] for m in models])
    axes[0, 1].set_title("share of answered requests", fontsize=9)
    names = list(data["p50_ms"])
    axes[1, 0].bar(np.arange(len(names)) - 0.2, [data["p50_ms"][m] for m in names], 0.4, label="p50")
    axes[1, 0].bar(np.arange(len(names)) + 0.2, [data["p95_ms"][m] for m in names], 0.4, label="p95")
    axes[1, 0].set_xticks(np.arange(len(names)), names)
    axes[1, 0].set_title("latency per model (ms)", fontsize=9)
    axes[1, 0].legend(fontsize=7)
    axes[1, 1].plot(x, data["cost"], "o-", label="cost")
    axes[1, 1].plot(x, data["always_big"], "--", label="always-big cost")
    axes[1, 1].set_xticks(ticks, [data["buckets"][i][5:16] for i in ticks], fontsize=7)
    axes[1, 1].set_title("cumulative cost (USD)", fontsize=9)
    axes[1, 1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
