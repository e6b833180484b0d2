"""``sizewise train`` (fit a router on an outcome table, write it), ``sizewise add-model`` (extend a
saved N-model router with a new model's outcomes) and ``sizewise calibrate`` (pick its threshold for
a target share / quality / budget, with held-out estimates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sizewise.cli.eval_cmd import ROUTER_HELP
from sizewise.errors import ConfigError


def _table(dataset: str | None, table: Path | None) -> Any:
    from sizewise.cli.tables import read_table

    if (dataset is None) == (table is None):
        raise ConfigError("give exactly one of --dataset NAME or --table PATH")
    return read_table(str(table) if table is not None else str(dataset))


def _params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param wants KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def train(
    router: Annotated[str | None, typer.Option("--router", help=ROUTER_HELP)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the router file (.zip).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Named dataset, e.g. routellm-mmlu.")] = None,
    table: Annotated[Path | None, typer.Option("--table", help="Outcome table file (CSV/JSONL/Parquet).")] = None,
    weak: Annotated[str | None, typer.Option("--weak", help="Weak (cheap) model; default from the table.")] = None,
    strong: Annotated[str | None, typer.Option("--strong", help="Strong model; default from the table.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Router parameter KEY=VALUE (repeatable).")] = None,
    default_router: Annotated[
        bool,
        typer.Option(
            "--default-router",
            help="Rebuild the pretrained default router from its recipe (the embedded pair's own outcomes, "
            "collected by bench/collect_embedded.py into $SIZEWISE_COLLECTED; calibrated, recording its "
            "embedding); --out defaults to the package's pretrained/default.zip.",
        ),
    ] = False,
) -> None:
    """Fit a router on an outcome table and save it (or rebuild the default router: --default-router)."""
    import time

    from sizewise.routers.base import make_router

    if default_router:
        _train_default(router, out, _params(param), given=dataset or table or weak or strong)
        return
    if router is None or out is None:
        raise ConfigError("give --router NAME and --out PATH (or --default-router)")
    estimator = make_router(router, **_params(param))  # a ConfigError for a --param the router does not take
    data = _table(dataset, table)
    start = time.perf_counter()
    try:
        estimator.fit(data, weak=weak, strong=strong)
    except TypeError as error:  # a --param of the wrong type
        raise ConfigError(f"router {router!r}: bad parameter ({error})") from None
    from sizewise.evaluation.overlap import training_sketch

    # The training prompts' sketch lets `calibrate` warn when it is handed the same prompts (in-sample).
    path = estimator.save(out, provenance={"training_prompts": training_sketch(data.texts, data.name)})
    typer.echo(
        f"trained {router} on {len(data)} prompts of {data.name} "
        f"(weak {getattr(estimator, 'weak_', weak)}, strong {getattr(estimator, 'strong_', strong)}) "
        f"in {time.perf_counter() - start:.1f}s -> {path}"
    )


def _train_default(router: str | None, out: Path | None, params: dict[str, Any], given: object) -> None:
    from sizewise.evaluation.default_router import DEFAULT_PARAMS, build_default_router, shipped_path

    if given:
        raise ConfigError("--default-router trains on its own recipe: drop --dataset, --table, --weak and --strong")
    path = out or shipped_path()
    if router is None:  # the shipped recipe: gbdt on the static embedding
        router, params = "gbdt", {**DEFAULT_PARAMS, **params}
    build_default_router(path, router, params, say=typer.echo)
    typer.echo(f"default router -> {path}")


def calibrate(
    router_file: Annotated[Path, typer.Option("--router-file", help="A router file written by `sizewise train`.")],
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
) -> None:
    """Pick a router's threshold for a target and report expected quality and cost (bootstrap 95% CI)."""
    from sizewise.routers.base import load_router
    from sizewise.routers.calibration import calibrate as run

    estimator = load_router(router_file)
    data = _table(dataset, table)
    warning = _trained_on(estimator, data)
    result = run(
        estimator,
        data,
        weak=weak,
        strong=strong,
        target_share=target_share,
        target_quality=target_quality,
        budget_per_1k=budget_per_1k,
        holdout=holdout,
        seed=seed,
    )
    if as_json:  # the warning inside the JSON: a reader of --json may merge stderr into stdout
        typer.echo(json.dumps({**result.to_dict(), **({"warning": warning} if warning else {})}, indent=2))
        return
    if warning:
        typer.echo(f"warning: {warning}", err=True)

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


MIN_OUTCOMES = 20  # below this a new model's two factors are noise


def add_model(
    router_file: Annotated[Path, typer.Option("--router-file", help="A saved N-model router (mf) to extend.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the extended router (.zip).")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="Named dataset with the outcomes.")] = None,
    table: Annotated[
        Path | None, typer.Option("--table", help="Outcome table or `sizewise collect` file with the new model.")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Model to add or refit (repeatable); default: all new ones.")
    ] = None,
) -> None:
    """Add models to a saved router from a few hundred of their outcomes, keeping what it learned."""
    import numpy as np

    from sizewise.errors import DataError
    from sizewise.routers.base import load_router

    estimator: Any = load_router(router_file)  # only routers with add_model (mf) get past the check below
    if not hasattr(estimator, "add_model"):
        raise ConfigError(
            f"{router_file} holds a {estimator.name!r} router, which cannot add models (mf can); "
            "retrain it with `sizewise train` instead"
        )
    data = _table(dataset, table)
    known_models = list(estimator.models_)
    names = list(model or [m for m in data.models if m not in known_models])
    if not names:
        raise ConfigError(f"the router already has every model of {data.name}; name one with --model to refit it")
    added = []
    for name in names:
        quality = data.column(name)  # an unknown name raises a clear error listing the table's models
        seen = ~np.isnan(quality)
        if seen.sum() < MIN_OUTCOMES:
            raise DataError(f"{name}: {int(seen.sum())} outcomes in {data.name}; adding a model needs {MIN_OUTCOMES}")
        texts = [t for t, keep in zip(data.texts, seen, strict=True) if keep]
        estimator.add_model(name, texts, quality[seen])
        verb = "refitted" if name in known_models else "added"
        added.append(f"{verb} {name} ({int(seen.sum())} outcomes, accuracy {quality[seen].mean():.3f})")
    path = estimator.save(out)
    typer.echo(f"{'; '.join(added)}; {estimator.name} router now has {len(estimator.models_)} models -> {path}")


def register(app: typer.Typer) -> None:
    """Add ``train``, ``add-model`` and ``calibrate`` to the CLI."""
    app.command("train")(train)
    app.command("add-model")(add_model)
    app.command("calibrate")(calibrate)
