"""Reasoning effort as a routing dimension: one ladder rung per effort of a reasoning model.

A catalog entry with ``reasoning_efforts: [low, medium, high]`` becomes three models, ``o4-mini@low``,
``o4-mini@medium`` and ``o4-mini@high``: the same upstream model, each called with its
``reasoning_effort`` and priced by the tokens it is expected to spend (``output_factor``, from
``gateway.effort_output_factor``). The ladder's one order (:func:`sizewise.catalog.catalog.ladder_key`:
size, then expected price) puts them low to high, so routers, cascades and budgets climb them like
any other models. The entry's own name (and its aliases) stays usable: it names the ``medium`` rung,
the upstream's default effort (the middle one listed when ``medium`` is not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sizewise.catalog.schema import CatalogSpec, ModelSpec

#: Separates a model's name from its effort in a rung's name.
SEPARATOR = "@"


def rung_name(name: str, effort: str) -> str:
    """``o4-mini`` at ``high`` -> ``o4-mini@high``."""
    return f"{name}{SEPARATOR}{effort}"


def default_effort(efforts: Sequence[str]) -> str:
    """The rung the entry's own name points at: ``medium`` when listed, else the middle one."""
    return "medium" if "medium" in efforts else efforts[len(efforts) // 2]


def rungs(spec: ModelSpec, factors: Mapping[str, float]) -> list[ModelSpec]:
    """The rungs of one entry (the entry itself, alone, when it lists no efforts)."""
    if not spec.reasoning_efforts:
        return [spec]
    if spec.reasoning_effort is not None:
        raise ValueError(
            f"model {spec.name!r}: give reasoning_efforts (one rung per effort) or reasoning_effort (always "
            "that one), not both"
        )
    efforts = list(dict.fromkeys(spec.reasoning_efforts))  # a repeated effort would be a duplicate model
    default = default_effort(efforts)
    out = []
    for effort in efforts:
        settings = dict(spec.settings)
        if spec.backend in ("openai", "replay"):  # the upstream (or recorded column) keeps the entry's name
            settings.setdefault("model", spec.name)
        aliases = [spec.name, *spec.aliases] if effort == default else []
        out.append(
            spec.model_copy(
                update={
                    "name": rung_name(spec.name, effort),
                    "reasoning_efforts": [],
                    "reasoning_effort": effort,
                    "output_factor": spec.output_factor * factors.get(effort, 1.0),
                    "aliases": aliases,
                    "settings": settings,
                },
                deep=True,
            )
        )
    return out


def expand_efforts(catalog: CatalogSpec) -> None:
    """Replace every entry that lists ``reasoning_efforts`` by its rungs, in place; a ladder or route
    naming the entry names all its rungs instead, in ladder order (low to high)."""
    if not any(spec.reasoning_efforts for spec in catalog.models):
        return
    from sizewise.catalog.catalog import ladder_key
    from sizewise.catalog.schema import GatewaySettings

    # A partial effort_output_factor keeps the defaults of the efforts it leaves out.
    merged = GatewaySettings().effort_output_factor | catalog.gateway.effort_output_factor
    factors = {str(effort): factor for effort, factor in merged.items()}
    expanded: dict[str, list[str]] = {}
    models: list[ModelSpec] = []
    for spec in catalog.models:
        new = rungs(spec, factors)
        if spec.reasoning_efforts:
            expanded[spec.name] = [rung.name for rung in sorted(new, key=ladder_key)]  # cheapest effort first
        models += new

    def names(listed: list[str]) -> list[str]:
        return [name for entry in listed for name in expanded.get(entry, [entry])]

    catalog.models = models
    catalog.gateway.ladder = names(catalog.gateway.ladder)
    for route in catalog.routes:
        route.models = names(route.models)
