"""Load and validate ``sizewise.yaml`` into a :class:`~sizewise.catalog.catalog.Catalog`.

Every problem becomes a one-line :class:`ConfigError` naming the file, the YAML line, the entry
and the field: an unknown backend or key, a negative price, a duplicate name, a missing GGUF file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sizewise.catalog.catalog import Catalog
from sizewise.catalog.interpolate import interpolate
from sizewise.catalog.litellm import from_litellm, is_litellm
from sizewise.catalog.remote import apply_remote_rules
from sizewise.catalog.schema import BACKEND_SETTINGS, CatalogSpec
from sizewise.catalog.tasks import check_task
from sizewise.errors import ConfigError

Loc = tuple[str | int, ...]


def default_catalog_text() -> str:
    """The built-in catalog (package data ``sizewise/catalog/default.yaml``)."""
    return resources.files("sizewise.catalog").joinpath("default.yaml").read_text(encoding="utf-8")


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read, validate and check a catalog file; ``None`` loads the built-in default catalog."""
    if path is None:
        return parse_catalog(default_catalog_text(), source="<built-in catalog>", base_dir=Path.cwd())
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"catalog file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read catalog file {file}: {error}") from None
    catalog = parse_catalog(text, source=str(file), base_dir=file.resolve().parent)
    catalog.path = file
    return catalog


def parse_catalog(text: str, *, source: str = "<catalog>", base_dir: Path | None = None) -> Catalog:
    """Validate catalog YAML ``text``; ``source`` names it in errors, ``base_dir`` resolves relative paths."""
    data, lines = _read_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a catalog is a mapping with a 'models' list")

    def where(loc: Loc) -> str:
        for depth in range(len(loc), -1, -1):  # the nearest located ancestor (a missing key has no line)
            if loc[:depth] in lines:
                return f"{source} line {lines[loc[:depth]]}"
        return source

    def entry(loc: Loc) -> str:
        if len(loc) >= 2 and loc[0] in ("models", "routes") and isinstance(loc[1], int):
            items = data.get(str(loc[0])) or []
            item = items[loc[1]] if loc[1] < len(items) else None
            name = item.get("name") if isinstance(item, dict) else None
            label = f"{loc[0]}[{loc[1]}]" + (f" ({name!r})" if name else "")
            rest = ".".join(str(part) for part in loc[2:])
            return f"{label} field {rest!r}" if rest else label
        return "field " + repr(".".join(str(part) for part in loc)) if loc else "catalog"

    data = interpolate(data, where)
    notes: list[str] = []
    if is_litellm(data):
        data = from_litellm(data, where, lines, notes)
    _extend(data, where)
    apply_remote_rules(data, where, entry, notes)
    try:
        spec = CatalogSpec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = tuple(first["loc"])
        raise ConfigError(f"{where(loc)}: {entry(loc)}: {_message(first)}") from None
    _check_models(spec, where, entry)
    _check_aliases(spec, where, entry)
    catalog = Catalog(spec, base_dir=base_dir)
    _check_references(catalog, where, entry)
    catalog.notes = notes
    return catalog


