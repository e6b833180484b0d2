"""The capability filter: what a request needs beyond reading its inputs. Runs right after modality.

What a request needs is read from its OpenAI fields: ``tools`` (unless ``tool_choice`` is ``"none"``)
needs ``tools``; ``response_format`` ``json_schema`` / ``json_object`` needs that; ``reasoning_effort``
needs ``reasoning``; ``logprobs`` (or ``top_logprobs``) needs ``logprobs``. Models lacking one are
removed (the report says which capability); none left is a 400 naming it, and so is a request that
*names* a model lacking one. A model's capabilities are its catalog ``capabilities`` or its backend's
defaults (:mod:`sizewise.catalog.capabilities`).

A request that sends ``reasoning_effort`` prefers the rungs at that effort (soft, like a domain route:
when none of them is left, the other rungs stay and the request's own effort is what is sent).
"""

from __future__ import annotations

from sizewise.catalog.capabilities import capabilities
from sizewise.catalog.schema import ModelSpec
from sizewise.core.chat import ChatRequest
from sizewise.core.decision import FilterReport, RequestRejected
from sizewise.policy.types import RequestContext

#: The request field that asks for each capability (the 400's ``param``).
FIELDS = {
    "tools": "tools",
    "json_schema": "response_format",
    "json_object": "response_format",
    "reasoning": "reasoning_effort",
    "logprobs": "logprobs",
}


def needed(request: ChatRequest) -> list[str]:
    """The capabilities a request needs, in :data:`FIELDS` order."""
    extra = request.extra
    need = set()
    if extra.get("tools") and extra.get("tool_choice") != "none":
        need.add("tools")
    if extra.get("functions") and extra.get("function_call") != "none":  # the older spelling of tools
        need.add("tools")
    response_format = extra.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in ("json_schema", "json_object"):
        need.add(kind)
    if extra.get("reasoning_effort") is not None:
        need.add("reasoning")
    if request.logprobs or extra.get("top_logprobs"):
        need.add("logprobs")
    return [name for name in FIELDS if name in need]


class CapabilityFilter:
    """Drop models that lack a capability the request needs; 400 when none, or the named one, has it."""

    name = "capability"

    def __init__(self, aliases: dict[str, str] | None = None) -> None:
        #: Other names of catalog models (``aliases``), so a request naming one is judged as naming the model.
        self.aliases = aliases or {}
        self._capabilities: dict[str, frozenset[str]] = {}  # by model name: a catalog's entries do not change

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        need = needed(ctx.request)
        if not need:
            return candidates, report
        named = self.aliases.get(ctx.model_field, ctx.model_field)
        kept = []
        for spec in candidates:
            caps = self._capabilities.get(spec.name)
            if caps is None:
                caps = self._capabilities[spec.name] = capabilities(spec)
            missing = [cap for cap in need if cap not in caps]
            if not missing:
                kept.append(spec)
                continue
            report.removed[spec.name] = f"lacks {', '.join(missing)}"
            if spec.name == named:
                raise RequestRejected(
                    400,
                    f"model {spec.name!r} does not support {' and '.join(missing)} (this request sends "
                    f"{', '.join(sorted({FIELDS[m] for m in missing}))}); name a model that does, or "
                    "send model 'sizewise' to be routed to one",
                    "model_lacks_capability",
                    param=FIELDS[missing[0]],
                )
        if not kept:
            raise RequestRejected(
                400,
                f"no model in the catalog supports {' and '.join(need)} (this request sends "
                f"{', '.join(sorted({FIELDS[n] for n in need}))}); list {', '.join(need)} in the "
                "capabilities of a catalog model that has them",
                "unsupported_capability",
                param=FIELDS[need[0]],
            )
        return self._prefer_effort(ctx, kept, report, named), report

    @staticmethod
    def _prefer_effort(ctx: RequestContext, kept: list[ModelSpec], report: FilterReport, named: str) -> list[ModelSpec]:
        effort = ctx.request.extra.get("reasoning_effort")
        if effort is None:
            return kept
        # A named rung stays: the client chose it, and its own reasoning_effort field is what is sent.
        at_effort = [s for s in kept if s.reasoning_effort in (None, effort) or s.name == named]
        if not at_effort:
            report.note = f"no rung at reasoning_effort {effort!r}: the request's effort is sent to the one chosen"
            return kept
        names = {s.name for s in at_effort}
        for spec in kept:
            if spec.name not in names:
                report.removed[spec.name] = f"a rung at reasoning_effort {spec.reasoning_effort!r}, not {effort!r}"
        return at_effort
