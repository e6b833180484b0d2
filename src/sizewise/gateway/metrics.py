"""Prometheus metrics, in a registry owned by one app (no global state, so apps and tests don't collide)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sizewise.policy.types import Decision

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Requests, tokens, cost and latency per model, and decisions per policy."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sizewise_requests", "Chat requests answered", ["policy", "model", "status"], registry=self.registry
        )
        self.decisions = Counter(
            "sizewise_decisions",
            "Routing decisions",
            ["policy", "model", "escalated", "fallback"],
            registry=self.registry,
        )
        self.tokens = Counter("sizewise_tokens", "Tokens", ["model", "kind"], registry=self.registry)
        self.cost = Counter("sizewise_cost_usd", "Cost in USD", ["model"], registry=self.registry)
        self.errors = Counter("sizewise_upstream_errors", "Failed model calls", ["model"], registry=self.registry)
        self.latency = Histogram(
            "sizewise_request_latency_seconds",
            "Request latency seen by the gateway",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int, bool, bool], tuple[Any, ...]] = {}

    def observe(
        self,
        decision: Decision | None,
        status: int,
        latency_s: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Record one finished request."""
        policy = decision.policy if decision else "-"
        model = (decision.model if decision else None) or "-"
        key = (policy, model, status, decision.escalated if decision else False, bool(decision and decision.fell_back))
        children = self._children.get(key)
        if children is None:
            # labels() hashes and locks on every call; resolve each label set once.
            children = self._children[key] = (
                self.requests.labels(policy, model, str(status)),
                self.latency.labels(model),
                self.decisions.labels(policy, model, str(key[3]).lower(), str(key[4]).lower()),
                self.tokens.labels(model, "prompt"),
                self.tokens.labels(model, "completion"),
                self.cost.labels(model),
            )
        requests, latency, decisions, prompt, completion, cost = children
        requests.inc()
        latency.observe(latency_s)
        if decision is None:
            return
        for step in decision.steps:
            if step.error:
                self.errors.labels(step.model).inc()
        if status < 400:
            decisions.inc()
            prompt.inc(prompt_tokens)
            completion.inc(completion_tokens)
            if decision.cost:
                cost.inc(decision.cost)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
