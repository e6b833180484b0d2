"""``sizewise calibrate``: pick a router's threshold for a target share, quality or budget, say what it will
deliver on held-out prompts, and keep it where the gateway reads it.

``--write`` records the threshold, its interval and the data it came from in the router file's calibration
(the gateway's default threshold for that file); ``--write-catalog FILE`` writes a catalog snippet
(``gateway.router`` and ``gateway.threshold``, the provenance in comments); ``--plot FILE`` draws share,
quality and cost against the threshold with the chosen point. ``--router NAME --param KEY=VALUE --out FILE``
fits a new router on part of the table and calibrates it on prompts it never saw.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from sizewise.cli.eval_cmd import ROUTER_HELP
from sizewise.cli.params import PARAM_HELP, parse_params
from sizewise.errors import ConfigError

PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".html", ".htm")


def calibrate(
    router_file: Annotated[
        Path | None, typer.Option("--router-file", help="A router file written by `sizewise train`.")
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Named dataset with outcomes.")] = None,
    table: Annotated[Path | None, typer.Option("--table", help="Outcome table file (your own logs).")] = None,
    target_share: Annotated[float | None, typer.Option("--target-share", help="Share of strong calls, 0-1.")] = None,
    target_quality: Annotated[
        float | None, typer.Option("--target-quality", help="Fraction of the strong model's quality, e.g. 0.95.")
    ] = None,
    budget_per_1k: Annotated[float | None, typer.Option("--budget-per-1k", help="USD per 1,000 requests.")] = None,
    weak: Annotated[str | None, typer.Option("--weak")] = None,
    strong: Annotated[str | None, typer.Option("--strong")] = None,
    holdout: Annotated[float, typer.Option("--holdout", help="Part of the table kept for the estimates.")] = 0.5,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    write: Annotated[
        bool, typer.Option("--write", help="Record the threshold (with interval and data) in the router file.")
    ] = False,
    write_catalog: Annotated[
        Path | None, typer.Option("--write-catalog", help="Write a catalog snippet (gateway.router/threshold) here.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Save share/quality/cost vs threshold here (PNG; .html: interactive).")
    ] = None,
    router: Annotated[
        str | None, typer.Option("--router", help=f"Fit this router first (instead of --router-file). {ROUTER_HELP}")
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help=f"With --router: {PARAM_HELP}")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="With --router: where the calibrated router goes.")] = None,
    train_share: Annotated[
        float, typer.Option("--train-share", help="With --router: part of the prompts it is fitted on.")
    ] = 0.5,
) -> None:
    """Pick a router's threshold for a target and report expected quality and cost (bootstrap 95% CI)."""
    from sizewise.routers.calibration import calibrate as run

    _check(router_file, router, param, out, write)
    if sum(t is not None for t in (target_share, target_quality, budget_per_1k)) != 1:  # before any fitting
        raise ConfigError("give exactly one target: --target-share S, --target-quality Q or --budget-per-1k USD")
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"--plot {plot}: end the name in .png, .svg or .pdf (a picture) or .html (interactive)")
    data = _table(dataset, table)
    estimator, data, fitted_on = _router(router_file, router, parse_params(param), data, train_share, seed)
    warning = _trained_on(estimator, data) if fitted_on is None else None
    result = run(
        estimator, data, weak=weak, strong=strong, target_share=target_share, target_quality=target_quality,
        budget_per_1k=budget_per_1k, holdout=holdout, seed=seed,
    )  # fmt: skip
    key = _key(target_share, target_quality, budget_per_1k)
    record = {
        **result.to_dict(), "data": data.name, "source": str(table or dataset), "prompts": len(data),
        "holdout": holdout, "seed": seed, "calibrated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **({"fitted_on": fitted_on} if fitted_on else {}),
    }  # fmt: skip
    if as_json:  # the warning inside the JSON: a reader of --json may merge stderr into stdout
        typer.echo(json.dumps({**result.to_dict(), **({"warning": warning} if warning else {})}, indent=2))
    else:
        if warning:
            typer.echo(f"warning: {warning}", err=True)
        _print(result)
    saved = _save(estimator, router_file, out, key, record, write)
    say = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo
    if saved is not None:
        say(f"recorded threshold {result.threshold:.6g} ({key}) in {saved}: the gateway's default for this file")
    if write_catalog is not None:
        say(f"wrote {_write_catalog(write_catalog, saved or router_file, result, record)}")
    if plot is not None:
        say(f"wrote {_plot(estimator, data, result, plot)}")


