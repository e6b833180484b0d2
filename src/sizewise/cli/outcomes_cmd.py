"""``sizewise outcomes``: the gateway's judged requests as an outcome table, and a summary of them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from sizewise.cli.log_cmd import catalog_big, resolve_db, since_hours

app = typer.Typer(help="Outcomes the gateway collected (feedback, shadow judging): export them as a table.")

DB_HELP = "Request log SQLAlchemy URL or SQLite file path (the outcomes live beside it)."


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="The table to write (.jsonl).")],
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Catalog to take gateway.log_url from.")] = None,
    hours: Annotated[float | None, typer.Option("--hours", help="Only requests of the last N hours.")] = None,
    big: Annotated[
        str | None, typer.Option("--big", help="The always-big model (its row gets always-big cost).")
    ] = None,
    require_text: Annotated[
        bool, typer.Option("--require-text", help="Leave out requests logged without their text (log_text off).")
    ] = False,
) -> None:
    """Write one row per judged request and model (the generic outcome-table format: eval, train,
    calibrate and choose read it with --table)."""
    from sizewise.errors import ConfigError
    from sizewise.learn.outcome_export import export_rows, write_jsonl
    from sizewise.learn.outcomes import OutcomeStore
    from sizewise.learn.savings import infer_big

    if out.suffix.lower() != ".jsonl":
        raise ConfigError(f"--out {out}: write a .jsonl file")
    since = since_hours(hours)
    store = OutcomeStore(resolve_db(db, config))
    try:
        requests = store.judged_requests(since)
        outcomes = store.outcomes()
        big = big or catalog_big(config) or infer_big(store.served_totals(since), outcomes)
        features = store.features([r["request_id"] for r in requests if not r.get("prompt_text")])
    finally:
        store.close()
    rows = export_rows(requests, outcomes, features, big=big, require_text=require_text)
    if not rows:
        raise ConfigError("no judged requests to export (send feedback, or turn on shadow judging)")
    write_jsonl(rows, out)
    per_request = Counter(row["prompt_id"] for row in rows)
    untexted = len({row["prompt_id"] for row in rows if "features" in row or row["text"].startswith("[prompt not")})
    typer.echo(f"wrote {out}: {len(rows)} rows, {len(per_request)} judged requests")
    typer.echo(f"  {sum(n >= 2 for n in per_request.values())} judged on 2+ models (what eval/train/choose compare)")
    models = Counter(row["model"] for row in rows)
    typer.echo("  rows per model: " + ", ".join(f"{m} {n}" for m, n in models.most_common()))
    if untexted:
        typer.echo(f"  {untexted} requests without text (log_text off): a placeholder text, the vector in 'features'")


def register(root: typer.Typer) -> None:
    """Add ``sizewise outcomes`` to the CLI."""
    root.add_typer(app, name="outcomes")
