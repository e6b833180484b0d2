"""The modality filter: what a model *can* read. Runs first.

A request with image (or audio) parts goes only to models whose catalog entry lists that modality;
a text-only model never receives one. Models that do not chat at all (``kind`` ``vision``,
``classifier``, ``embedding``: they classify or embed, they do not answer messages) are removed
from every chat request. When nothing is left the request gets a 400 naming the missing modality.
"""

from __future__ import annotations

from sizewise.catalog.schema import ModelSpec
from sizewise.core.decision import FilterReport, RequestRejected
from sizewise.policy.types import RequestContext

#: Model kinds that answer chat messages.
CHAT_KINDS = frozenset({"llm", "multimodal", "domain"})


class ModalityFilter:
    """Drop models that cannot read an input modality of the request, or cannot chat."""

    name = "modality"

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        kept = []
        for spec in candidates:
            missing = ctx.modalities - set(spec.modalities)
            if spec.kind not in CHAT_KINDS:
                report.removed[spec.name] = f"kind {spec.kind!r} does not answer chat requests"
            elif missing:
                report.removed[spec.name] = f"cannot read {', '.join(sorted(missing))}"
            else:
                kept.append(spec)
        if not kept:
            extra = sorted(ctx.modalities - {"text"})
            what = f"{' and '.join(extra)} input" if extra else "chat requests"
            raise RequestRejected(
                400,
                f"no model in the catalog accepts {what}; add a model with modalities {sorted(ctx.modalities)}",
                "unsupported_modality",
                param="messages",
            )
        return kept, report
