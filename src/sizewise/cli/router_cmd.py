"""``sizewise router retrain|promote|rollback|history``: learn from judged traffic without making routing worse.

``retrain`` refits the current router on an outcome table (``sizewise outcomes export`` writes one),
records the candidate as a new version in the router directory, and promotes it only when the paired
guard shows it better at the operating point (see :mod:`sizewise.learn.retrain`). ``promote`` makes any
recorded version current by hand; ``rollback`` restores the one before; ``history`` lists the log.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from sizewise.cli.router_dir import ConfigOption, RouterDirOption, resolve_router_dir
from sizewise.errors import ConfigError

router_app = typer.Typer(help="Retrain, promote, roll back and list router versions.", no_args_is_help=True)


def _versions(router_dir: Path | None, config: Path | None) -> Any:
    """The router directory's versions; with ``--config`` whose gateway shares state (``state_url``), a
    promotion or rollback is also recorded in that database, where every replica picks it up."""
    from sizewise.learn.versions import RouterVersions

    url = None
    if config is not None:
        from sizewise.catalog import load_catalog
        from sizewise.serve.session_sql import state_url

        url = state_url(load_catalog(config).spec.gateway)
    return RouterVersions(resolve_router_dir(router_dir, config), state_url=url)


def _incumbent(spec: str | None, versions: Any) -> tuple[Any, Path, str | None]:
    """(router, its file, its version) for ``--incumbent`` (a file, ``default``) or the directory's current one."""
    from sizewise.routers.base import load_router
    from sizewise.routers.retrained import RetrainedRouter  # noqa: F401 - registers it for load_router

    current = versions.current()
    if spec is None:
        if current is not None:
            path = versions.path(current)
            return load_router(path), path, current
        spec = "default"
    if spec == "default":
        from importlib.resources import files

        path = Path(str(files("sizewise.routers").joinpath("pretrained", "default.zip")))
    else:
        path = Path(spec)
    return load_router(path), path, None


def _weights(table: Any) -> Any:
    """1 / inclusion_p where the table says how likely shadow judging was to pick each request, else None."""
    import numpy as np
    import pandas as pd

    if "inclusion_p" not in table.prompts.columns:
        return None
    p = pd.to_numeric(table.prompts["inclusion_p"], errors="coerce").to_numpy(float)
    return np.where(np.isfinite(p) & (p > 0), 1.0 / np.where(p > 0, p, 1.0), 1.0)


@router_app.command("retrain")
def retrain_command(
    outcomes: Annotated[str, typer.Option("--outcomes", help="Judged requests: an outcome table file or dataset.")],
    incumbent: Annotated[
        str | None,
        typer.Option("--incumbent", help="Router file or 'default'; default: the directory's current version."),
    ] = None,
    router_dir: RouterDirOption = None,
    config: ConfigOption = None,
    target: Annotated[
        str | None, typer.Option("--target", help="share:S, quality:Q or budget:USD_PER_1K; default: the incumbent's.")
    ] = None,
    shrink: Annotated[
        float, typer.Option("--shrink", help="Prior strength toward the incumbent, in outcomes.")
    ] = 300.0,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Promote a candidate the guard passes (default).")
    ] = True,
    weak: Annotated[str | None, typer.Option("--weak", help="The cheap model; default: the table's.")] = None,
    strong: Annotated[str | None, typer.Option("--strong", help="The strong model; default: the table's.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Refit on judged requests; keep the candidate as a version; promote it only if shown better."""
    from sizewise.cli.tables import read_table
    from sizewise.learn.retrain import incumbent_target, parse_target, provenance, retrain

    versions = _versions(router_dir, config)
    router, path, parent = _incumbent(incumbent, versions)
    table = read_table(outcomes)
    goal = parse_target(target) if target is not None else incumbent_target(router)
    pair = table.weak_strong(weak, strong) if weak or strong else None
    result = retrain(router, table, goal, shrink=shrink, weights=_weights(table), seed=seed, pair=pair)
    if parent is None:  # the first retrain: keep the incumbent itself as a version, so rollback can restore it
        parent = versions.add(path, note=f"incumbent {path}")
        versions.promote(parent, reason="the incumbent, before the first retrain")
    with tempfile.TemporaryDirectory() as scratch:
        candidate_file = Path(scratch) / "candidate.zip"
        result.candidate.save(candidate_file, provenance=provenance(result, table, parent))
        version = versions.add(candidate_file, note=f"retrained on {result.n_outcomes} judged requests of {table.name}")
    cmp = result.comparison
    chosen = result.calibration["targets"][goal.key]
    typer.echo(
        f"{version}: {result.n_outcomes} judged requests; at share {cmp.share:.2f} the candidate's quality is "
        f"{cmp.candidate_quality:.4f} vs {cmp.incumbent_quality:.4f} ({cmp.changed} decisions differ)"
    )
    typer.echo(f"threshold for {goal.key} on this traffic: {chosen['threshold']:.4f} (share {chosen['share']:.2f})")
    if cmp.promote and promote:
        versions.promote(version, reason=cmp.reason, details={"guard": cmp.to_dict()})
        typer.echo(f"promoted {version} ({cmp.reason}); `sizewise router rollback` undoes it")
    else:
        typer.echo(f"kept {parent} ({cmp.reason if not cmp.promote else 'not promoted: --no-promote'})")


@router_app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="A recorded version, e.g. v0003.")],
    router_dir: RouterDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Make a recorded version current by hand (logged as manual)."""

    event = _versions(router_dir, config).promote(version, reason="promoted by hand")
    typer.echo(f"promoted {event['to']} (was {event['from'] or 'none'})")


@router_app.command("rollback")
def rollback_command(
    to: Annotated[str | None, typer.Option("--to", help="The version to restore; default: the one before.")] = None,
    router_dir: RouterDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Restore the version that was current before the last promotion."""

    event = _versions(router_dir, config).rollback(to)
    typer.echo(f"rolled back to {event['to']} (was {event['from']})")


@router_app.command("history")
def history_command(router_dir: RouterDirOption = None, config: ConfigOption = None) -> None:
    """Every add, promotion and rollback, oldest first."""
    from sizewise.learn.versions import RouterVersions

    versions = RouterVersions(resolve_router_dir(router_dir, config))
    events = versions.history()
    if not events:
        raise ConfigError(
            f"no router history in {versions.root}: `sizewise router retrain` records the first version "
            "(or name the folder with --router-dir or --config)"
        )
    for event in events:
        where = event.get("version") or f"{event.get('from') or '-'} -> {event.get('to')}"
        typer.echo(f"{event['time']}  {event['event']:<8} {where}  {event.get('reason') or event.get('note') or ''}")
    typer.echo(f"current: {versions.current() or 'none'}")


def register(app: typer.Typer) -> None:
    """Add ``router`` to the CLI."""
    app.add_typer(router_app, name="router")
