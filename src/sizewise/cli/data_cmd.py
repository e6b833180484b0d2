"""``sizewise data``: list the named datasets, download one from its public source, or summarise one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(help="Named outcome datasets: list, fetch from the public source, show.", no_args_is_help=True)


@data_app.command("list")
def list_datasets() -> None:
    """The datasets that `sizewise eval` and the other commands accept by name."""
    from sizewise.evaluation.loaders import describe_datasets

    for name, description in describe_datasets().items():
        typer.echo(f"{name:<18} {description}")


@data_app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="Dataset name (see `sizewise data list`).")],
    to: Annotated[Path | None, typer.Option("--to", help="Folder to write (default $SIZEWISE_CACHE/data).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Download again even when the files are there.")] = False,
) -> None:
    """Download a dataset's files from their public URLs (pinned commits), laid out like shared/data."""
    from sizewise.evaluation.loaders.fetch import fetch_dataset

    root = fetch_dataset(name, to, force=force)
    typer.echo(f"{name}: files in {root}; load with SIZEWISE_DATA={root} or data_dir={root}")
    typer.echo(_price_sheet(root))


def _price_sheet(root: Path) -> str:
    """Put the price sheet in use beside the fetched files (no public source has one), so a later
    ``SIZEWISE_DATA=<root>`` finds its costs; say what was done, or what to do when there is no sheet."""
    import shutil

    from sizewise.core.prices import default_price_path

    target = root / "prices.csv"
    if target.is_file():
        return f"price sheet: {target}"
    source = default_price_path()
    if not source.is_file():
        return (
            f"no price sheet at hand ({source}): costs need one; write {target} or set SIZEWISE_PRICES (docs/prices.md)"
        )
    shutil.copyfile(source, target)
    return f"price sheet: copied {source} to {target} (list prices; edit it, docs/prices.md)"


@data_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Dataset name or an outcome file (CSV, JSONL, Parquet).")],
) -> None:
    """Rows, models and each model's mean quality and cost of a dataset."""
    import numpy as np

    from sizewise.evaluation.loaders import load_dataset

    table = load_dataset(name)
    typer.echo(f"{table.name}: {len(table)} prompts, {len(table.models)} models")
    for i, model in enumerate(table.models):
        quality = float(np.nanmean(table.quality[:, i]))
        cost = "" if table.cost is None else f"  cost/1k prompts ${1000 * float(np.nanmean(table.cost[:, i])):.4f}"
        typer.echo(f"  {model:<40} quality {quality:.3f}{cost}")


def register(app: typer.Typer) -> None:
    """Add ``data`` to the CLI."""
    app.add_typer(data_app, name="data")
