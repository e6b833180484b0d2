"""``sizewise choose`` (which model or policy meets a quality target most cheaply) and
``sizewise routes test "prompt"`` (which domain route a prompt hits, and why)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sizewise.cli.params import PARAM_HELP, parse_params
from sizewise.errors import ConfigError

routes_app = typer.Typer(help="Domain routes of the catalog.", no_args_is_help=True)


def _catalog(config: Path | None) -> Any:
    """The catalog at ``config``, or the built-in one."""
    from sizewise.catalog import load_catalog

    return load_catalog(config)


def choose(
    target: Annotated[str, typer.Option("--target", "-t", help="Quality target: 0.7 (absolute) or 95% (of best).")],
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Dataset name (e.g. mmlu-pro) or outcome table file.")
    ] = None,
    # eval, train and calibrate spell it --dataset NAME / --table FILE: the same words work here.
    dataset: Annotated[str | None, typer.Option("--dataset", hidden=True)] = None,
    table_file: Annotated[str | None, typer.Option("--table", hidden=True)] = None,
    models: Annotated[str | None, typer.Option("--models", help="Comma-separated models to consider.")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Catalog giving location, size and p95 of the models (default: built-in)."),
    ] = None,
    max_latency_ms: Annotated[float | None, typer.Option("--max-latency-ms", help="Max p95 latency.")] = None,
    budget_per_1k: Annotated[float | None, typer.Option("--budget-per-1k", help="Max USD per 1,000 requests.")] = None,
    memory_gb: Annotated[float | None, typer.Option("--memory-gb", help="Memory available for local models.")] = None,
    local_only: Annotated[bool, typer.Option("--local-only", help="Data must stay on local models.")] = False,
    router: Annotated[
        str | None, typer.Option("--router", help="Also try a two-model router from the registry (e.g. knn).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write report.md, frontier.png and frontier.html here.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fit / held-out split for policies.")] = 0,
    route_sample: Annotated[
        int, typer.Option("--route-sample", help="Measure domain routes with real embedding matching on N prompts.")
    ] = 0,
    param: Annotated[list[str] | None, typer.Option("--param", help=f"With --router: its {PARAM_HELP}")] = None,
) -> None:
    """Measure every model on a labelled task and recommend the cheapest model or policy meeting the target."""
    from sizewise.cli.tables import is_collect_file, read_table
    from sizewise.evaluation.choose import ChooseLimits, plot_frontier, render_markdown
    from sizewise.evaluation.choose import choose as run_choose
    from sizewise.policy.constraints import catalog_parts

    given = [value for value in (data, dataset, table_file) if value is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one of --data NAME_OR_FILE (or --dataset NAME, --table FILE)")
    data = given[0]
    params = parse_params(param)
    if params and router is None:
        raise ConfigError("--param sets parameters of the --router named with it: give --router NAME")
    kwargs: dict[str, Any] = {}
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if names and data == "mmlu-pro":
        kwargs["models"] = names
    table = read_table(data, names, **kwargs)
    if names and data != "mmlu-pro" and not is_collect_file(data):
        table = table.select_models(names)
    # Catalog entries (location, size, p95) of the table's models: the given catalog, else the built-in one.
    specs = catalog_parts(_catalog(config))[0]
    limits = ChooseLimits(max_latency_ms, budget_per_1k, memory_gb, local_only)
    report = run_choose(
        table, target, limits, specs, router=router, seed=seed, route_sample=route_sample, router_params=params
    )
    plot = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot_frontier(report, str(out / "frontier.png"))
        plot = "frontier.png"
        from sizewise.evaluation.choose.html import write_html

        write_html(report, out / "frontier.html")
    text = render_markdown(report, plot)
    if out is not None:
        (out / "report.md").write_text(text)
        if report.policy is not None:
            import yaml

            (out / "policy.yaml").write_text(yaml.safe_dump(report.policy.config, sort_keys=False, width=120))
        typer.echo(f"wrote {out / 'report.md'}, {out / 'frontier.png'} and {out / 'frontier.html'}")
    typer.echo(text)


@routes_app.command("test")
def routes_test(
    prompt: Annotated[str, typer.Argument(help="The prompt to route.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Catalog file (sizewise.yaml).")] = None,
) -> None:
    """Show which domain route PROMPT hits, its similarity to every route and the nearest examples."""
    from sizewise.policy.constraints import catalog_parts, validate_catalog
    from sizewise.policy.domains import DomainRouter

    models, routes, settings = catalog_parts(_catalog(config))
    validate_catalog(models, routes, settings)
    if not routes:
        raise ConfigError("the catalog defines no routes: add a 'routes:' section (name, examples, models)")
    match = DomainRouter(routes).match_one(prompt)
    typer.echo(match.reason())
    by_name = {route.name: route for route in routes}
    if match.route is not None:
        typer.echo(f"models: {', '.join(by_name[match.route].models)}")
    typer.echo("score per route:")
    for name, score in sorted(match.scores.items(), key=lambda item: -item[1]):
        typer.echo(f"  {name:<24} {score:.3f}")
    typer.echo("nearest examples of the best route:")
    for text, score in match.nearest:
        typer.echo(f"  {score:.3f}  {text[:100]}")


def register(app: typer.Typer) -> None:
    """Add ``choose`` and ``routes`` to the CLI."""
    app.command("choose")(choose)
    app.add_typer(routes_app, name="routes")
