"""What each catalog model can do: its ``capabilities``, or its backend's defaults.

A request that needs a capability (tools, a JSON schema, reasoning effort, logprobs) goes only to
models that have it (:mod:`sizewise.policy.constraints.capability`). ``vision`` and ``audio`` are not
declared: they follow from ``modalities`` (the modality filter already enforces them).
"""

from __future__ import annotations

from sizewise.catalog.schema import ModelSpec

#: Local GGUF models: llama.cpp constrains generation with grammars (JSON, JSON schema, tool calls) and
#: returns token logprobs; reasoning only when the entry says so.
LOCAL = frozenset({"tools", "json_object", "json_schema", "logprobs"})
#: An OpenAI-compatible upstream without a ``capabilities`` list: the chat surface vLLM, llama-server,
#: Ollama and the cloud APIs share; reasoning effort only when declared (others answer it with a 400).
REMOTE = frozenset({"tools", "json_object", "json_schema", "logprobs"})
#: Recorded answers replay text: nothing else.
REPLAY: frozenset[str] = frozenset()

_DEFAULTS = {"llamacpp": LOCAL, "openai": REMOTE, "replay": REPLAY}


def default_capabilities(spec: ModelSpec) -> frozenset[str]:
    """What ``spec``'s backend can do when the entry does not say (an embedded model's own list first)."""
    embedded = spec.settings.get("embedded") if spec.backend == "llamacpp" else None
    if embedded is not None:
        from sizewise.catalog.embedded import EMBEDDED

        model = EMBEDDED.get(str(embedded))
        if model is not None:
            return frozenset(model.capabilities)
    return _DEFAULTS.get(spec.backend, frozenset())


def capabilities(spec: ModelSpec) -> frozenset[str]:
    """Every capability of ``spec``: declared (or default), plus what its other fields imply."""
    caps = set(default_capabilities(spec) if spec.capabilities is None else spec.capabilities)
    if spec.reasoning_effort is not None or spec.reasoning_efforts:
        caps.add("reasoning")
    if "json_schema" in caps:  # a model that follows a schema can follow "any JSON object"
        caps.add("json_object")
    caps |= {name for name, modality in (("vision", "image"), ("audio", "audio")) if modality in spec.modalities}
    return frozenset(caps)
