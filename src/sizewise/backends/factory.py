"""Build the backend a catalog entry names."""

from __future__ import annotations

from typing import Any

from sizewise.backends.base import Backend
from sizewise.catalog.schema import BACKEND_SETTINGS, LlamaCppSettings, ModelSpec, OpenAISettings, ReplaySettings
from sizewise.errors import ConfigError, UnknownNameError


def make_backend(spec: ModelSpec, catalog: Any = None) -> Backend:
    """A backend for ``spec``. ``catalog`` (a loaded :class:`~sizewise.catalog.Catalog`) resolves relative paths.

    Nothing heavy happens here: local models load on their first request.
    """
    from pathlib import Path

    if spec.backend not in BACKEND_SETTINGS:
        raise UnknownNameError(f"unknown backend {spec.backend!r}; choose one of {', '.join(BACKEND_SETTINGS)}")
    try:
        settings = BACKEND_SETTINGS[spec.backend].model_validate(spec.settings)
    except ValueError as error:
        raise ConfigError(f"model {spec.name!r}: bad {spec.backend} settings: {error}") from None
    resolve = getattr(catalog, "resolve", None) or (lambda value: Path(value).expanduser())
    if isinstance(settings, LlamaCppSettings):
        from sizewise.backends.llamacpp import LlamaCppBackend

        path = None if settings.path is None else Path(resolve(settings.path))
        return LlamaCppBackend(spec, settings, path=path)
    if isinstance(settings, OpenAISettings):
        from sizewise.backends.openai_compat import OpenAICompatBackend

        ca_bundle = None if settings.ca_bundle is None else Path(resolve(settings.ca_bundle))
        return OpenAICompatBackend(spec, settings, ca_bundle=ca_bundle)
    if isinstance(settings, ReplaySettings):
        from sizewise.backends.replay import ReplayBackend

        return ReplayBackend(Path(resolve(settings.table)), model=settings.model or spec.name, name=spec.name)
    if spec.backend == "whisper":
        from sizewise.backends.speech import speech_backend

        return speech_backend(spec, settings, resolve)
    if spec.backend == "onnx":
        from sizewise.backends.vision import vision_backend

        return vision_backend(spec, settings)
    raise UnknownNameError(f"unknown backend {spec.backend!r}")  # pragma: no cover - guarded above
