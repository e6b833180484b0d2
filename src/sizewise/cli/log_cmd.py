"""``sizewise log``: totals from the gateway's request log (share per model, cost vs always-big, latency)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of logged requests: counts, share per model, cost vs always-big, latency percentiles."""
    import numpy as np

    ok = [r for r in rows if r["status"] is not None and r["status"] < 400]
    models = Counter(r["model"] for r in ok)
    latency = np.array([r["latency_ms"] for r in ok], dtype=float)
    cost = float(sum(r["cost"] or 0.0 for r in ok))
    big_cost = float(sum(r["big_cost"] or 0.0 for r in ok))
    return {
        "requests": len(rows),
        "ok": len(ok),
        "errors": dict(Counter(str(r["status"]) for r in rows if r["status"] is None or r["status"] >= 400)),
        "share": {model: count / len(ok) for model, count in models.most_common()} if ok else {},
        "escalated": sum(bool(r["escalated"]) for r in ok),
        "fallbacks": sum(r["fallback_from"] is not None for r in ok),
        "cost_usd": cost,
        "always_big_cost_usd": big_cost,
        "cost_ratio": cost / big_cost if big_cost > 0 else None,
        "p50_ms": float(np.percentile(latency, 50)) if len(latency) else None,
        "p95_ms": float(np.percentile(latency, 95)) if len(latency) else None,
    }


def locate_db(db: str | None, config: Path | None) -> tuple[str, str]:
    """The request log's SQLAlchemy URL and where it came from: ``--db`` (a URL or a SQLite file), else
    the ``gateway.log_url`` of ``--config`` or of the built-in catalog (what ``sizewise serve`` writes to);
    a :class:`ConfigError` when a SQLite file is not there."""
    from sizewise.errors import ConfigError

    if db is None:
        from sizewise.catalog import load_catalog
        from sizewise.gateway.state import unpack_catalog as _unpack

        db = _unpack(load_catalog(config))[1].log_url
        origin = f"gateway.log_url of {config}" if config is not None else "gateway.log_url of the built-in catalog"
        if db == "none":
            raise ConfigError(f"the request log is off ({origin} is 'none')")
    else:
        origin = "--db"
        if "://" not in db:
            if not Path(db).is_file():
                raise ConfigError(f"no request log at {db}")
            db = f"sqlite:///{db}"
    if db.startswith("sqlite:///") and not Path(db.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"no request log at {db.removeprefix('sqlite:///')} ({origin}; start `sizewise serve` first, "
            "or give --config or --db)"
        )
    return db, origin


def resolve_db(db: str | None, config: Path | None) -> str:
    """The request log's SQLAlchemy URL (see :func:`locate_db`)."""
    return locate_db(db, config)[0]


def catalog_big(config: Path | None) -> str | None:
    """The always-big model of the catalog at ``config`` (the top of its ladder), None without one."""
    if config is None:
        return None
    from sizewise.catalog import load_catalog
    from sizewise.catalog.catalog import order_ladder
    from sizewise.gateway.state import unpack_catalog as _unpack

    models, settings = _unpack(load_catalog(config))
    ladder = order_ladder(models, settings.ladder)
    return ladder[-1].name if ladder else None


def since_hours(hours: float | None) -> float | None:
    """The unix time ``hours`` ago (None for all); a :class:`ConfigError` for a bad number."""
    import math

    from sizewise.errors import ConfigError

    if hours is not None and not 0 < hours < math.inf:
        raise ConfigError(f"--hours must be a positive number, got {hours}")
    return time.time() - hours * 3600 if hours else None


def savings_line(db: str, since: float | None, big: str | None) -> str:
    """Cost against always-big and the quality retained (:mod:`sizewise.learn.savings`), in one line."""
    from sizewise.errors import SizewiseError
    from sizewise.learn.outcomes import OutcomeStore
    from sizewise.learn.savings import savings_of

    try:
        store = OutcomeStore(db)
    except SizewiseError as error:  # e.g. a read-only database without the outcome tables yet
        return f"quality unknown ({error})"
    try:
        return savings_of(store, big=big, since=since).line()
    finally:
        store.close()


def log(
    db: Annotated[str | None, typer.Option("--db", help="Request log SQLAlchemy URL or SQLite file path.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Catalog to take gateway.log_url from.")] = None,
    hours: Annotated[float | None, typer.Option("--hours", help="Only the last N hours.")] = None,
    big: Annotated[
        str | None,
        typer.Option("--big", help="The always-big model (default: the top of --config's ladder, else inferred)."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw the log into FILE: .html (interactive, offline) or .png."),
    ] = None,
) -> None:
    """Print totals of the gateway's request log as tables (the catalog's gateway.log_url by default)."""
    from sizewise.gateway.log import read_rows

    if plot is not None and plot.suffix.lower() not in (".html", ".htm", ".png"):
        from sizewise.errors import ConfigError

        raise ConfigError(f"--plot {plot}: give a file ending in .html (interactive) or .png")
    since = since_hours(hours)
    db, origin = locate_db(db, config)
    rows = read_rows(db, since=since)
    s = summarize(rows)
    typer.echo(f"request log: {redact(db)} (from {origin}){f', last {hours:g} h' if hours else ''}")
    errors = sum(s["errors"].values())
    typer.echo(f"requests: {s['requests']} ({s['ok']} answered, {errors} failed)")
    print_tables(s)
    typer.echo(f"savings: {savings_line(db, since, big or catalog_big(config))}")
    if plot is not None:
        from sizewise.cli.log_plot import write_plot

        title = f"sizewise log: {redact(db)}{f', last {hours:g} h' if hours else ''}"
        typer.echo(f"wrote {write_plot(rows, plot, title)}")


def redact(url: str) -> str:
    """``url`` without its password (a PostgreSQL URL may carry one)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show it as given
        return url


def print_tables(s: dict[str, Any]) -> None:
    """The summary as rich tables: share per model, errors by status, cost and latency."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=100)
    ok = s["ok"]
    if s["share"]:
        shares = Table(title="answered, per model", title_justify="left")
        for column in ("model", "requests", "share"):
            shares.add_column(column, justify="left" if column == "model" else "right")
        for model, share in s["share"].items():
            shares.add_row(model, str(round(share * ok)), f"{share:.1%}")
        console.print(shares)
    if s["errors"]:
        errors = Table(title="errors by status", title_justify="left")
        errors.add_column("status")
        errors.add_column("requests", justify="right")
        for status, count in sorted(s["errors"].items()):
            errors.add_row(status, str(count))
        console.print(errors)
    totals = Table(title="totals", title_justify="left", show_header=False)
    totals.add_column("what")
    totals.add_column("value", justify="right")
    totals.add_row("escalated", str(s["escalated"]))
    totals.add_row("fallbacks after faults", str(s["fallbacks"]))
    ratio = f" ({s['cost_ratio']:.1%} of always-big)" if s["cost_ratio"] is not None else ""
    totals.add_row("cost", f"${s['cost_usd']:.6f}{ratio}")
    totals.add_row("always-big cost", f"${s['always_big_cost_usd']:.6f}")
    if s["p50_ms"] is not None:
        totals.add_row("latency p50 / p95", f"{s['p50_ms']:.1f} ms / {s['p95_ms']:.1f} ms")
    console.print(totals)


def register(app: typer.Typer) -> None:
    """Add ``log`` to the CLI."""
    app.command("log")(log)