def _check(
    router_file: Path | None, router: str | None, param: list[str] | None, out: Path | None, write: bool
) -> None:
    """One-line errors for options that do not go together, before any data is read."""
    if (router_file is None) == (router is None):
        raise ConfigError("give exactly one of --router-file FILE (a trained router) or --router NAME (fit one here)")
    if router is None and (param or out is not None):
        raise ConfigError("--param and --out go with --router NAME (a router fitted here); a router file is as saved")
    if router is not None and out is None:
        raise ConfigError("--router NAME fits a new router: give --out FILE for it")
    if out is not None and write:
        raise ConfigError("--out already records the threshold in the new file: drop --write")


def _table(dataset: str | None, table: Path | None) -> Any:
    from sizewise.cli.tables import read_table

    if (dataset is None) == (table is None):
        raise ConfigError("give exactly one of --dataset NAME or --table PATH")
    return read_table(str(table) if table is not None else str(dataset))


def _key(share: float | None, quality: float | None, budget: float | None) -> str:
    """The calibration key as router files record it (``share_0.3``, ``quality_0.95``, ``budget_5``)."""
    for kind, value in (("share", share), ("quality", quality), ("budget", budget)):
        if value is not None:
            return f"{kind}_{value:g}"
    return "none"  # no target: calibrate() raises its own one-line error first


def _router(
    router_file: Path | None, name: str | None, params: dict[str, Any], data: Any, train_share: float, seed: int
) -> tuple[Any, Any, dict[str, Any] | None]:
    """(router, the table to calibrate on, what it was fitted on or None): a saved router and the whole
    table, or a new one fitted on ``train_share`` of the distinct prompts and the rest to calibrate on."""
    import numpy as np

    from sizewise.routers.base import load_router, make_router

    if router_file is not None:
        if not router_file.is_file():
            raise ConfigError(f"--router-file {router_file}: no such file (write one with `sizewise train`)")
        return load_router(router_file), data, None
    assert name is not None
    if not 0 < train_share < 1:
        raise ConfigError(f"--train-share must lie strictly between 0 and 1, got {train_share}")
    estimator = make_router(name, **params)  # a parameter the router does not take fails here, naming it
    texts = np.array(data.texts, dtype=object)
    unique = np.random.default_rng(seed).permutation(np.unique(texts))
    fit_texts = set(unique[: max(1, int(train_share * len(unique)))])
    in_fit = np.array([t in fit_texts for t in texts])
    typer.echo(f"training {name} on {int(in_fit.sum())} of {len(data)} prompts of {data.name} ...", err=True)
    try:
        estimator.fit(data.subset(np.flatnonzero(in_fit)))
    except TypeError as error:  # a --param of the wrong type
        raise ConfigError(f"router {name!r}: bad parameter ({error})") from None
    from sizewise.evaluation.overlap import training_sketch

    # As `train` records it: a later `calibrate` of this file on these prompts then warns (in-sample).
    estimator.provenance_ = {"training_prompts": training_sketch(list(texts[in_fit]), data.name)}
    fitted_on = {"data": data.name, "prompts": int(in_fit.sum()), "train_share": train_share, "seed": seed}
    return estimator, data.subset(np.flatnonzero(~in_fit)), fitted_on


def _trained_on(estimator: Any, data: Any) -> str | None:
    """A warning when most of the calibration table's prompts were the router's training prompts."""
    from sizewise.evaluation.overlap import seen_share

    seen = seen_share(getattr(estimator, "provenance_", {}).get("training_prompts"), data.texts)
    if seen is None or seen[0] < 0.1:
        return None
    return (
        f"about {seen[0]:.0%} of these prompts were the router's training prompts (estimated from {seen[1]}): "
        "in-sample scores flatter it; calibrate on outcomes it was not trained on"
    )


def _print(result: Any) -> None:
    def ci(pair: tuple[float, float] | None, fmt: str) -> str:
        return "" if pair is None else f" (95% CI {pair[0]:{fmt}} - {pair[1]:{fmt}})"

    typer.echo(f"target:      {result.target}")
    typer.echo(f"threshold:   {result.threshold:.6g}   (route to {result.strong} when score >= threshold)")
    typer.echo(f"strong share {result.share:.3f}{ci(result.share_ci, '.3f')}")
    typer.echo(
        f"quality      {result.quality:.4f}{ci(result.quality_ci, '.4f')}  "
        f"[weak {result.weak_quality:.4f}, strong {result.strong_quality:.4f}]"
    )
    if result.cost_per_1k is not None:
        typer.echo(
            f"cost/1k req  ${result.cost_per_1k:.4f}{ci(result.cost_ci, '.4f')}  "
            f"[weak ${result.weak_cost_per_1k:.4f}, strong ${result.strong_cost_per_1k:.4f}]"
        )
    typer.echo(f"from {result.n_calibration} calibration and {result.n_heldout} held-out prompts")


