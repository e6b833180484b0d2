"""``sizewise serve``: start the OpenAI-compatible routing gateway (default 127.0.0.1:8000)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Catalog file (sizewise.yaml, or a LiteLLM config.yaml with model_list); default: built-in catalog.",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default from config).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default from config, 8000).")] = None,
    router_dir: Annotated[
        Path | None, typer.Option("--router-dir", help="Folder of router files for router-<name>-<t>.")
    ] = None,
    log_url: Annotated[
        str | None, typer.Option("--log-url", help="Request log SQLAlchemy URL, or 'none' (default from config).")
    ] = None,
) -> None:
    """Serve the gateway: point any OpenAI client at http://HOST:PORT/v1 and use model 'sizewise'."""
    import uvicorn

    from sizewise.catalog import load_catalog
    from sizewise.gateway.app import create_app
    from sizewise.gateway.state import unpack_catalog as _unpack

    catalog = load_catalog(config)
    for note in catalog.notes:
        typer.echo(note, err=True)
    _, settings = _unpack(catalog)
    app = create_app(catalog, router_dir=router_dir, log_url=log_url)
    host = host or settings.host
    port = port if port is not None else settings.port
    typer.echo(f"sizewise gateway on http://{host}:{port}/v1 (model 'sizewise' routes; GET /v1/models lists all)")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command("serve")(serve)
