"""Where the router and scorer commands keep their files: the same folder the gateway reads.

``--router-dir`` first, else ``gateway.router_dir`` of the ``--config`` catalog (relative to the catalog
file, as the gateway resolves it), else ``$SIZEWISE_ROUTER_DIR``, else ``./routers``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

RouterDirOption = Annotated[
    Path | None,
    typer.Option(
        "--router-dir",
        help="Router directory; default: gateway.router_dir of --config, else $SIZEWISE_ROUTER_DIR, else ./routers.",
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Catalog whose gateway.router_dir is the router directory.")
]


def resolve_router_dir(explicit: Path | None, config: Path | None = None) -> Path:
    """The router directory the options name (see the module's docstring for the order)."""
    if explicit is not None:
        return explicit
    if config is not None:
        from sizewise.catalog import load_catalog
        from sizewise.errors import ConfigError

        catalog = load_catalog(config)
        configured = catalog.spec.gateway.router_dir
        if configured is None:
            raise ConfigError(f"{config} sets no gateway.router_dir: add one, or give --router-dir")
        return catalog.resolve(configured)
    return Path(os.environ.get("SIZEWISE_ROUTER_DIR", "routers"))
