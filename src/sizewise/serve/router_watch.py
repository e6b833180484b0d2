"""Every replica routes with the router promoted in the shared database (``gateway.state_url``).

A daemon thread reads the promoted version's digest every ``gateway.state_poll_s`` seconds (one row, no
file). When it differs from the router this replica loaded, it fetches the file from the row, writes it
over ``<router_dir>/default.zip`` (temporary name, then rename) and rebuilds the engine's policies in
that thread: requests keep the old router until the new one is loaded, then take it. So a promotion or
a rollback reaches every replica within one poll plus the router's load time. At start the database
wins over the local file (a replica that was down during a promotion catches up before it serves).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sizewise.catalog.schema import GatewaySettings
from sizewise.errors import SizewiseError
from sizewise.learn.shared_router import SharedRouter, digest
from sizewise.serve.poller import Poller
from sizewise.serve.session_sql import state_url

logger = logging.getLogger(__name__)

CURRENT = "default.zip"


class RouterWatch:
    """Keeps ``router_dir/default.zip`` equal to the promoted router in the database."""

    def __init__(self, url: str, router_dir: Path, refresh: Callable[[], None], poll_s: float) -> None:
        self.shared = SharedRouter(url)
        self.router_dir = router_dir
        self.refresh = refresh  # rebuilds the engine's policies from the new file
        self.poll_s = poll_s
        path = router_dir / CURRENT
        #: Digest of the router this replica routes with (None: no file yet).
        self.loaded: str | None = digest(path.read_bytes()) if path.is_file() else None
        #: The version loaded last from the database (None until one is).
        self.version: str | None = None
        self._poller = Poller("sizewise-router-watch", self._poll_once, poll_s)

    def sync(self, *, rebuild: bool = True) -> bool:
        """Adopt the database's promoted router if it differs from the loaded one; True when it did."""
        current = self.shared.current()
        if current is None or current.digest == self.loaded:
            return False
        fetched = self.shared.current(with_file=True)
        if fetched is None or fetched.file is None:
            return False
        self.router_dir.mkdir(parents=True, exist_ok=True)
        partial = self.router_dir / f".{CURRENT}.{os.getpid()}.tmp"
        partial.write_bytes(fetched.file)
        os.replace(partial, self.router_dir / CURRENT)
        if rebuild:
            self.refresh()
        self.loaded, self.version = fetched.digest, fetched.version
        logger.info("router %s promoted in the shared database: now routing with it", fetched.version)
        return True

    def start(self) -> None:
        """Catch up once now (before the first request), then poll in a daemon thread."""
        self._poll_once(rebuild=False)
        self._poller.start()

    def _poll_once(self, *, rebuild: bool = True) -> None:
        try:
            self.sync(rebuild=rebuild)
        except (SQLAlchemyError, OSError, SizewiseError) as error:
            # The old router keeps serving; the next poll tries again.
            logger.warning("router watch: %s: %s", type(error).__name__, str(error)[:200])

    def stop(self) -> None:
        """End the thread and release the database."""
        self._poller.stop()
        self.shared.close()


def watch_router(settings: GatewaySettings, router_dir: Path | None, refresh: Callable[[], None]) -> RouterWatch | None:
    """A started watch when the gateway shares state (``state_url``) and has a router directory, else None."""
    url = state_url(settings)
    if url is None or router_dir is None:
        return None
    watch = RouterWatch(url, router_dir, refresh, settings.state_poll_s)
    watch.start()
    return watch
