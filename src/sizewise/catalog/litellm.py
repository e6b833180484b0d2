"""Read a LiteLLM proxy ``config.yaml`` (its ``model_list``) as a sizewise catalog.

Each ``model_list`` entry whose provider speaks the OpenAI API (``openai/``, ``hosted_vllm/``, ``ollama/``,
``ollama_chat/`` or no prefix) becomes an ``openai``-backend model named by its ``model_name``; the
embedded models come along (``extends: builtin``). Every entry gets one note line: what it maps to, or
why it is skipped (Azure, Bedrock, wildcards...). ``api_key: os.environ/NAME`` becomes ``api_key_env``;
``input_cost_per_token`` / ``output_cost_per_token`` (in ``litellm_params`` or ``model_info``) become
prices per 1M tokens; ``general_settings.master_key`` becomes the gateway's one client key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from sizewise.errors import ConfigError

Loc = tuple[str | int, ...]

OPENAI_URL = "https://api.openai.com/v1"
OLLAMA_URL = "http://localhost:11434"
#: Providers whose upstream answers OpenAI chat completions at ``api_base``.
OPENAI_COMPATIBLE = {"openai", "hosted_vllm", "ollama", "ollama_chat"}
#: LiteLLM sections sizewise has no counterpart for (said once in a note, never silently dropped).
IGNORED_SECTIONS = ("litellm_settings", "router_settings", "environment_variables", "credential_list")
DEFAULT_CONTEXT = 8192


def is_litellm(data: Mapping[str, Any]) -> bool:
    """A LiteLLM config: ``model_list`` and no sizewise ``models``."""
    return "model_list" in data and "models" not in data


def from_litellm(
    data: Mapping[str, Any],
    where: Callable[[Loc], str],
    lines: dict[Loc, int],
    notes: list[str],
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The sizewise catalog mapping for LiteLLM config ``data``; ``lines`` gains each model's source line."""
    environ = os.environ if env is None else env
    entries = data.get("model_list")
    if not isinstance(entries, list):
        raise ConfigError(f"{where(('model_list',))}: model_list: expected a list of models")
    models: list[dict[str, Any]] = []
    taken: set[str] = set()
    for index, item in enumerate(entries):
        loc: Loc = ("model_list", index)
        model, why = _model(item, loc, where, environ)
        label = f"{where(loc)}: litellm model_list[{index}]"
        if model is None:
            notes.append(f"note: {label}: skipped: {why}")
            continue
        name = _unique(model["name"], taken)
        if name != model["name"]:
            why += f"; named {name!r} (sizewise calls one model per name, no load balancing)"
            model["name"] = name
        for key, line in list(lines.items()):  # schema errors about this model point at the LiteLLM entry
            if key[:2] == loc:
                lines[("models", len(models), *key[2:])] = line
        models.append(model)
        notes.append(f"note: {label}: {name!r} -> {why}")
    catalog: dict[str, Any] = {"extends": "builtin", "models": models}
    catalog["gateway"] = _gateway(data.get("general_settings"), where, environ, notes)
    ignored = [section for section in IGNORED_SECTIONS if data.get(section)]
    if ignored:
        notes.append(f"note: {where(())}: litellm sections not used by sizewise: {', '.join(ignored)}")
    return catalog


