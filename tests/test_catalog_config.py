"""A config a LiteLLM user can bring: remote models never silently local or free (#18)."""

from __future__ import annotations

import pytest

from sizewise.catalog import parse_catalog
from sizewise.catalog.remote import is_loopback
from sizewise.errors import ConfigError

REMOTE = """\
models:
  - name: cloud
    context_window: 8192
{extra}    backend: openai
    settings: {{base_url: "{url}", model: gpt-4o-mini}}
"""


def remote(url: str = "https://api.openai.com/v1", extra: str = "    price_in: 0.15\n    price_out: 0.6\n") -> str:
    return REMOTE.format(url=url, extra=extra)


def test_a_remote_upstream_without_location_is_remote_and_says_so() -> None:
    # Old code: location defaulted to local, so privacy: local-only sent personal data to this cloud model.
    catalog = parse_catalog(remote(), source="c.yaml")
    assert catalog.get("cloud").location == "remote"
    assert [m.name for m in catalog.local()] == []
    assert len(catalog.notes) == 1
    assert "c.yaml line 2" in catalog.notes[0] and "'cloud'" in catalog.notes[0] and "remote" in catalog.notes[0]


def test_a_stated_location_is_kept_without_a_warning() -> None:
    catalog = parse_catalog(
        remote("http://10.0.0.5:8000/v1", "    price_in: 0\n    price_out: 0\n    location: local\n")
    )
    assert catalog.get("cloud").location == "local" and catalog.notes == []


@pytest.mark.parametrize("missing", ["price_in", "price_out"])
def test_a_remote_model_without_prices_is_a_one_line_error(missing: str) -> None:
    # Old code: prices defaulted to 0, so an unpriced cloud model looked free to budgets.
    stated = {"price_in": 0.15, "price_out": 0.6, "location": "remote"}
    extra = "".join(f"    {key}: {value}\n" for key, value in stated.items() if key != missing)
    with pytest.raises(ConfigError) as info:
        parse_catalog(remote(extra=extra), source="c.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("c.yaml line 2: models[0] ('cloud')") and f"must state {missing}" in message


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1"])
def test_loopback_upstreams_stay_local_and_may_omit_prices(url: str) -> None:
    catalog = parse_catalog(remote(url, extra=""))
    model = catalog.get("cloud")
    assert model.location == "local" and model.price_in == 0 and catalog.notes == []


def test_loopback_detection() -> None:
    assert is_loopback("http://127.0.0.2/v1") and is_loopback("http://api.localhost/v1")
    assert not is_loopback("https://api.openai.com/v1") and not is_loopback("http://192.168.1.4/v1")
    assert not is_loopback("http://localhost.evil.com/v1")


ENV = """\
models:
  - name: ${NAME:-cloud}
    context_window: ${CTX}
    price_in: 0.15
    price_out: 0.6
    backend: openai
    settings:
      base_url: "${BASE:-https://api.openai.com}/v1"
      model: gpt-4o-mini
      headers: {x-cost: "$$5"}
"""


def test_environment_variables_and_defaults_fill_string_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # Old code: "${CTX}" reached the schema as text and context_window failed to parse.
    monkeypatch.setenv("CTX", "16384")
    monkeypatch.setenv("BASE", "http://127.0.0.1:8001")
    monkeypatch.delenv("NAME", raising=False)
    catalog = parse_catalog(ENV)
    model = catalog.get("cloud")
    assert model.context_window == 16384
    assert model.settings["base_url"] == "http://127.0.0.1:8001/v1" and model.location == "local"
    assert model.settings["headers"] == {"x-cost": "$5"}


def test_an_empty_variable_takes_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTX", "4096")
    monkeypatch.setenv("BASE", "")
    assert parse_catalog(ENV).get("cloud").settings["base_url"] == "https://api.openai.com/v1"


def test_an_unset_variable_without_default_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTX", raising=False)
    with pytest.raises(ConfigError) as info:
        parse_catalog(ENV, source="c.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("c.yaml line 3:") and "environment variable CTX is not set" in message


def test_a_malformed_reference_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"c.yaml line 3: '\$\{1X\}' is not"):
        parse_catalog(ENV.replace("${CTX}", "${1X}"), source="c.yaml")
