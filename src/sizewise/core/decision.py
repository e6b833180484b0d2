"""What was decided for one request, and the one error that rejects a request.

:class:`Decision` (with one :class:`Step` per model call and one :class:`FilterReport` per filter) is
what policies return, what the gateway puts in the ``sizewise`` body object and what the request log
stores. :class:`RequestRejected` is raised wherever a request cannot be served as asked (a filter, a
policy, the gateway's own checks); the gateway answers it as an OpenAI-style JSON error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class RequestRejected(Exception):
    """The request cannot be served as asked (a client error): becomes an OpenAI-style JSON error.

    ``status`` is the HTTP status, ``code`` the machine-readable reason, ``param`` the request field
    at fault (if one is). ``sizewise.gateway.errors.GatewayError`` is this class under its old name.
    """

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole: Ray hands a deployment's rejection to the gateway
        return type(self), (self.status, self.message, self.code, self.param)


@dataclass
class FilterReport:
    """What one filter did: which models it removed and why."""

    filter: str
    removed: dict[str, str] = field(default_factory=dict)
    note: str | None = None

    @property
    def fired(self) -> bool:
        """True when the filter removed something or left a note."""
        return bool(self.removed) or self.note is not None


@dataclass
class Step:
    """One model call made for a request (a cascade rung, a retry or a fallback)."""

    model: str
    score: float | None = None
    threshold: float | None = None
    accepted: bool = False
    reason: str = ""
    cost: float = 0.0
    latency_s: float = 0.0
    error: str | None = None


@dataclass
class Decision:
    """What was decided for one request; returned in the ``sizewise`` body object and logged."""

    policy: str
    model: str | None = None
    score: float | None = None
    threshold: float | None = None
    escalated: bool = False
    steps: list[Step] = field(default_factory=list)
    filters: list[FilterReport] = field(default_factory=list)
    #: The model first chosen when a fault made the engine answer with another one.
    fallback_from: str | None = None
    errors: list[str] = field(default_factory=list)
    cost: float = 0.0
    reason: str = ""
    #: What session affinity did (``sizewise.serve.session``): new, same, kept (it overrode the router),
    #: switched (the router was beyond the margin) or moved (the session's model could not serve); None: no session.
    session: str | None = None
    #: Gateway reports added to the ``sizewise`` object beside the decision: ``savings`` (cost vs always-big
    #: and quality retained, :mod:`sizewise.learn.savings`), ``feedback`` (what became of ``sizewise.feedback``).
    notes: dict[str, Any] = field(default_factory=dict)
    #: What a task model did for an on-task request (:mod:`sizewise.serve.tasks`): which task, ``answered_by``
    #: (``task_model``, ``teacher``, ``policy``), the student's label, confidence and threshold; None: off-task.
    task: dict[str, Any] | None = None

    @property
    def fell_back(self) -> bool:
        """True when the answer came from another model than the one chosen, because of a fault."""
        return self.fallback_from is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN scores become None)."""
        # Written out (not dataclasses.asdict, which deep-copies recursively): this runs on every answer.
        return {
            "policy": self.policy,
            "model": self.model,
            "score": _finite(self.score),
            "threshold": _finite(self.threshold),
            "escalated": self.escalated,
            "fallback": self.fallback_from is not None,
            "fallback_from": self.fallback_from,
            "cost": self.cost,
            "reason": self.reason,
            "session": self.session,
            "steps": [
                {
                    "model": s.model,
                    "score": _finite(s.score),
                    "threshold": _finite(s.threshold),
                    "accepted": s.accepted,
                    "reason": s.reason,
                    "cost": s.cost,
                    "latency_s": s.latency_s,
                    "error": s.error,
                }
                for s in self.steps
            ],
            "filters": [{"filter": f.filter, "removed": f.removed, "note": f.note} for f in self.filters if f.fired],
            "filters_ran": [f.filter for f in self.filters],
            "errors": self.errors,
            **({"task": self.task} if self.task is not None else {}),
            **self.notes,
        }


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
