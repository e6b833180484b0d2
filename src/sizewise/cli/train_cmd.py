"""``sizewise train`` (fit a router on an outcome table, write it) and ``sizewise add-model`` (extend a
saved N-model router with a new model's outcomes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sizewise.cli.eval_cmd import ROUTER_HELP
from sizewise.cli.params import PARAM_HELP, parse_params
from sizewise.errors import ConfigError


def _table(dataset: str | None, table: Path | None) -> Any:
    from sizewise.cli.tables import read_table

    if (dataset is None) == (table is None):
        raise ConfigError("give exactly one of --dataset NAME or --table PATH")
    return read_table(str(table) if table is not None else str(dataset))


def train(
    router: Annotated[str | None, typer.Option("--router", help=ROUTER_HELP)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the router file (.zip).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Named dataset, e.g. routellm-mmlu.")] = None,
    table: Annotated[Path | None, typer.Option("--table", help="Outcome table file (CSV/JSONL/Parquet).")] = None,
    weak: Annotated[str | None, typer.Option("--weak", help="Weak (cheap) model; default from the table.")] = None,
    strong: Annotated[str | None, typer.Option("--strong", help="Strong model; default from the table.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help=f"Router {PARAM_HELP}")] = None,
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
        _train_default(router, out, parse_params(param), given=dataset or table or weak or strong)
        return
    if router is None or out is None:
        raise ConfigError("give --router NAME and --out PATH (or --default-router)")
    estimator = make_router(router, **parse_params(param))  # a ConfigError for a --param the router does not take
    data = _table(dataset, table)
    start = time.perf_counter()
    # Fitting says nothing for seconds to minutes (mf, MiniLM embeddings): say what is running first.
    typer.echo(f"training {router} on {len(data)} prompts of {data.name} ...", err=True)
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
    """Add ``train`` and ``add-model`` to the CLI (``calibrate``: :mod:`sizewise.cli.calibrate_cmd`)."""
    app.command("train")(train)
    app.command("add-model")(add_model)
