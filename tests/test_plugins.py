"""A plug-in package adds a policy or a filter with one module and one entry point (group ``sizewise.plugins``)."""

from __future__ import annotations

import importlib.metadata

import pytest

from sizewise.policy import types


class _EntryPoint:
    """What ``importlib.metadata.entry_points`` yields: ``load()`` imports the plug-in module."""

    def __init__(self, on_load: object) -> None:
        self._on_load = on_load

    def load(self) -> object:
        return self._on_load()  # type: ignore[operator]


def test_load_extensions_imports_each_plugin_of_the_group_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    groups: list[str] = []

    def register() -> None:  # what a plug-in module does when imported
        loaded.append("plug")
        types.register_policy("plug-", lambda field, env: types.Policy(field))

    def entry_points(*, group: str) -> list[_EntryPoint]:
        groups.append(group)
        return [_EntryPoint(register)]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    types._load_plugins.cache_clear()
    try:
        types.load_extensions()
        types.load_extensions()  # a second engine: plug-ins are not imported again
        assert groups == [types.PLUGIN_GROUP] and loaded == ["plug"]
        assert types.policy_factory("plug-anything") is not None
        assert types.policy_factory("cascade-logprob") is not None  # the built-in ones are registered too
    finally:
        types._POLICIES.pop("plug-", None)
        types._load_plugins.cache_clear()