def _model(
    item: Any, loc: Loc, where: Callable[[Loc], str], env: Mapping[str, str]
) -> tuple[dict[str, Any] | None, str]:
    """(catalog entry, what it maps to) or (None, why it is skipped)."""
    if not isinstance(item, dict) or not isinstance(item.get("litellm_params"), dict):
        raise ConfigError(f"{where(loc)}: model_list[{loc[1]}]: needs model_name and litellm_params")
    name, params = item.get("model_name"), item["litellm_params"]
    info: dict[str, Any] = item["model_info"] if isinstance(item.get("model_info"), dict) else {}
    target = params.get("model")
    if not isinstance(name, str) or not name or not isinstance(target, str) or not target:
        raise ConfigError(f"{where(loc)}: model_list[{loc[1]}]: needs model_name and litellm_params.model")
    provider, _, upstream = target.partition("/") if "/" in target else ("openai", "", target)
    if "*" in name or "*" in target:
        return None, f"wildcard {target!r} (name each model sizewise may call)"
    if provider not in OPENAI_COMPATIBLE:
        return None, f"provider {provider!r} ({target}) is not an OpenAI-compatible upstream sizewise can call"
    base = _value(params.get("api_base"), (*loc, "litellm_params", "api_base"), where, env)
    if provider.startswith("ollama"):
        base = (base or OLLAMA_URL).rstrip("/") + "/v1"
    settings: dict[str, Any] = {"base_url": base or OPENAI_URL, "model": upstream}
    key = params.get("api_key")
    if isinstance(key, str) and key.startswith("os.environ/"):
        settings["api_key_env"] = key.removeprefix("os.environ/")
    elif isinstance(key, str) and key and key.lower() != "none":
        settings["headers"] = {"Authorization": f"Bearer {key}"}
    elif key is None and provider == "openai" and not base:
        settings["api_key_env"] = "OPENAI_API_KEY"  # what LiteLLM reads for OpenAI itself
    if isinstance(params.get("timeout"), int | float):
        settings["timeout_s"] = params["timeout"]
    context = info.get("max_input_tokens") or info.get("max_tokens") or DEFAULT_CONTEXT
    model: dict[str, Any] = {"name": name, "backend": "openai", "context_window": context, "settings": settings}
    for ours, theirs in (("price_in", "input_cost_per_token"), ("price_out", "output_cost_per_token")):
        cost = params.get(theirs, info.get(theirs))
        if isinstance(cost, int | float):
            model[ours] = cost * 1e6
    model.update(_capabilities(info))
    what = f"openai backend {settings['base_url']} model {upstream!r}"
    if "api_key_env" in settings:
        what += f", key from ${settings['api_key_env']}"
    if context == DEFAULT_CONTEXT and not info.get("max_input_tokens") and not info.get("max_tokens"):
        what += f", context_window {DEFAULT_CONTEXT} (set model_info.max_input_tokens)"
    return model, what


#: LiteLLM ``model_info`` flags -> the sizewise capability each one states.
CAPABILITY_FLAGS = {
    "supports_function_calling": "tools",
    "supports_response_schema": "json_schema",
    "supports_reasoning": "reasoning",
}


def _capabilities(info: Mapping[str, Any]) -> dict[str, Any]:
    """``capabilities`` (and ``modalities``) where LiteLLM's ``model_info`` states them; unstated ones keep
    the openai backend's defaults (:data:`sizewise.catalog.capabilities.REMOTE`)."""
    from sizewise.catalog.capabilities import REMOTE

    out: dict[str, Any] = {}
    stated = {flag: info[flag] for flag in CAPABILITY_FLAGS if isinstance(info.get(flag), bool)}
    if stated:
        caps = set(REMOTE)
        for flag, value in stated.items():
            (caps.add if value else caps.discard)(CAPABILITY_FLAGS[flag])
        out["capabilities"] = sorted(caps)
    modalities = ["text"]
    modalities += ["image"] if info.get("supports_vision") is True else []
    modalities += ["audio"] if info.get("supports_audio_input") is True else []
    if len(modalities) > 1:
        out["modalities"] = modalities
    return out


def _value(value: Any, loc: Loc, where: Callable[[Loc], str], env: Mapping[str, str]) -> str | None:
    """A LiteLLM string value, ``os.environ/NAME`` read from the environment."""
    if value is None:
        return None
    text = str(value)
    if text.startswith("os.environ/"):
        name = text.removeprefix("os.environ/")
        if not env.get(name):
            raise ConfigError(f"{where(loc)}: environment variable {name} is not set ({text})")
        return env[name]
    return text


def _gateway(general: Any, where: Callable[[Loc], str], env: Mapping[str, str], notes: list[str]) -> dict[str, Any]:
    """``general_settings.master_key`` -> the one client key (stored as its sha256)."""
    import hashlib

    if not isinstance(general, dict) or general.get("master_key") is None:
        return {}
    key = _value(general["master_key"], ("general_settings", "master_key"), where, env) or ""
    notes.append(f"note: {where(('general_settings', 'master_key'))}: master_key: clients must send it as their key")
    unused = sorted(str(key) for key in general if key != "master_key")
    if unused:
        notes.append(
            f"note: {where(('general_settings',))}: general_settings not used by sizewise: {', '.join(unused)}"
        )
    return {"api_keys": [{"name": "master_key", "sha256": hashlib.sha256(key.encode()).hexdigest()}]}


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate
