"""``sizewise eval --report DIR``: PNG curves (matplotlib) and one self-contained HTML page.

Per router: quality vs share of strong calls against random and the oracle. Overall: every router on
one plot, and quality vs cost with each router's non-decreasing hull when costs are known. The HTML
page embeds the PNGs as base64 and holds the metrics table, so it can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.evaluation import metrics
from sizewise.evaluation.harness import EvalResult

#: Routers whose curve equals a reference line drawn on every plot.
REFERENCES = ("random", "oracle")
COLUMNS = ("apgr", "cpt20", "cpt50", "cpt80", "auc", "aiq", "cost_at_strong_quality")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "router"


def _share_axes(ax: Any, result: EvalResult) -> None:
    ax.plot(result.random.share * 100, result.random.quality, "--", color="grey", label="random")
    ax.plot(result.oracle.share * 100, result.oracle.quality, ":", color="black", label="oracle")
    ax.axhline(result.random.q_weak, color="tab:blue", lw=0.8, alpha=0.5, label=f"{result.weak} (weak)")
    ax.axhline(result.random.q_strong, color="tab:red", lw=0.8, alpha=0.5, label=f"{result.strong} (strong)")
    ax.set_xlabel("strong model calls (%)")
    ax.set_ylabel("quality")
    ax.grid(alpha=0.3)


def _plot_router(ax: Any, item: Any) -> None:
    if item.name in REFERENCES:
        return  # the same curve as the reference line already drawn
    if item.fixed_share is not None:
        ax.plot(item.curve.share * 100, item.curve.quality, "o", ms=8, label=item.name)
    else:
        ax.plot(item.curve.share * 100, item.curve.quality, "-", lw=1.5, label=item.name)


def write_report(result: EvalResult, directory: str | Path) -> Path:
    """Write ``curves.png``, one ``router-NAME.png`` per router, ``cost.png`` (when costs are known) and
    ``index.html`` into ``directory``; returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, Path]] = []

    fig, ax = plt.subplots(figsize=(8, 5))
    _share_axes(ax, result)
    for item in result.results:
        _plot_router(ax, item)
    ax.set_title(f"{result.dataset}: quality vs strong-model calls ({result.mode})")
    ax.legend(fontsize=8)
    images.append(("All routers", _save(fig, out / "curves.png")))

    for item in result.results:
        fig, ax = plt.subplots(figsize=(6, 4))
        _share_axes(ax, result)
        _plot_router(ax, item)
        apgr = item.metrics.get("apgr")
        ax.set_title(f"{item.name}" + (f" (APGR {apgr:.3f})" if apgr is not None else ""))
        ax.legend(fontsize=7)
        images.append((item.name, _save(fig, out / f"router-{_slug(item.name)}.png")))

    if result.random.cost is not None:
        fig, ax = plt.subplots(figsize=(8, 5))
        ax.plot(result.random.cost, result.random.quality, "--", color="grey", label="random")
        hc, hq = metrics.nondecreasing_hull(result.oracle.cost, result.oracle.quality)
        ax.plot(hc, hq, ":", color="black", label="oracle (hull)")
        for item in result.results:
            if item.curve.cost is None or item.name in REFERENCES:
                continue
            if item.fixed_share is not None:
                ax.plot(item.curve.cost, item.curve.quality, "o", ms=8, label=item.name)
                continue
            hc, hq = metrics.nondecreasing_hull(item.curve.cost, item.curve.quality)
            ax.plot(hc, hq, "-", label=f"{item.name} (hull)")
        ax.set_xlabel("mean cost per prompt (USD)")
        ax.set_ylabel("quality")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{result.dataset}: quality vs cost")
        images.append(("Quality vs cost", _save(fig, out / "cost.png")))

    page = out / "index.html"
    page.write_text(_html(result, images))
    return page


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_value(key: str, value: float | None) -> str:
    """How the table shows a metric: shares and cost ratios as percentages, the rest with 3 decimals."""
    if value is None or not np.isfinite(value):
        return "–"
    if key.startswith("cpt") or key == "cost_at_strong_quality":
        return f"{100 * value:.1f}%"
    return f"{value:.3f}"


def _html(result: EvalResult, images: list[tuple[str, Path]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("router", *COLUMNS))
    rows = "".join(
        "<tr><td>"
        + html.escape(item.name)
        + "</td>"
        + "".join(f"<td>{format_value(c, item.metrics.get(c))}</td>" for c in COLUMNS)
        + "</tr>"
        for item in result.results
    )
    figures = "".join(
        f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,"
        f"{base64.b64encode(path.read_bytes()).decode()}'><figcaption>{html.escape(title)}</figcaption></figure>"
        for title, path in images
    )
    setup = (
        f"{result.n_prompts} prompts ({result.n_dropped} dropped for unknown quality), {html.escape(result.mode)}; "
        f"weak {html.escape(result.weak)} = {result.random.q_weak:.3f}, "
        f"strong {html.escape(result.strong)} = {result.random.q_strong:.3f}"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sizewise eval: {html.escape(result.dataset)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%}}</style></head>
<body><h1>sizewise eval: {html.escape(result.dataset)}</h1><p>{setup}</p>
<table><tr>{head}</tr>{rows}</table>
<p>APGR: average performance gap recovered (random 0.5). CPT(x%): share of strong calls needed to recover x% of
the gap. AIQ: area under the non-decreasing quality-vs-cost hull over the cost range. Cost at strong quality: the
cheapest cost matching the strong model's quality, as a share of its cost.</p>
{figures}</body></html>
"""
