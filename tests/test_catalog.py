"""The catalog: the built-in default, the ladder, and one clear error per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from sizewise.catalog import Catalog, load_catalog, parse_catalog
from sizewise.catalog.schema import CatalogSpec, ModelSpec
from sizewise.errors import ConfigError, UnknownModelError

GOOD = """\
models:
  - name: big-remote
    context_window: 8192
    params_b: 70
    price_in: 0.6
    price_out: 0.8
    location: remote
    backend: openai
    settings: {base_url: "http://127.0.0.1:9/v1", model: llama-70b, api_key_env: MY_KEY}
  - name: mine
    context_window: 2048
    params_b: 0.5
    backend: llamacpp
    settings: {path: model.gguf}
gateway:
  port: 8100
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sizewise.yaml"
    path.write_text(text)
    return path


def test_default_catalog_is_the_embedded_ladder() -> None:
    catalog = load_catalog(None)
    assert [m.name for m in catalog.ladder()] == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert all(m.location == "local" and m.backend == "llamacpp" for m in catalog.ladder())
    prices = [m.price_out for m in catalog.ladder()]
    assert prices == sorted(prices) and prices[0] > 0  # nominal CPU-time prices grow with size
    assert catalog.remote() == [] and len(catalog.local()) == len(catalog)  # the speech/vision models are local too


def test_user_catalog_resolves_paths_and_views(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    catalog = load_catalog(write(tmp_path, GOOD))
    assert catalog.path == tmp_path / "sizewise.yaml"
    assert catalog.gateway.port == 8100
    assert [m.name for m in catalog.remote()] == ["big-remote"]
    assert [m.name for m in catalog.ladder()] == ["mine", "big-remote"]  # by size, not file order
    assert catalog.model_file("mine") == tmp_path / "model.gguf"
    assert catalog.get("big-remote").cost_usd(1e6, 1e6) == pytest.approx(1.4)
    with pytest.raises(ConfigError, match="not a local GGUF"):
        catalog.model_file("big-remote")


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"'nope'.*smollm2-135m"):
        load_catalog(None).get("nope")


def test_explicit_ladder_and_catalog_from_spec() -> None:
    spec = CatalogSpec(
        models=[
            ModelSpec(name="a", context_window=10, params_b=3, backend="replay", settings={"table": "t"}),
            ModelSpec(name="b", context_window=10, params_b=1, backend="replay", settings={"table": "t"}),
        ],
        gateway={"ladder": ["a", "b"]},
    )
    assert [m.name for m in Catalog(spec).ladder()] == ["a", "b"]
    with pytest.raises(ConfigError, match="duplicate"):
        Catalog(CatalogSpec(models=[spec.models[0], spec.models[0]]))


ENTRY = "models:\n  - name: m\n    context_window: 100\n    backend: llamacpp\n    settings: {embedded: tiny}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ENTRY.replace("llamacpp", "tensorrt"), r"line 4: models\[0\] \('m'\) field 'backend': 'tensorrt' is not one"),
        (ENTRY + "    price_in: -1\n", r"line 6: models\[0\] \('m'\) field 'price_in': .*greater than or equal to 0"),
        (ENTRY + "    colour: red\n", r"line 6: models\[0\] \('m'\) field 'colour': unknown key"),
        (ENTRY + ENTRY.removeprefix("models:\n"), r"line 6: models\[1\] \('m'\): duplicate model name 'm'"),
        (
            ENTRY.replace("{embedded: tiny}", "{path: missing.gguf}"),
            r"line 5: .*'settings.path': GGUF file .* not exist",
        ),
        (ENTRY.replace("{embedded: tiny}", "{embedded: tiny, threads: 2}"), r"'settings.threads': unknown key"),
        (ENTRY.replace("{embedded: tiny}", "{embedded: huge}"), r"'settings.embedded': 'huge' is not one of"),
        (ENTRY.replace("{embedded: tiny}", "{}"), r"exactly one of 'embedded'"),
        (ENTRY.replace("    context_window: 100\n", ""), r"field 'context_window': required field is missing"),
        (
            ENTRY.replace("backend: llamacpp", "backend: openai").replace("embedded: tiny", "base_url: localhost"),
            r"'settings.base_url': .*should match",
        ),
        (ENTRY + "gateway:\n  ladder: [m, other]\n", r"line 7: gateway.ladder names unknown model 'other'"),
        (ENTRY + "gateway:\n  colour: 1\n", r"line 7: field 'gateway.colour': unknown key"),
        (ENTRY + "    price_in: .inf\n", r"line 6: models\[0\] \('m'\) field 'price_in': .*finite"),
        (ENTRY + "gateway:\n  threshold: .nan\n", r"field 'gateway.threshold': .*finite"),
        (
            ENTRY.replace("    backend:", "    context_window: 200\n    backend:"),
            r"line 4: key 'context_window' appears twice",
        ),
        (
            ENTRY + "routes:\n" + "  - {name: r, examples: [x], models: [m]}\n" * 2,
            r"line 8: routes\[1\] \('r'\): duplicate route name 'r' \(first defined in routes\[0\]\)",
        ),
        (
            ENTRY.replace("backend: llamacpp", "backend: replay").replace("embedded: tiny", "table: ."),
            r"line 5: .*'settings.table': table .* is a folder, not a table file",
        ),
        ("models: [\n", r"line \d+: invalid YAML"),
        ("- just a list\n", r"a catalog is a mapping"),
        ("models: []\n", r"field 'models'"),
    ],
)
def test_bad_catalog_names_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_catalog(write(tmp_path, text))
    assert str(tmp_path / "sizewise.yaml") in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog(tmp_path / "nope.yaml")


def test_parse_catalog_without_file() -> None:
    catalog = parse_catalog(ENTRY, source="inline")
    assert catalog.names() == ["m"] and "m" in catalog and len(catalog) == 1
