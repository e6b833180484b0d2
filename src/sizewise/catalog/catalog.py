"""A loaded catalog: models by name, local/remote views, the size ladder, resolved model files."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from sizewise.catalog.schema import CatalogSpec, GatewaySettings, ModelSpec, RouteSpec
from sizewise.errors import ConfigError, UnknownModelError


class Catalog:
    """The validated ``sizewise.yaml``: ``models`` by name, ``gateway`` settings, domain ``routes``.

    ``base_dir`` is where relative paths in backend settings (a GGUF ``path``, a replay ``table``)
    are resolved: the YAML file's folder, or the current directory for an in-memory spec.
    """

    def __init__(self, spec: CatalogSpec, *, path: Path | None = None, base_dir: Path | None = None) -> None:
        self.spec = spec
        self.path = path
        self.base_dir = base_dir or (path.parent if path is not None else Path.cwd())
        self.models: dict[str, ModelSpec] = {}
        #: Lines the loader had to say (a location it inferred, a model it mapped); ``sizewise serve`` prints them.
        self.notes: list[str] = []
        for model in spec.models:
            if model.name in self.models:
                raise ConfigError(f"duplicate model name {model.name!r} in the catalog")
            self.models[model.name] = model

    @property
    def gateway(self) -> GatewaySettings:
        """The ``gateway`` section."""
        return self.spec.gateway

    @property
    def routes(self) -> list[RouteSpec]:
        """Domain routes."""
        return self.spec.routes

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"Catalog({list(self.models)}, path={self.path})"

    def names(self) -> list[str]:
        """Model names in file order."""
        return list(self.models)

    def get(self, name: str) -> ModelSpec:
        """The model ``name``; :class:`UnknownModelError` naming the known models otherwise."""
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModelError(f"unknown model {name!r}; the catalog has {', '.join(self.models)}") from None

    def local(self) -> list[ModelSpec]:
        """Models that run on this machine."""
        return [m for m in self.models.values() if m.location == "local"]

    def remote(self) -> list[ModelSpec]:
        """Models behind a network upstream."""
        return [m for m in self.models.values() if m.location == "remote"]

    def ladder(self) -> list[ModelSpec]:
        """Chat models from cheapest/smallest to largest: ``gateway.ladder`` when set.

        Otherwise every ``llm``/``multimodal`` model ordered by size (unknown size last), then price.
        """
        for name in self.gateway.ladder:
            self.get(name)  # an unknown name is an error here, not a shorter ladder
        return order_ladder(self.models.values(), self.gateway.ladder)

    def resolve(self, value: str | Path) -> Path:
        """A path from the catalog, relative to ``base_dir`` unless absolute (``~`` expanded)."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def model_file(self, name_or_spec: str | ModelSpec, *, verify: bool = True) -> Path:
        """The GGUF file of a ``llamacpp`` model: its ``path``, or its verified embedded file."""
        spec = self.get(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
        if spec.backend != "llamacpp":
            raise ConfigError(f"model {spec.name!r} uses backend {spec.backend!r}, not a local GGUF file")
        if "embedded" in spec.settings:
            from sizewise.catalog import embedded

            return embedded.model_path(str(spec.settings["embedded"]), verify=verify)
        if "path" not in spec.settings:
            raise ConfigError(f"model {spec.name!r}: llamacpp settings need 'embedded' or 'path'")
        path = self.resolve(str(spec.settings["path"]))
        if not path.is_file():
            raise ConfigError(f"model {spec.name!r}: GGUF file {path} does not exist")
        return path


def ladder_key(model: ModelSpec) -> tuple[float, float, str]:
    """The one size order of sizewise, smallest first: parameters (unknown size counts as largest), expected
    price (output priced by ``output_factor``, so a reasoning model's efforts climb low to high), name.

    Every "smaller/larger" decision uses it: the ladder, the routing pair, the cascade's climb, the fallbacks
    (largest first = this order reversed), so a model without ``params_b`` is the largest for all of them.
    """
    size = model.params_b if model.params_b is not None else math.inf
    return (size, model.price_in + model.price_out * model.output_factor, model.name)


def order_ladder(models: Iterable[ModelSpec], names: Sequence[str] = ()) -> list[ModelSpec]:
    """Chat models smallest first: exactly ``names`` (``gateway.ladder``) in their order when given, else every
    ``llm``/``multimodal`` model by :func:`ladder_key`."""
    if names:
        by_name = {m.name: m for m in models}
        return [by_name[name] for name in names if name in by_name]
    return sorted((m for m in models if m.kind in ("llm", "multimodal")), key=ladder_key)
