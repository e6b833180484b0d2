"""The latency filter: a per-request (``x-sizewise-max-latency-ms``) or per-key (``max_latency_ms``)
target excludes models whose p95 latency is above it (an edge model vs a cloud one).

Where the p95 comes from, in order: measured from the request log (successful answers of that model
in the last :data:`WINDOW` rows, once it has at least :data:`MIN_SAMPLES` of them; refreshed every
``refresh_s`` seconds), else the catalog's ``p95_latency_ms``. A model with neither is kept (there
is no evidence against it) and the report says its latency is unknown. When both a header and a key
limit exist, the stricter applies. When no model meets the target the request gets a 400.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.core.decision import FilterReport, RequestRejected

# The p95 query reads the request log's table, which lives below both the gateway and this filter.
from sizewise.core.requestlog import MIN_SAMPLES as MIN_SAMPLES
from sizewise.core.requestlog import WINDOW as WINDOW
from sizewise.core.requestlog import measured_p95 as measured_p95
from sizewise.policy.types import RequestContext


class LatencyFilter:
    """Drop models whose p95 latency is above the request's or the key's target."""

    name = "latency"

    def __init__(
        self,
        settings: GatewaySettings,
        measure: Callable[[], dict[str, float]] | None = None,
        refresh_s: float = 30.0,
    ) -> None:
        self._keys = {key.name: key.max_latency_ms for key in settings.api_keys if key.max_latency_ms is not None}
        self._measure = measure
        self.refresh_s = refresh_s
        self._measured: dict[str, float] = {}
        self._measured_at = -float("inf")
        self._lock = threading.Lock()

    def _due(self) -> bool:
        return self._measure is not None and time.monotonic() - self._measured_at > self.refresh_s

    def _refresh(self) -> None:
        with self._lock:
            if self._measure is not None and self._due():  # another request may have just refreshed them
                self._measured = self._measure()
                self._measured_at = time.monotonic()

    async def prepare(self, ctx: RequestContext) -> None:
        """Refresh due measurements in a worker thread (the log scan reads up to 25,000 rows) when this
        request has a target, so :meth:`apply` finds them fresh without blocking the event loop."""
        if self._due() and self.target(ctx) is not None:
            await asyncio.to_thread(self._refresh)

    def p95(self, spec: ModelSpec) -> tuple[float | None, str]:
        """(p95 in ms or None, where it came from)."""
        if self._due():  # called without prepare (a direct call): refresh here
            self._refresh()
        if spec.name in self._measured:
            return self._measured[spec.name], "measured"
        return spec.p95_latency_ms, "catalog"

    def target(self, ctx: RequestContext) -> float | None:
        """The stricter of the header's and the key's latency targets (ms)."""
        targets = [t for t in (ctx.max_latency_ms, self._keys.get(ctx.api_key or "")) if t is not None]
        return min(targets) if targets else None

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        target = self.target(ctx)
        if target is None:
            return candidates, report
        kept, unknown = [], []
        for spec in candidates:
            p95, source = self.p95(spec)
            if p95 is None:
                unknown.append(spec.name)
                kept.append(spec)
            elif p95 > target:
                report.removed[spec.name] = f"{source} p95 {p95:.0f} ms > target {target:.0f} ms"
            else:
                kept.append(spec)
        if unknown:
            report.note = f"latency unknown, kept: {', '.join(unknown)}"
        if not kept:
            raise RequestRejected(
                400,
                f"no model meets the latency target of {target:.0f} ms (p95); the fastest measured is "
                f"{min(self.p95(s)[0] or 0.0 for s in candidates):.0f} ms",
                "latency_target_unmet",
            )
        return kept, report
