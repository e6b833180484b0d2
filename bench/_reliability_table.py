"""The summary table of bench/reliability.py: one row per measured quantity, with its goal."""

from __future__ import annotations

from typing import Any

NOT = "not measured"


def _missing(part: dict[str, Any] | None) -> str | None:
    if part is None:
        return f"{NOT} (part not run)"
    if "not_measured" in part:
        return f"{NOT}: {part['not_measured']}"
    return None


def _fuzz(part: dict[str, Any]) -> list[dict[str, str]]:
    statuses = ", ".join(f"{k}: {v}" for k, v in part["statuses"].items())
    return [
        {"what": "hostile and random requests tried", "measured": f"{part['cases']:,} ({statuses})", "goal": ""},
        {"what": "500s", "measured": str(part["server_errors_500"]), "goal": "0"},
        {
            "what": "requests answered vs logged",
            "measured": f"{part['answered']:,} vs {part['logged']:,}",
            "goal": "equal",
        },
    ]


def _memory(part: dict[str, Any]) -> list[dict[str, str]]:
    uploads = ", ".join(f"{k}: {v}" for k, v in part["uploads"].items())
    measured = (
        f"{part['rss_before_mb']:.0f} -> {part['rss_after_mb']:.0f} MiB (peak {part['rss_peak_mb']:.0f}; "
        f"4 x 100 MB uploads answered {uploads})"
    )
    return [{"what": "gateway RSS before -> after load", "measured": measured, "goal": "flat"}]


def _metrics(part: dict[str, Any]) -> list[dict[str, str]]:
    measured = f"{part['series']} series, {part['metrics_bytes'] / 1024:.0f} KiB after {part['names_sent']:,} names"
    return [{"what": "/metrics after distinct router-... names", "measured": measured, "goal": "bounded"}]


def _privacy(part: dict[str, Any]) -> list[dict[str, str]]:
    measured = (
        f"{part['leaked']} leaked of {part['cases']} placements ({part['requests']} requests: named remote "
        f"model and routed); harmless twins refused: {part['twins_refused']} of {part['twins']}"
    )
    return [{"what": "privacy (local-only) placements leaked", "measured": measured, "goal": "0 leaked, >= 40 cases"}]


def _budget(part: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, run in part.items():
        if not isinstance(run, dict):
            continue
        missing = _missing(run)
        measured = missing or (
            f"+{run['overspend_pct']:.1f}% (spent ${run['spent_usd']:.4f} of ${run['limit_usd']}: "
            f"{run['used_pct']:.0f}% used; {run['answered_200']} answered, {run['refused_429']} refused)"
        )
        goal = "0, and the budget used up to its last reservation"
        rows.append({"what": f"budget overspend, {name}", "measured": measured, "goal": goal})
    return rows


def _transport(part: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, run in part.items():
        if isinstance(run, dict):
            measured = f"{run['wrong_answer']} of {run['requests']} (failed {run['failed']})"
            label = name.replace("interim_", "")
            rows.append({"what": f"wrong answer after a {label} interim response", "measured": measured, "goal": "0"})
    return rows


def table_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Rows of (what, measured, goal) for every part; a part that did not run says why."""
    render = {
        "fuzz": _fuzz,
        "memory": _memory,
        "metrics": _metrics,
        "privacy": _privacy,
        "budget": _budget,
        "transport": _transport,
    }
    rows: list[dict[str, str]] = []
    for name, build in render.items():
        part = results.get(name)
        missing = _missing(part)
        if missing is not None:
            rows.append({"what": name, "measured": missing, "goal": ""})
            continue
        try:
            rows += build(part)  # type: ignore[arg-type]
        except (KeyError, TypeError) as error:
            rows.append({"what": name, "measured": f"{NOT}: result lacks {error}", "goal": ""})
    return rows
