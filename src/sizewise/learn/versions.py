"""Router versions on disk: every candidate kept, every promotion logged, any promotion reversible.

A router directory (``gateway.router_dir``) holds::

    default.zip            the version the gateway routes with (what ``sizewise serve`` loads)
    versions/v0001.zip     every version ever recorded, never changed once written
    history.jsonl          one JSON line per event: add, promote, rollback

Files are written to a temporary name and renamed, and every change holds a lock on the directory, so
a gateway reading ``default.zip`` sees the old file or the new one, never half of one. This module
moves files and reads their headers; loading a router is the caller's (``sizewise.routers``).

With a ``state_url`` (the gateway's ``state_url``: replicas sharing a database), every promotion and
rollback also records the new current file there (:mod:`sizewise.learn.shared_router`), and every
replica loads it within ``gateway.state_poll_s``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.errors import ConfigError, RouterFileError
from sizewise.learn.persist import read_header

CURRENT = "default.zip"
HISTORY = "history.jsonl"
_VERSION = re.compile(r"^v(\d{4,})$")


def data_digest(texts: list[str], *columns: np.ndarray) -> str:
    """sha256 of the training data (prompt texts and outcome columns): the same outcomes, the same digest."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    for column in columns:
        digest.update(np.ascontiguousarray(np.asarray(column, dtype=np.float64)).tobytes())
    return "sha256:" + digest.hexdigest()


class RouterVersions:
    """The versions, history and current router of one router directory."""

    def __init__(self, root: str | Path, state_url: str | None = None) -> None:
        self.root = Path(root)
        self.state_url = state_url

    # -- reading ---------------------------------------------------------------------
    def history(self) -> list[dict[str, Any]]:
        """Every event, oldest first (an empty list for a new directory)."""
        path = self.root / HISTORY
        if not path.is_file():
            return []
        events = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ConfigError(f"{path}:{number}: not a JSON line; the history is damaged") from None
        return events

    def versions(self) -> list[str]:
        """Recorded version names, oldest first."""
        folder = self.root / "versions"
        names = [p.stem for p in folder.glob("v*.zip") if _VERSION.match(p.stem)] if folder.is_dir() else []
        return sorted(names, key=lambda name: int(name[1:]))

    def current(self) -> str | None:
        """The version now in ``default.zip`` (None before the first promotion)."""
        current = None
        for event in self.history():
            if event.get("event") in ("promote", "rollback"):
                current = event.get("to")
        return current

    def path(self, version: str) -> Path:
        """The file of ``version``; a :class:`ConfigError` naming the known ones if there is none."""
        path = self.root / "versions" / f"{version}.zip"
        if not _VERSION.match(str(version)) or not path.is_file():
            known = ", ".join(self.versions()) or "none"
            raise ConfigError(f"no router version {version!r} in {self.root}; known: {known}")
        return path

    def provenance(self, version: str) -> dict[str, Any]:
        """The provenance recorded in a version's file."""
        return dict(read_header(self.path(version), "router").get("provenance") or {})

    # -- changing --------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".versions.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _log(self, event: dict[str, Any]) -> dict[str, Any]:
        event = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event}
        with (self.root / HISTORY).open("a", encoding="utf-8") as file:
            file.write(json.dumps(event, default=float) + "\n")
        return event

    def add(self, file: str | Path, note: str = "") -> str:
        """Record a router file as the next version (copied; the file must be a readable router file)."""
        read_header(file, "router")
        with self._locked():
            taken = [int(v[1:]) for v in self.versions()]
            version = f"v{(max(taken) + 1 if taken else 1):04d}"
            target = self.root / "versions" / f"{version}.zip"
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_atomic(Path(file), target)
            self._log({"event": "add", "version": version, "note": note})
        return version

    def promote(self, version: str, reason: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make ``version`` the router the gateway loads, and log why."""
        source = self.path(version)
        with self._locked():
            previous = self.current()
            _copy_atomic(source, self.root / CURRENT)
            self._share(version, source)
            return self._log({"event": "promote", "from": previous, "to": version, "reason": reason, **(details or {})})

    def rollback(self, to: str | None = None) -> dict[str, Any]:
        """Restore the version current before the last promotion (or ``to``); logged like a promotion."""
        with self._locked():
            current = self.current()
            if to is None:
                to = self._previous(current)
            source = self.path(to)
            _copy_atomic(source, self.root / CURRENT)
            self._share(to, source)
            return self._log({"event": "rollback", "from": current, "to": to, "reason": f"rolled back from {current}"})

    def _share(self, version: str, source: Path) -> None:
        """Record the new current version in the replicas' database, when there is one."""
        if self.state_url is not None:
            from sizewise.learn.shared_router import publish

            publish(self.state_url, version, source)

    def _previous(self, current: str | None) -> str:
        """The version that was current before ``current`` became it."""
        if current is None:
            raise ConfigError(f"nothing to roll back in {self.root}: no version was ever promoted")
        for event in reversed(self.history()):
            if (
                event.get("event") == "promote" and event.get("to") == current
            ):  # not a rollback: undoing one goes on back
                previous = event.get("from")
                if previous is None:
                    raise ConfigError(
                        f"nothing to roll back to: {current} is the first version promoted in {self.root}"
                    )
                return str(previous)
        raise ConfigError(f"the history of {self.root} does not say how {current} became current")


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` so a reader sees one whole file or the other."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise RouterFileError(f"{target}: cannot write ({error.strerror or error})") from None
