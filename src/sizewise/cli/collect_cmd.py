"""``sizewise collect``: run catalog models on a labelled dataset, resumably, into a JSONL outcome file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sizewise.errors import ConfigError

if TYPE_CHECKING:
    from sizewise.cascade.scorers import Scorer

GSM8K_TEST = "routellm/gsm8k/test.jsonl"


def collect(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to append rows to (re-run to resume).")],
    dataset: Annotated[
        str, typer.Option("--dataset", help="'gsm8k' (GSM8K test questions) or a JSONL file of labelled questions.")
    ] = "gsm8k",
    models: Annotated[
        str | None, typer.Option("--models", help="Comma-separated catalog models (default: the local ladder).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Catalog file (sizewise.yaml; default: the built-in one).")
    ] = None,
    catalog: Annotated[Path | None, typer.Option("--catalog", hidden=True, help="Deprecated: --config.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip the first N questions.")] = 0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Answer length cap.")] = 256,
    grader: Annotated[
        str | None, typer.Option("--grader", help="numeric | choice | exact (default: from the dataset).")
    ] = None,
    scorers: Annotated[
        str | None,
        typer.Option(
            "--scorers",
            help="Also record the model calls of these cascade scorers on every rung but the last: "
            "verifier (the next model's yes/no) and/or consistency (extra samples), with their CPU seconds.",
        ),
    ] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Extra samples per answer (consistency).")] = 3,
    ray: Annotated[bool, typer.Option("--ray", help="Spread the questions over Ray tasks (same rows).")] = False,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster to join under --ray (default: start a local one).")
    ] = None,
) -> None:
    """Answer each question with each model; store answer, correctness, tokens, latency and logprobs."""
    import asyncio

    from sizewise.backends.factory import make_backend
    from sizewise.cascade.collect import RowStore, load_items
    from sizewise.cascade.collect import collect as run_collect
    from sizewise.cascade.graders import GRADERS
    from sizewise.catalog import load_catalog
    from sizewise.paths import data_dir

    if catalog is not None:  # the old spelling, before every command took --config
        if config is not None:
            raise ConfigError("give --config only (--catalog is its deprecated old name)")
        typer.echo("note: --catalog is deprecated; use --config (-c), as every other command does", err=True)
        config = catalog
    path = data_dir() / GSM8K_TEST if dataset == "gsm8k" else Path(dataset)
    items, kind = load_items(path, limit=limit, offset=offset)
    grader = grader or kind
    if grader not in GRADERS:
        raise ConfigError(f"unknown grader {grader!r}; known: {', '.join(GRADERS)}")
    recorders = _scorers(scorers, samples, grader)
    cat = load_catalog(config)
    names = [m.strip() for m in models.split(",") if m.strip()] if models else [m.name for m in cat.ladder()]
    if address is not None and not ray:
        raise ConfigError("--address is an option of --ray: add --ray")
    backends = {name: make_backend(cat.get(name), cat) for name in names}
    store = RowStore(out)
    before = len(store.rows)
    if ray:
        from sizewise.distributed.batch import collect_on_ray
        from sizewise.distributed.run import connect

        connect(address)
        try:
            added = collect_on_ray(items, cat, names, store, grader=grader, max_tokens=max_tokens, scorers=recorders)
        finally:
            store.close()
        typer.echo(f"{added} new rows ({before} already there), {len(store.rows)} in {out}")
        return
    try:
        added = asyncio.run(
            run_collect(items, backends, store, grader=grader, max_tokens=max_tokens, scorers=recorders)
        )
    except KeyboardInterrupt:
        typer.echo(f"\nstopped; {len(store.rows)} rows saved in {out} (run again to resume)", err=True)
        raise typer.Exit(130) from None
    finally:
        store.close()
    typer.echo(f"{added} new rows ({before} already there), {len(store.rows)} in {out}")


def _scorers(spec: str | None, samples: int, grader: str) -> list[Scorer]:
    """The scorers named in ``--scorers``; only those that call models have anything to record."""
    from sizewise.cascade.scorers import make_scorer, scorer_class

    out: list[Scorer] = []
    for name in [n.strip() for n in (spec or "").split(",") if n.strip()]:
        if not scorer_class(name).calls_models:
            raise ConfigError(f"scorer {name!r} makes no model calls; collect already records what it reads")
        params = {"k": samples, "kind": grader} if name == "consistency" else {}
        out.append(make_scorer(name, **params))
    return out


def register(app: typer.Typer) -> None:
    """Add ``collect`` to the CLI."""
    app.command("collect")(collect)