def _read_yaml(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """(the parsed YAML, each key's line): a YAML error, or a key twice in one mapping, is one line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{source}{at}: invalid YAML: {problem}") from None
    lines: dict[Loc, int] = {}
    if node is not None:
        duplicate = _index_lines(node, (), lines)
        if duplicate is not None:  # YAML would silently keep the last value
            raise ConfigError(f"{source} line {duplicate[1]}: key {duplicate[0]!r} appears twice in one mapping")
    return data, lines


def _check_models(spec: CatalogSpec, where: Any, entry: Any) -> None:
    """Model names are unique, and each model's settings are valid for its backend."""
    seen: dict[str, int] = {}
    for index, model in enumerate(spec.models):
        loc = ("models", index)
        if model.name in seen:
            raise ConfigError(
                f"{where((*loc, 'name'))}: {entry(loc)}: duplicate model name {model.name!r} "
                f"(first defined in models[{seen[model.name]}])"
            )
        seen[model.name] = index
        try:
            BACKEND_SETTINGS[model.backend].model_validate(model.settings)
        except ValidationError as error:
            first = error.errors()[0]
            sub = (*loc, "settings", *first["loc"])
            raise ConfigError(f"{where(sub)}: {entry(sub)}: {_message(first)} (backend {model.backend})") from None


def _extend(data: dict[str, Any], where: Any) -> None:
    """``extends: builtin``: the built-in models follow the file's own (a model of the same name replaces one)."""
    if "extends" not in data:
        return
    base = data.pop("extends")
    if base != "builtin":
        raise ConfigError(f"{where(('extends',))}: extends {base!r}: the only catalog to extend is 'builtin'")
    own = data.setdefault("models", [])
    if not isinstance(own, list):
        return  # the schema reports it
    names = {item.get("name") for item in own if isinstance(item, dict)}
    builtin = yaml.safe_load(default_catalog_text())["models"]
    own.extend(item for item in builtin if item["name"] not in names)


def _check_aliases(spec: CatalogSpec, where: Any, entry: Any) -> None:
    """An alias names one model: never another model's name, another alias or a routing name."""
    owner = {model.name: model.name for model in spec.models}
    for index, model in enumerate(spec.models):
        for a_index, alias in enumerate(model.aliases):
            loc: Loc = ("models", index, "aliases", a_index)
            taken = owner.get(alias)
            if alias == "sizewise" or alias.startswith(("router-", "multi-", "cascade-")):
                raise ConfigError(f"{where(loc)}: {entry(loc)}: alias {alias!r} is a routing name")
            if taken is not None and taken != model.name:
                raise ConfigError(f"{where(loc)}: {entry(loc)}: alias {alias!r} already names model {taken!r}")
            owner[alias] = model.name


def _check_references(catalog: Catalog, where: Any, entry: Any) -> None:
    """Cross-entry checks: files exist, ladder and routes name catalog models, route names are unique."""
    for index, model in enumerate(catalog.spec.models):
        loc: Loc = ("models", index, "settings")
        if model.backend == "llamacpp" and model.settings.get("path") is not None:
            file = catalog.resolve(str(model.settings["path"]))
            if not file.is_file():
                at = (*loc, "path")
                raise ConfigError(f"{where(at)}: {entry(at)}: GGUF file {file} does not exist")
        if model.backend == "openai" and model.settings.get("ca_bundle"):
            file = catalog.resolve(str(model.settings["ca_bundle"]))
            if not file.is_file():
                at = (*loc, "ca_bundle")
                raise ConfigError(f"{where(at)}: {entry(at)}: CA bundle {file} does not exist")
        n_ctx = model.settings.get("n_ctx")
        if model.backend == "llamacpp" and n_ctx is not None and n_ctx < model.context_window:
            # The gateway admits prompts up to context_window; a smaller KV cache would fail them mid-call.
            at = (*loc, "n_ctx")
            raise ConfigError(
                f"{where(at)}: {entry(at)}: n_ctx {n_ctx} is smaller than context_window {model.context_window}"
            )
        if model.backend == "task" or model.kind == "task":  # teacher, route and student file exist
            check_task(catalog, index, model, where, entry)
        if model.backend == "replay":
            file = catalog.resolve(str(model.settings["table"]))
            if not file.is_file():
                at = (*loc, "table")
                problem = "is a folder, not a table file" if file.is_dir() else "does not exist"
                raise ConfigError(f"{where(at)}: {entry(at)}: table {file} {problem}")
    for index, name in enumerate(catalog.gateway.ladder):
        if name not in catalog:
            loc = ("gateway", "ladder", index)
            raise ConfigError(f"{where(loc)}: gateway.ladder names unknown model {name!r}")
    first_route: dict[str, int] = {}
    for r_index, route in enumerate(catalog.routes):
        if route.name in first_route:
            loc = ("routes", r_index, "name")
            raise ConfigError(
                f"{where(loc)}: {entry(loc[:2])}: duplicate route name {route.name!r} "
                f"(first defined in routes[{first_route[route.name]}])"
            )
        first_route[route.name] = r_index
        for m_index, name in enumerate(route.models):
            if name not in catalog:
                loc = ("routes", r_index, "models", m_index)
                raise ConfigError(f"{where(loc)}: {entry(loc)}: unknown model {name!r}")


def _message(error: Any) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{error.get('input')!r} is not one of {expected}"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ") + (f" (got {error['input']!r})" if "input" in error else "")


def _index_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> tuple[str, int] | None:
    """Record the 1-based line of every value (and, for a mapping entry, its key) by its path.

    Returns the first key that appears twice in one mapping, with its second line, or None.
    """
    lines.setdefault(loc, node.start_mark.line + 1)
    duplicate: tuple[str, int] | None = None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, str(key.value))
            if child in lines and duplicate is None:
                duplicate = (str(key.value), key.start_mark.line + 1)
            lines[child] = key.start_mark.line + 1
            duplicate = _index_lines(value, child, lines) or duplicate
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            duplicate = _index_lines(item, (*loc, index), lines) or duplicate
    return duplicate
