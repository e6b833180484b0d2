"""Start-up checks of the catalog's task models (``kind: task``, ``backend: task``; docs/gateway.md).

A task entry names other entries (its ``teacher``, its domain ``route``) and a file (its ``student``);
each reference is checked here so a typo fails at start-up with the file, line and field, never at the
first on-task request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sizewise.catalog.schema import ModelSpec
from sizewise.errors import ConfigError

#: Kinds that answer chat messages (the teacher must be one); as ``policy.constraints.modality.CHAT_KINDS``.
TEACHER_KINDS = ("llm", "multimodal", "domain")

Where = Callable[[tuple[str | int, ...]], str]


def check_task(catalog: Any, index: int, model: ModelSpec, where: Where, entry: Where) -> None:
    """A :class:`ConfigError` for a task entry whose kind and backend disagree, whose teacher is not a catalog
    chat model, whose route is not a catalog route, or whose student file does not exist."""
    loc: tuple[str | int, ...] = ("models", index)
    if model.kind != "task" or model.backend != "task":
        at = (*loc, "backend" if model.kind == "task" else "kind")
        raise ConfigError(f"{where(at)}: {entry(loc)}: a task model needs both 'kind: task' and 'backend: task'")
    settings = model.settings
    teacher = str(settings["teacher"])
    at = (*loc, "settings", "teacher")
    if teacher not in catalog:
        raise ConfigError(f"{where(at)}: {entry(at)}: teacher {teacher!r} is not a catalog model")
    if catalog.get(teacher).kind not in TEACHER_KINDS:
        kind = catalog.get(teacher).kind
        raise ConfigError(f"{where(at)}: {entry(at)}: teacher {teacher!r} is a {kind!r} model, not a chat model")
    route = settings.get("route")
    if route is not None and route not in {r.name for r in catalog.routes}:
        at = (*loc, "settings", "route")
        known = ", ".join(r.name for r in catalog.routes) or "none"
        raise ConfigError(f"{where(at)}: {entry(at)}: route {route!r} is not a catalog route (routes: {known})")
    student = settings.get("student")
    if student is not None and not catalog.resolve(str(student)).is_file():
        at = (*loc, "settings", "student")
        raise ConfigError(f"{where(at)}: {entry(at)}: student file {catalog.resolve(str(student))} does not exist")
