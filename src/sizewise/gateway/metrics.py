"""Prometheus metrics, in a registry owned by one app (no global state, so apps and tests don't collide).

Label values are bounded whatever clients send: a ``model`` label is a catalog model or ``other``; a
``policy`` label is a known policy name (``sizewise``, the configured default, a catalog model), the
family of a parameterised one (``router-*`` for every ``router-<name>-<threshold>``) or ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sizewise.core.decision import Decision
from sizewise.policy.types import policy_keys

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Requests, tokens, cost and latency per model, and decisions per policy."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, models: Iterable[str] = (), policies: Iterable[str] = (), families: Iterable[str] = ()) -> None:
        """``models``: catalog names; ``policies``: exact policy names; ``families``: policy prefixes
        (``router-``). Any other value is counted as ``other``, so the series stay bounded."""
        self._models = {*models, "-"}
        self._policies = {*policies, *self._models, "sizewise"}
        self._families = tuple(families)
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
        #: On-task requests (``sizewise.serve.tasks``) by task model and what answered: ``task_model`` (its student),
        #: ``teacher``, ``policy`` or ``named model``; the student's share of a task is its coverage.
        self.tasks = Counter(
            "sizewise_task_requests",
            "On-task requests by what answered them",
            ["task", "answered_by"],
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
        policy = self.policy_label(decision.policy if decision else "-")
        model = self.model_label((decision.model if decision else None) or "-")
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
                self.errors.labels(self.model_label(step.model)).inc()
        if status < 400:
            decisions.inc()
            if decision.task is not None:
                task, answered_by = str(decision.task.get("task")), str(decision.task.get("answered_by"))
                self.tasks.labels(self.model_label(task), answered_by).inc()
            prompt.inc(prompt_tokens)
            completion.inc(completion_tokens)
            if decision.cost:
                cost.inc(decision.cost)

    @classmethod
    def for_gateway(cls, models: Iterable[str], default_policy: str) -> Metrics:
        """Metrics whose known policies are the registered names (``sizewise``, ...) and the configured
        default, and whose families are the registered prefixes (``router-``, ``multi-``, ``cascade-``)."""
        keys = policy_keys()
        exact = [key for key in keys if not key.endswith("-")]
        return cls(models, [*exact, default_policy], [key for key in keys if key.endswith("-")])

    def model_label(self, model: str) -> str:
        """``model`` if it is a catalog model, else ``other``."""
        return model if model in self._models else "other"

    def policy_label(self, policy: str) -> str:
        """``policy`` if known, else its family (``router-*``), else ``other``."""
        if policy in self._policies:
            return policy
        family = next((prefix for prefix in self._families if policy.startswith(prefix)), None)
        return f"{family}*" if family else "other"

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
