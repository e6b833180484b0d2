"""``sizewise eval``: measure routers on a dataset (K-fold CV or transfer), print a table, write JSON/report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sizewise.errors import ConfigError

DEFAULT_ROUTERS = ["random", "tfidf-logreg", "oracle"]
# Spelled out for --help without importing the routers (a test keeps it equal to the registry).
KNOWN_ROUTERS = (
    "sw-ranking", "knn", "embed-logreg", "embed-mlp", "mf", "gbdt", "tfidf-logreg", "ensemble",
    "retrained", "random", "oracle", "always-small", "always-large",
)  # fmt: skip
ROUTER_HELP = f"Router name: {', '.join(KNOWN_ROUTERS)}."


def eval_command(
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Named dataset (routellm-mmlu, routellm-gsm8k, ...) or a file.")
    ] = None,
    table: Annotated[Path | None, typer.Option("--table", help="Your own outcome table (CSV/JSONL/Parquet).")] = None,
    router: Annotated[
        list[str] | None,
        typer.Option("--router", help=f"{ROUTER_HELP} Repeatable; default random, tfidf-logreg, oracle."),
    ] = None,
    router_file: Annotated[
        list[Path] | None, typer.Option("--router-file", help="A saved router to score as is (repeatable).")
    ] = None,
    cv: Annotated[int, typer.Option("--cv", help="Number of cross-validation folds (at least 2).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds and of seeded routers.")] = 0,
    train_on: Annotated[
        str | None, typer.Option("--train-on", help="Fit on this dataset (name or file) instead of CV: transfer.")
    ] = None,
    weak: Annotated[str | None, typer.Option("--weak", help="Weak (cheap) model; default from the table.")] = None,
    strong: Annotated[str | None, typer.Option("--strong", help="Strong model; default from the table.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write an interactive index.html and report.json here.")
    ] = None,
    target_quality: Annotated[
        float,
        typer.Option(
            "--target-quality", help="The report's threshold goal: this fraction of the strong model's quality."
        ),
    ] = 0.95,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Parameter KEY=JSON of every --router, e.g. embedding='\"static\"' (repeatable)."),
    ] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Fit every (router, fold) as a Ray task (same numbers).")] = False,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster to join under --ray (default: start a local one).")
    ] = None,
) -> None:
    """Evaluate routers on one dataset: APGR, CPT(20/50/80%), AUC, AIQ and cost at the strong model's quality."""
    from sizewise.cli.tables import read_table
    from sizewise.evaluation.harness import evaluate
    from sizewise.routers.base import load_router, make_router, router_class

    if (dataset is None) == (table is None):
        raise ConfigError("give exactly one of --dataset NAME or --table PATH")
    if cv < 2:
        raise ConfigError(f"--cv must be at least 2, got {cv}")
    if not 0 < target_quality <= 1:
        raise ConfigError(
            f"--target-quality is a fraction of the strong model's quality in (0, 1], got {target_quality}"
        )
    from sizewise.cli.params import parse_params  # one --param syntax everywhere

    names = list(router or ([] if router_file else DEFAULT_ROUTERS))
    params = parse_params(param)
    if params and not router:
        raise ConfigError("--param sets parameters of the --router named with it: give --router NAME")
    for name in names:
        router_class(name)  # unknown names fail before any data is loaded
        if params:
            make_router(name, **params)  # a parameter a router does not take fails here, naming it
    for path in router_file or []:
        if not path.is_file():
            raise ConfigError(f"--router-file {path}: no such file")
    loaded = [load_router(path) for path in router_file or []]
    data = read_table(str(table) if table is not None else str(dataset))
    train_table = read_table(train_on) if train_on is not None else None
    weak, strong = pick_pair(data, weak, strong)
    from contextlib import nullcontext

    from sizewise.progress import silenced

    with nullcontext() if progress else silenced():  # --no-progress: the embedding's progress too
        result = evaluate(
            data,
            [*names, *loaded],
            cv=cv,
            seed=seed,
            train_table=train_table,
            weak=weak,
            strong=strong,
            progress=progress,
            router_params={name: params for name in names} if params else None,
            fold_map=_fold_map(ray, address),
        )
    _print_table(result)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.to_json(), indent=2))
        typer.echo(f"wrote {json_path}")
    if report is not None:
        from sizewise.evaluation.report import write_report

        typer.echo(f"wrote {write_report(result, report, target_quality)}")


def _fold_map(ray: bool, address: str | None) -> Any:
    """``--ray``: Ray's fold map for :func:`evaluate` (joining or starting a cluster); None runs locally."""
    if address is not None and not ray:
        raise ConfigError("--address is an option of --ray: add --ray")
    if not ray:
        return None
    from sizewise.distributed.batch import ray_fold_map
    from sizewise.distributed.run import connect

    connect(address)
    return ray_fold_map


def pick_pair(table: Any, weak: str | None, strong: str | None) -> tuple[str, str]:
    """The table's (weak, strong) pair; when both defaults fall on one model (models that score alike),
    an error naming the models and their quality and saying to pick them with ``--weak/--strong``."""
    import numpy as np

    from sizewise.errors import DataError

    try:
        return table.weak_strong(weak, strong)  # type: ignore[no-any-return]
    except DataError as error:
        if "are both" not in str(error):
            raise
        means = np.nanmean(table.quality, axis=0)
        scores = ", ".join(f"{m} {q:.3f}" for m, q in zip(table.models, means, strict=True))
        raise ConfigError(
            f"{error}: the table's models score alike ({scores}); name the pair with --weak MODEL --strong MODEL"
        ) from None


def _print_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from sizewise.evaluation.report import COLUMNS, format_value

    title = (
        f"{result.dataset}: {result.n_prompts} prompts, {result.mode}; weak {result.weak} "
        f"{result.random.q_weak:.3f}, strong {result.strong} {result.random.q_strong:.3f}"
    )
    grid = Table(title=title)
    grid.add_column("router")
    for column in COLUMNS:
        grid.add_column(column, justify="right")
    for item in result.results:
        grid.add_row(item.name, *(format_value(c, item.metrics.get(c)) for c in COLUMNS))
    Console(width=160).print(grid)


def register(app: typer.Typer) -> None:
    """Add ``sizewise eval`` to the app."""
    app.command("eval")(eval_command)
