"""Connect to (or start) a Ray cluster and run the gateway on Ray Serve: ``sizewise serve --ray``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sizewise.catalog.schema import GatewaySettings
from sizewise.errors import ConfigError


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto``, ``ray://...`` or ``HOST:PORT``), or start a local one."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network but 127.0.0.1 unless asked
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'sizewise[ray]'") from None
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # "local": a new cluster, never one a `ray start` left running (Ray's default for no address)
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"cannot join the Ray cluster at {address or 'a new local one'}: {first}") from None


def deploy(
    catalog: Any,
    settings: GatewaySettings,
    *,
    replicas: int,
    host: str,
    port: int,
    router_dir: str | Path | None = None,
    log_url: str | None = None,
    warm: bool = False,
) -> list[str]:
    """Deploy the gateway (``replicas`` replicas) and its model deployments; the deployments' names.

    Serve's HTTP proxy listens on ``host:port`` (set when Serve first starts on the cluster) and hands
    each request to a front, which hands it to a live gateway replica. With ``warm`` the models load (and
    answer one token) before the deployments count as running, so this returns when they are ready.
    """
    from ray import serve

    from sizewise.distributed.deployments import APP_NAME, gateway_application

    if replicas < 1:
        raise ConfigError(f"--replicas must be at least 1, got {replicas}")
    serve.start(http_options={"host": host, "port": port})
    _check_listening(host, port)
    app = gateway_application(catalog, settings, replicas=replicas, router_dir=router_dir, log_url=log_url, warm=warm)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    status = serve.status().applications[APP_NAME]
    return sorted(status.deployments)


def _check_listening(host: str, port: int) -> None:
    """Serve keeps the address it first started with on a cluster: another one is an error, not a wrong banner."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    actual = client.http_config if client is not None else None
    if actual is not None and (actual.host, actual.port) != (host, port):
        raise ConfigError(
            f"Ray Serve already listens on {actual.host}:{actual.port} on this cluster; "
            f"serve there (--host {actual.host} --port {actual.port}) or run `serve shutdown` first"
        )


def serve_forever(
    catalog: Any, settings: GatewaySettings, *, address: str | None, echo: Callable[[str], None], **kw: Any
) -> None:
    """``sizewise serve --ray``: deploy, say what runs where, and keep the driver alive until Ctrl-C."""
    from ray import serve

    connect(address)
    try:  # Ctrl-C while deploying, too, takes the deployments down
        names = deploy(catalog, settings, **kw)
        echo(f"ray: deployments {', '.join(names)} ({kw['replicas']} gateway replicas)")
        echo(f"sizewise gateway on Ray Serve at http://{kw['host']}:{kw['port']}/v1 (model 'sizewise' routes)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