def _save(
    estimator: Any, router_file: Path | None, out: Path | None, key: str, record: dict[str, Any], write: bool
) -> Path | None:
    """Save the router with ``record`` as its default calibration (other recorded targets kept): to ``out``,
    or over ``router_file`` with ``write`` (atomically: a failed write leaves the old file)."""
    target = out if out is not None else (router_file if write else None)
    if target is None:
        return None
    provenance = dict(getattr(estimator, "provenance_", {}))
    old = provenance.get("calibration")
    targets = dict(old.get("targets") or {}) if isinstance(old, dict) else {}
    provenance["calibration"] = {"default": key, "targets": {**targets, key: record}}
    if out is not None:
        return Path(estimator.save(out, provenance=provenance))
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(suffix=".zip", dir=target.parent)
    os.close(handle)
    try:
        estimator.save(scratch, provenance=provenance)
        os.replace(scratch, target)
    finally:
        Path(scratch).unlink(missing_ok=True)
    return target


def describe_calibration(provenance: dict[str, Any]) -> str | None:
    """``share_0.3 on routellm-mmlu, 2026-12-06, held-out share 0.30 [0.27, 0.33]`` for a file's default
    calibration; None when the file records none or not these fields (files of older versions)."""
    calibration = provenance.get("calibration")
    if not isinstance(calibration, dict) or not isinstance(calibration.get("targets"), dict):
        return None
    key = calibration.get("default")
    chosen = calibration["targets"].get(key)
    if not isinstance(chosen, dict):
        return None
    parts = [f"{key} on {chosen['data']}" if chosen.get("data") else str(key)]
    if chosen.get("calibrated"):
        parts.append(str(chosen["calibrated"])[:10])
    share_ci = chosen.get("share_ci")
    if isinstance(chosen.get("share"), int | float) and isinstance(share_ci, list | tuple) and len(share_ci) == 2:
        parts.append(f"held-out share {chosen['share']:.2f} [{share_ci[0]:.2f}, {share_ci[1]:.2f}]")
    return ", ".join(parts)


def _write_catalog(path: Path, router_file: Path | None, result: Any, record: dict[str, Any]) -> Path:
    """A catalog snippet to merge into sizewise.yaml: the router and its threshold, the provenance in comments."""
    import yaml

    lines = [
        f"# sizewise calibrate, {record['calibrated']}: {result.target} on {record['data']}"
        + (f" ({record['source']})" if record["source"] != record["data"] else ""),
        f"# {result.n_calibration} calibration and {result.n_heldout} held-out prompts; on the held-out ones:",
        f"#   share to {result.strong} {result.share:.3f} (95% CI {result.share_ci[0]:.3f} - {result.share_ci[1]:.3f})",
        f"#   quality {result.quality:.4f} (95% CI {result.quality_ci[0]:.4f} - {result.quality_ci[1]:.4f}); "
        f"weak {result.weak} {result.weak_quality:.4f}, strong {result.strong_quality:.4f}",
    ]
    if result.cost_per_1k is not None and result.cost_ci is not None:
        lines.append(
            f"#   USD per 1k requests {result.cost_per_1k:.4f} ({result.cost_ci[0]:.4f} - {result.cost_ci[1]:.4f})"
        )
    gateway: dict[str, Any] = {"threshold": round(float(result.threshold), 6)}
    if router_file is not None:
        gateway = {"router": str(router_file.resolve()), **gateway}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump({"gateway": gateway}, sort_keys=False))
    return path


def _plot(estimator: Any, data: Any, result: Any, path: Path) -> Path:
    """The threshold curves on every prompt of ``data`` with outcomes for the pair, the chosen point marked."""
    import numpy as np

    from sizewise.evaluation.calibration_plot import plot_calibration, threshold_curve

    q_weak, q_strong = data.column(result.weak), data.column(result.strong)
    rows = np.flatnonzero(~(np.isnan(q_weak) | np.isnan(q_strong)))
    cost = None
    if data.cost is not None:
        pair = data.cost[:, [data.index_of(result.weak), data.index_of(result.strong)]][rows]
        cost = None if np.isnan(pair).any() else pair
    scores = np.asarray(estimator.score_table(data.subset(rows)), dtype=float)
    curve = threshold_curve(scores, q_weak[rows], q_strong[rows], cost)
    title = (
        f"{data.name}: {result.target}; curves on {len(rows)} prompts, point and 95% CI on {result.n_heldout} held out"
    )
    if path.suffix.lower() in (".html", ".htm"):
        from sizewise.evaluation.calibration_html import write_calibration_html

        return write_calibration_html(curve, result, path, title)
    return plot_calibration(curve, result, path, title)


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` to the CLI."""
    app.command("calibrate")(calibrate)
