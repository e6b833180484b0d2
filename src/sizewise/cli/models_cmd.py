"""``sizewise models``: list the catalog, install (assemble + verify) and re-verify the embedded models."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(help="The model catalog and the embedded default models.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Catalog file (sizewise.yaml); default: built-in catalog.")
]
KeysArgument = Annotated[list[str] | None, typer.Argument(help="Embedded models (tiny, small, big); default all.")]


@models_app.command("list")
def list_models(config: ConfigOption = None) -> None:
    """Print the catalog's models, smallest first, with where they run and what they cost."""
    from sizewise.catalog import embedded, load_catalog

    catalog = load_catalog(config)
    ladder = [m.name for m in catalog.ladder()]
    order = ladder + [name for name in catalog.names() if name not in ladder]
    typer.echo(f"{'name':<24} {'kind':<10} {'params_b':>8} {'$/1M in':>8} {'$/1M out':>8} {'where':<7} backend  state")
    for name in order:
        model = catalog.get(name)
        state = ""
        if "embedded" in model.settings:
            info = embedded.status(str(model.settings["embedded"]))
            state = "verified" if info["verified"] else ("installed" if info["installed"] else "NOT INSTALLED")
            state = f"embedded {model.settings['embedded']}: {state}"
        size = "?" if model.params_b is None else f"{model.params_b:g}"
        typer.echo(
            f"{name:<24} {model.kind:<10} {size:>8} {model.price_in:>8.4g} {model.price_out:>8.4g} "
            f"{model.location:<7} {model.backend:<8} {state}"
        )


@models_app.command("install")
def install(keys: KeysArgument = None) -> None:
    """Assemble the embedded models into the cache and check their sha256 (no network)."""
    from sizewise.catalog import embedded
    from sizewise.progress import Progress

    todo = list(keys or embedded.EMBEDDED)
    with Progress(len(todo), "models install", "models") as bar:
        for key in todo:
            bar.note(key)
            start = time.perf_counter()
            path = embedded.model_path(key)
            if key == "vision":  # the .pth is converted to ONNX once, here rather than at the first image
                from sizewise.backends.vision import onnx_file

                path = onnx_file(key)
            name = embedded.get_embedded(key).name
            typer.echo(f"{key:<6} {name:<20} ok  {path}  ({time.perf_counter() - start:.1f}s)")
            bar.update(1)
    if not keys:  # a full install (``make setup``) also prepares the default router's embedding table
        _install_static_table()


def _install_static_table() -> None:
    """Build the static embedding table the default router uses (~20 s once), so no request waits for it."""
    from sizewise.embedding import static
    from sizewise.errors import ConfigError

    start = time.perf_counter()
    try:
        static.get_table()
    except ConfigError as error:  # MiniLM not installed: the router builds it on first use instead
        typer.echo(f"static embedding table skipped: {error}")
        return
    typer.echo(f"static embedding table ok  {static.table_path()}  ({time.perf_counter() - start:.1f}s)")


GenerateOption = Annotated[
    bool,
    typer.Option(
        "--generate",
        help="Also load each model in a child process and generate a few tokens: a llama.cpp build this CPU "
        "cannot run fails here with one line, not later with a core dump.",
    ),
]


@models_app.command("verify")
def verify(keys: KeysArgument = None, generate: GenerateOption = False) -> None:
    """Re-hash the embedded model files, ignoring the cached "verified" markers; optionally generate."""
    from sizewise.catalog import embedded

    for key in keys or list(embedded.EMBEDDED):
        path = embedded.verify(key)
        typer.echo(f"{key:<6} sha256 ok  {path}")
        if generate and path.suffix == ".gguf":  # the speech and vision models have no chat to generate
            typer.echo(f"{key:<6} generate ok  {_generate(key)}")


def _generate(key: str) -> str:
    """Generate a few tokens with embedded model ``key`` in a worker process; one line and exit 1 on failure."""
    import asyncio

    from sizewise.backends.llamacpp import LlamaCppBackend
    from sizewise.catalog import embedded, load_catalog
    from sizewise.catalog.schema import LlamaCppSettings
    from sizewise.core.chat import BackendError, ChatRequest

    catalog = load_catalog(None)
    spec = next(m for m in catalog if m.settings.get("embedded") == key)
    settings = LlamaCppSettings.model_validate({**spec.settings, "isolate": True})
    backend = LlamaCppBackend(spec, settings, path=embedded.model_path(key))
    request = ChatRequest(messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0)
    start = time.perf_counter()
    try:
        result = asyncio.run(backend.complete(request))
    except BackendError as error:
        typer.echo(f"sizewise models verify: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        backend.process().close()
    return f"{result.completion_tokens} tokens in a worker process ({time.perf_counter() - start:.1f}s)"


def register(app: typer.Typer) -> None:
    """Add ``sizewise models`` to the CLI."""
    app.add_typer(models_app, name="models")
