"""One self-contained HTML page of interactive Plotly charts: plotly.js is inside the file, so the page
opens offline and can be mailed as one file (no CDN, no script fetched from anywhere).

Charts are given plain lists (never numpy arrays, which Plotly would pack as base64), so the numbers a
reader sees in the page source, in the chart and in the report's JSON are the same.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th abbr{text-decoration:underline dotted;cursor:help}
dl{font-size:.9em}dt{font-weight:600;margin-top:.4em}dd{margin-left:1.5em}.note{color:#555;font-size:.9em}
h2{margin-top:1.4em;border-bottom:1px solid #ddd}"""

#: Plotly's per-chart settings: no logo, charts resize with the window.
CONFIG = {"displaylogo": False, "responsive": True}


def page(title: str, body: str) -> str:
    """A complete HTML document with plotly.js inlined once in its head."""
    from plotly.offline import get_plotlyjs

    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n<script>{get_plotlyjs()}</script></head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def chart(fig: Any, div_id: str) -> str:
    """A figure as a ``<div class="plotly-graph-div">`` plus the script that draws it (plotly.js not included)."""
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG))


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; each column is ``(name, explanation)`` and the explanation shows on hover."""
    head = "".join(
        f"<th><abbr title='{html.escape(tip, quote=True)}'>{html.escape(name)}</abbr></th>"
        if tip
        else f"<th>{name}</th>"
        for name, tip in columns
    )
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def definitions(columns: Sequence[tuple[str, str]]) -> str:
    """The columns' explanations as a definition list (for readers who do not hover)."""
    items = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(tip)}</dd>" for name, tip in columns if tip)
    return f"<dl>{items}</dl>"


def paragraph(text: str, cls: str = "") -> str:
    """Escaped text as a paragraph."""
    return f"<p{f' class={cls!r}' if cls else ''}>{html.escape(text)}</p>"
