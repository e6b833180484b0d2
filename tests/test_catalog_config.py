"""A config a LiteLLM user can bring: remote models never silently local or free (#18)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import yaml

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.catalog import load_catalog, parse_catalog
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


def test_a_remote_speech_model_must_state_its_price_per_minute() -> None:
    # Priced per token only, an unpriced cloud transcriber looked free to budgets (its cost is minutes x price).
    speech = "    kind: speech\n    modalities: [audio]\n    price_in: 1\n    price_out: 1\n"
    with pytest.raises(ConfigError, match=r"must state price_per_minute \(USD per minute of audio"):
        parse_catalog(remote(extra=speech), source="c.yaml")
    catalog = parse_catalog(remote(extra=speech + "    price_per_minute: 0.006\n"), source="c.yaml")
    assert catalog.get("cloud").price_per_minute == 0.006


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


def test_extends_builtin_adds_models_to_the_embedded_ones() -> None:
    # Old code: 'extends' was an unknown key; the three embedded models had to be re-declared.
    catalog = parse_catalog("extends: builtin\n" + remote() + "gateway: {port: 8100}\n")
    assert catalog.names()[:4] == ["cloud", "smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert "whisper-tiny.en" in catalog.names()  # after the ladder: the built-in speech (and vision) models
    assert [m.name for m in catalog.local()] == catalog.names()[1:] and catalog.gateway.port == 8100
    assert catalog.ladder()[-1].name == "cloud"  # no params_b: the largest


def test_extends_builtin_alone_and_replacing_an_embedded_model() -> None:
    assert len(parse_catalog("extends: builtin\n").ladder()) == 3
    tiny = "{name: smollm2-135m, context_window: 2048, backend: llamacpp, settings: {embedded: tiny}}"
    own = f"extends: builtin\nmodels:\n  - {tiny}\n"
    catalog = parse_catalog(own)
    assert len(catalog.ladder()) == 3 and catalog.get("smollm2-135m").context_window == 2048


def test_extends_anything_else_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"c.yaml line 1: extends 'litellm': the only catalog to extend is 'builtin'"):
        parse_catalog("extends: litellm\n", source="c.yaml")


@pytest.mark.parametrize(
    ("alias", "expected"),
    [("other", r"alias 'other' already names model 'other'"), ("sizewise", "is a routing name")],
)
def test_an_alias_names_one_model(alias: str, expected: str) -> None:
    up = 'backend: openai, settings: {base_url: "http://127.0.0.1:9/v1"}'
    text = (
        f"models:\n  - {{name: cloud, context_window: 8, aliases: [{alias}], {up}}}\n"
        f"  - {{name: other, context_window: 8, {up}}}\n"
    )
    with pytest.raises(ConfigError, match=expected):
        parse_catalog(text)


def test_a_client_sending_an_alias_gets_that_model() -> None:
    # Old code: 'aliases' was an unknown key, and "gpt-4o-mini" was a 404 unless it was a catalog name.
    with FakeUpstream() as up:
        small = fake_model("small", "ok-s", 1.0, up.base_url)
        cloud = fake_model("cloud-mini", "ok-c", 8.0, up.base_url, aliases=["gpt-4o-mini"])
        catalog = parse_catalog(yaml.safe_dump({"models": [small, cloud], "gateway": {"log_url": "none"}}))
        with GatewayServer(catalog) as gw:
            client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=30)
            assert {"small", "cloud-mini", "gpt-4o-mini"} <= {m.id for m in client.models.list()}
            answer = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            assert answer.headers["x-sizewise-model"] == "cloud-mini"
            assert answer.parse().choices[0].message.content
        assert up.calls["ok-c"] == 1 and up.calls["ok-s"] == 0


QUICKSTART = Path(__file__).parent / "data" / "litellm_quickstart.yaml"  # LiteLLM docs, proxy/configs, Quick Start


def test_the_litellm_quickstart_config_loads_unchanged() -> None:
    # Old code: "field 'models': required field is missing".
    catalog = load_catalog(QUICKSTART)
    assert catalog.names()[:4] == ["vllm-models", "smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    vllm = catalog.get("vllm-models")
    assert vllm.backend == "openai" and vllm.location == "local"  # 0.0.0.0 is this machine
    assert vllm.settings == {"base_url": "http://0.0.0.0:4000/v1", "model": "facebook/opt-125m"}
    model_notes = [note for note in catalog.notes if "model_list[" in note]
    assert len(model_notes) == 6  # one line per LiteLLM entry: mapped or skipped, and why
    assert sum("skipped: provider 'azure'" in note for note in model_notes) == 2
    assert sum("skipped: provider 'bedrock'" in note for note in model_notes) == 2
    assert any("line 22" in note and "'vllm-models' -> openai backend" in note for note in model_notes)
    assert [key.name for key in catalog.gateway.api_keys] == ["master_key"]


def test_litellm_keys_prices_and_repeated_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_BASE", "http://127.0.0.1:8001/v1")
    text = """\
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY,
                     input_cost_per_token: 0.0000025, output_cost_per_token: 0.00001}
    model_info: {max_input_tokens: 128000}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: os.environ/VLLM_BASE, timeout: 30}
  - model_name: llama
    litellm_params: {model: ollama/llama3.1}
"""
    catalog = parse_catalog(text, source="l.yaml")
    gpt = catalog.get("gpt-4o")
    assert gpt.settings == {"base_url": "https://api.openai.com/v1", "model": "gpt-4o", "api_key_env": "OPENAI_API_KEY"}
    assert (gpt.price_in, gpt.price_out, gpt.location, gpt.context_window) == (2.5, 10.0, "remote", 128000)
    second = catalog.get("gpt-4o-2")
    assert second.settings == {"base_url": "http://127.0.0.1:8001/v1", "model": "gpt-4o", "timeout_s": 30}
    assert catalog.get("llama").settings["base_url"] == "http://localhost:11434/v1"
    assert any("'gpt-4o-2'" in note and "no load balancing" in note for note in catalog.notes)
    assert any("no 'location' given" in note and "'gpt-4o'" in note for note in catalog.notes)


def test_an_unpriced_remote_litellm_model_names_the_litellm_line() -> None:
    text = "model_list:\n  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o}\n"
    with pytest.raises(ConfigError, match=r"l.yaml line 2: models\[0\] \('gpt-4o'\): a remote model .* price_in"):
        parse_catalog(text, source="l.yaml")


def test_a_gateway_answers_through_the_litellm_quickstart_model() -> None:
    try:
        upstream = FakeUpstream(port=4000)  # the Quick Start's vllm-models api_base: http://0.0.0.0:4000/v1
        upstream.__enter__()
    except (OSError, RuntimeError):
        pytest.skip("port 4000 is taken on this machine")
    try:
        with GatewayServer(load_catalog(QUICKSTART), log_url="none") as gw:
            client = openai.OpenAI(base_url=gw.url, api_key="sk-1234", max_retries=0, timeout=30)  # its master_key
            assert {m.id for m in client.models.list()} >= {"vllm-models", "smollm2-135m", "qwen2.5-coder-1.5b"}
            answer = client.chat.completions.create(model="vllm-models", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=gw.url, api_key="wrong", max_retries=0).models.list()
        assert upstream.calls["facebook/opt-125m"] == 1
    finally:
        upstream.__exit__()
