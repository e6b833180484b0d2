"""``sizewise serve``: start the OpenAI-compatible routing gateway (default 127.0.0.1:8000).

It says what it serves before it serves: the catalog, each model, the default policy, the router and
threshold and where each came from. The port is bound first (a taken one is one error line, no banner);
with ``--warm`` the local models and the router load while ``GET /readyz`` answers 503, and the banner
comes once they are loaded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sizewise.errors import ConfigError


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
    router: Annotated[
        str | None, typer.Option("--router", help="Router file or name for the default policy (overrides config).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="The default router's threshold (overrides config).")
    ] = None,
    warm: Annotated[
        bool, typer.Option("--warm", help="Load the local models and the router before saying ready (GET /readyz).")
    ] = False,
    ray: Annotated[
        bool, typer.Option("--ray", help="Serve on Ray Serve: gateway replicas, one deployment per local model.")
    ] = False,
    replicas: Annotated[int | None, typer.Option("--replicas", help="Gateway replicas, --ray (default 1).")] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster to join under --ray (default: start a local one).")
    ] = None,
) -> None:
    """Serve the gateway: point any OpenAI client at http://HOST:PORT/v1 and use model 'sizewise'."""
    from sizewise.catalog import load_catalog
    from sizewise.gateway.app import create_app
    from sizewise.gateway.state import unpack_catalog as _unpack

    catalog = load_catalog(config)
    for note in catalog.notes:
        typer.echo(note, err=True)
    _, settings = _unpack(catalog)
    flags = {key: value for key, value in (("router", router), ("threshold", threshold)) if value is not None}
    settings = settings.model_copy(update=flags)
    if ray or replicas is not None or address is not None:
        return _serve_on_ray(catalog, settings, ray, replicas, address, warm, host, port, router_dir, log_url)
    _access_log_to_stderr()
    app = create_app(catalog, settings=settings, router_dir=router_dir, log_url=log_url)
    state = app.state.gateway
    for line in startup_lines(config, state, set(flags)):
        typer.echo(line)
    host = host or settings.host
    port = port if port is not None else settings.port
    sock = _bind(host, port)  # before any banner: a taken port is an error line, not a banner then an exit
    state.ready = not warm
    banner = f"sizewise gateway on http://{host}:{port}/v1 (model 'sizewise' routes; GET /v1/models lists all)"
    server = _Server(app, state, banner, warm)
    server.run(sockets=[sock])
    if server.failure is not None:
        raise ConfigError(server.failure)


def _serve_on_ray(
    catalog: Any, settings: Any, ray: bool, replicas: int | None, address: str | None, warm: bool, *where: Any
) -> None:
    """``--ray``: the gateway and the local models as Ray Serve deployments (docs/scaling.md)."""
    if not ray:
        raise ConfigError("--replicas and --address are options of --ray: add --ray")
    if replicas is not None and replicas < 1:
        raise ConfigError(f"--replicas must be at least 1, got {replicas}")
    from sizewise.distributed.run import serve_forever

    host, port, router_dir, log_url = where
    host = host or settings.host
    port = port if port is not None else settings.port
    _bind(host, port).close()  # a taken port is one line here, before Ray starts
    serve_forever(
        catalog, settings, address=address, echo=typer.echo, replicas=replicas or 1, host=host, port=port,
        router_dir=router_dir, log_url=log_url, warm=warm,
    )  # fmt: skip


def startup_lines(config: Path | None, state: Any, flags: set[str]) -> list[str]:
    """What the gateway will serve: catalog, models, default policy, router and threshold with their sources."""
    from sizewise.policy.routing import BypassPolicy, RouterPolicy

    engine, settings = state.engine, state.settings
    lines = [f"catalog: {config if config is not None else 'built-in'}"]
    for spec in engine.models:
        lines.append(f"model: {spec.name} ({spec.backend}, {spec.location})")
    source = "catalog gateway.default_policy" if settings.default_policy != "sizewise" else "default"
    lines.append(f"default policy: {settings.default_policy} ({source})")
    policy = engine.policy("sizewise")
    if isinstance(policy, BypassPolicy):
        lines.append(f"router: none ({policy.reason}: every request goes to {policy.spec.name})")
    elif isinstance(policy, RouterPolicy):
        lines.append(f"router: {_router_name(engine, settings, flags, policy)}")
        lines.append(f"threshold: {policy.threshold:g} ({_threshold_source(settings, flags, policy)})")
        lines.append(f"routes between: {policy.small.name} (score < threshold) and {policy.big.name}")
    lines.append(f"access log: {'on' if settings.access_log else 'off'} (gateway.access_log)")
    return lines


def _router_name(engine: Any, settings: Any, flags: set[str], policy: Any) -> str:
    from sizewise.policy.routing import HeuristicScorer, shipped_router

    if settings.router:
        return f"{settings.router} ({'--router' if 'router' in flags else 'catalog gateway.router'})"
    if isinstance(policy.scorer, HeuristicScorer):
        return "heuristic scorer (no router file found)"
    local = engine.env.router_dir / "default.zip" if engine.env.router_dir is not None else None
    if local is not None and local.is_file():
        return f"{local} (default.zip in the router folder)"
    return f"{shipped_router()[0]} (built-in default)"


def _threshold_source(settings: Any, flags: set[str], policy: Any) -> str:
    if "threshold" in flags:
        return "--threshold"
    if settings.threshold is not None:
        return "catalog gateway.threshold"
    from sizewise.policy.routing import HeuristicScorer

    if not isinstance(policy.scorer, HeuristicScorer) and getattr(policy.scorer, "threshold_", None) is not None:
        from sizewise.cli.calibrate_cmd import describe_calibration

        detail = describe_calibration(getattr(policy.scorer, "provenance_", {}))
        return "calibration recorded in the router file" + (f": {detail}" if detail else "")
    return "default"


def _bind(host: str, port: int) -> socket.socket:
    """A bound socket, or a one-line :class:`ConfigError` naming the port and what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT only, never a live server
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; another server may hold port {port}: "
            "stop it or pick a free one with --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def _access_log_to_stderr() -> None:
    """Send the ``sizewise.access`` lines to stderr, timestamped (Python's default shows warnings only)."""
    log = logging.getLogger("sizewise.access")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class _Server:
    """uvicorn's server, with the warm-up and the banner once it listens (uvicorn imported lazily)."""

    def __init__(self, app: Any, state: Any, banner: str, warm: bool) -> None:
        import uvicorn

        outer = self
        self.failure: str | None = None

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                if not self.should_exit:
                    await outer._ready(self)

        from sizewise.gateway.header_deadline import header_deadline_protocol

        # uvicorn bounds no request's headers: a connection trickling them (slowloris) would be held for ever.
        protocol = header_deadline_protocol(state.settings.header_timeout_s)
        config = uvicorn.Config(app, access_log=False, log_level="warning", http=protocol)
        self.server = Server(config)
        self.state, self.banner, self.warm = state, banner, warm

    def run(self, sockets: list[socket.socket]) -> None:
        self.server.run(sockets=sockets)

    async def _ready(self, server: Any) -> None:
        if self.warm:  # the server answers meanwhile: /readyz says 503 until this is done
            from sizewise.gateway.readiness import warm_up

            try:
                await asyncio.to_thread(warm_up, self.state.engine, lambda line: typer.echo(line, err=True))
            except Exception as error:  # a model that cannot load: one line, and the server stops
                self.failure = f"warm-up failed: {type(error).__name__}: {error}"
                server.should_exit = True
                return
            self.state.ready = True
        typer.echo(self.banner)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command("serve")(serve)
