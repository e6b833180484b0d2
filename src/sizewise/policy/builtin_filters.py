"""Filters every request needs: the model must read the input's modalities and fit the prompt.

These also decide which models may serve as a fallback, since the engine only falls back to
candidates that survived the filters.
"""

from __future__ import annotations

from sizewise.catalog.schema import ModelSpec
from sizewise.policy.types import FilterReport, RequestContext, RequestRejected, register_filter


class ModalityFilter:
    """Drop models that cannot read an input modality present in the request (e.g. an image)."""

    name = "modality"

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        if ctx.modalities <= {"text"}:
            return candidates, report
        kept = []
        for spec in candidates:
            missing = ctx.modalities - set(spec.modalities)
            if missing:
                report.removed[spec.name] = f"cannot read {', '.join(sorted(missing))}"
            else:
                kept.append(spec)
        if not kept:
            raise RequestRejected(
                400,
                f"no model can read this input ({', '.join(sorted(ctx.modalities))})",
                "unsupported_modality",
                param="messages",
            )
        return kept, report


class ContextFilter:
    """Drop models whose context window cannot hold the prompt plus ``max_tokens``."""

    name = "context"

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        needed = ctx.prompt_tokens + (ctx.max_tokens or 0)
        kept = [spec for spec in candidates if spec.context_window >= needed]
        if len(kept) == len(candidates):
            return candidates, report
        for spec in candidates:
            if spec.context_window < needed:
                report.removed[spec.name] = f"context {spec.context_window} < ~{needed} tokens"
        if not kept:
            largest = max((spec.context_window for spec in candidates), default=0)
            raise RequestRejected(
                400,
                f"this request needs about {needed} tokens (prompt ~{ctx.prompt_tokens} + max_tokens "
                f"{ctx.max_tokens or 0}); the largest context window available is {largest}",
                "context_length_exceeded",
                param="messages",
            )
        return kept, report


register_filter("modality", lambda env: ModalityFilter())
register_filter("context", lambda env: ContextFilter())
