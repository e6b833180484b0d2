"""Outcomes at the gateway: ``POST /v1/feedback``, the ``sizewise.feedback`` field of a chat request,
the prompt vectors kept when the text is not logged, and the savings estimate in ``/metrics``.

A client rates an answer by its request id (``x-request-id``, or the ``chatcmpl-<id>`` of the body):
``{"request_id": ..., "score": 0.8}`` or ``{"request_id": ..., "thumbs": "up"}``, optionally with a
``reference`` answer and the ``model`` it rates (the model that answered; the default). The same object
may ride on the client's next chat request as ``"sizewise": {"feedback": {...}}``: the chat request is
answered whatever the feedback's fate, and the ``sizewise`` object of its answer says whether it was
stored. Outcomes go to :class:`~sizewise.learn.outcomes.OutcomeStore` in the request log's database.

Trust: with API keys on, a key may rate only the requests it made itself; any other id is answered
exactly like an unknown one (404), so a client cannot even learn that another's request exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import Response

from sizewise.gateway.errors import GatewayError, error_response, from_validation
from sizewise.gateway.schemas import read_body
from sizewise.learn.outcomes import Outcome, OutcomeStore

logger = logging.getLogger("sizewise.feedback")

#: How long a lookup waits for the request log's writer when an id is not there yet (rows are batched).
FLUSH_WAIT_S = 2.0
#: Seconds between two refreshes of the savings estimate (it reads the log; /metrics reads the cache).
SAVINGS_EVERY_S = 30.0
#: Longest reference answer stored (characters).
MAX_REFERENCE = 100_000


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback`` (and ``sizewise.feedback`` in a chat request)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64, description="the rated request's id (x-request-id)")
    score: float | None = Field(default=None, ge=0, le=1, strict=True, description="quality in [0, 1]")
    thumbs: Literal["up", "down"] | None = Field(default=None, description="or thumbs: up = 1, down = 0")
    reference: str | None = Field(default=None, max_length=MAX_REFERENCE, description="a correct answer")
    model: str | None = Field(default=None, max_length=200, description="the rated model (default: who answered)")

    @model_validator(mode="after")
    def _one_rating(self) -> FeedbackRequest:
        if (self.score is None) == (self.thumbs is None):
            raise ValueError("give exactly one of 'score' (a number in [0, 1]) or 'thumbs' ('up' or 'down')")
        return self

    def rating(self) -> float:
        """The score in [0, 1]."""
        return float(self.score) if self.score is not None else (1.0 if self.thumbs == "up" else 0.0)


class _Inline(BaseModel):
    """The ``sizewise`` object a chat request may carry."""

    model_config = ConfigDict(extra="forbid")

    feedback: FeedbackRequest | None = None


class GatewayOutcomes:
    """The gateway's outcome store, its request-log lookups, and the cached savings estimate."""

    def __init__(self, store: OutcomeStore, log: Any = None, big: str | None = None) -> None:
        self.store = store
        self.log = log
        self.big = big
        self.savings: Any = None  # the latest sizewise.learn.savings.Savings
        self.savings_compact: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- feedback ----------------------------------------------------------------------------------------
    def _find(self, request_id: str) -> dict[str, Any] | None:
        row = self.store.request(request_id)
        if row is not None or self.log is None:
            return row
        queued = self.log.queued(request_id)  # answered a moment ago: its row is still in the writer's queue
        if queued is not None:
            model = queued.decision.model if queued.decision is not None else None
            return {"request_id": request_id, "model": model, "api_key": queued.api_key, "status": queued.status}
        self.log.flush(FLUSH_WAIT_S)  # taken by the writer between the two looks: written within its batch
        return self.store.request(request_id)

    def record(self, feedback: FeedbackRequest, api_key: str | None, *, via: str = "feedback") -> Outcome:
        """Store ``feedback`` from the client holding ``api_key`` (None: keys are off); a
        :class:`GatewayError` (404 unknown or not this key's, 409 no answer, 400 wrong model) otherwise."""
        row = self._find(feedback.request_id)
        if row is None or (api_key is not None and row["api_key"] != api_key):
            raise GatewayError(404, f"unknown request id {feedback.request_id!r}", "request_not_found", "request_id")
        if row["model"] is None or row["status"] is None or row["status"] >= 400:
            raise GatewayError(409, f"request {feedback.request_id!r} has no answer to rate", "no_answer", "request_id")
        if feedback.model is not None and feedback.model != row["model"]:
            message = f"request {feedback.request_id!r} was answered by {row['model']!r}, not {feedback.model!r}"
            raise GatewayError(400, message, "wrong_model", "model")
        detail: dict[str, Any] = {"via": via}
        if feedback.thumbs is not None:
            detail["thumbs"] = feedback.thumbs
        if feedback.reference is not None:
            detail["reference"] = feedback.reference
        outcome = Outcome(feedback.request_id, row["model"], feedback.rating(), "feedback", detail=detail)
        self.store.add(outcome)
        return outcome

    # -- features kept without text (called by the request log's writer thread) ----------------------------
    def keep_features(self, items: list[tuple[str, str]]) -> None:
        """Keep the static embedding of each ``(request_id, prompt text)``; the text itself is not stored."""
        from sizewise.embedding import embed_id, embed_static

        texts = [text for _, text in items]
        vectors = embed_static(texts)
        self.store.keep_features_many(
            [(rid, v.tolist()) for (rid, _), v in zip(items, vectors, strict=True)], embed_id("static")
        )

    # -- savings -------------------------------------------------------------------------------------------
    def refresh(self) -> Any:
        """Recompute the savings estimate now (reads the log); returns it."""
        from sizewise.learn.savings import savings_of

        savings = savings_of(self.store, big=self.big)
        self.savings_compact = savings.compact()
        self.savings = savings
        return savings

    def start(self, every_s: float = SAVINGS_EVERY_S) -> None:
        """Refresh the savings estimate in a background thread, now and every ``every_s`` seconds."""

        def run() -> None:
            while True:
                started = time.perf_counter()
                try:
                    self.refresh()
                except Exception:  # a database hiccup costs one refresh, never the thread
                    logger.exception("savings estimate: refresh failed")
                # A large log makes a refresh slow: wait 20x its duration at least, so it takes <= 5% of a core.
                if self._stop.wait(max(every_s, 20 * (time.perf_counter() - started))):
                    return

        self._thread = threading.Thread(target=run, name="sizewise-savings", daemon=True)
        self._thread.start()

    def register(self, registry: Any) -> None:
        """Export the cached estimate as gauges in a prometheus ``registry``."""
        from prometheus_client.core import GaugeMetricFamily

        owner = self

        class _Collector:
            def collect(self) -> Any:
                s = owner.savings
                if s is None:
                    return
                values = {
                    "sizewise_cost_vs_always_big_ratio": ("Cost of answered requests / always-big cost", s.cost_ratio),
                    "sizewise_quality_retained_ratio": ("Estimated quality / always-big quality", s.quality),
                    "sizewise_quality_retained_low": ("Lower end of its 95% interval", s.low),
                    "sizewise_quality_retained_high": ("Upper end of its 95% interval", s.high),
                    "sizewise_judged_requests": ("Judged requests behind the estimate", s.judged),
                }
                for name, (help_text, value) in values.items():
                    if value is not None:
                        yield GaugeMetricFamily(name, help_text, value=float(value))

        registry.register(_Collector())

    def close(self) -> None:
        """Stop the refresher and release the database."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.close()


# -- HTTP ---------------------------------------------------------------------------------------------------
async def post_feedback(request: Request) -> Response:
    """``POST /v1/feedback``: store a client's rating of one of its answers."""
    state = request.app.state.gateway
    try:
        record = state.keys.check(request.headers)
        raw = await read_body(request, state.settings.max_body_bytes)
        try:
            feedback = FeedbackRequest.model_validate_json(raw)
        except ValidationError as error:
            raise from_validation(error) from None
        outcomes: GatewayOutcomes | None = getattr(state, "outcomes", None)
        if outcomes is None:
            raise GatewayError(503, "feedback needs the request log (gateway.log_url is 'none')", "outcomes_off")
        outcome = await asyncio.to_thread(outcomes.record, feedback, record.name if record else None)
    except GatewayError as error:
        return error_response(error.status, error.message, error.code, error.param)
    body = {"object": "feedback", "request_id": outcome.request_id, "model": outcome.model, "score": outcome.score}
    return Response(json.dumps(body).encode(), media_type="application/json")


def take_inline(extra: dict[str, Any] | None) -> FeedbackRequest | None:
    """Remove the ``sizewise`` object from a chat request's extra fields (it is never sent upstream) and
    return its feedback; a 400 naming the field when it is malformed."""
    if not extra or "sizewise" not in extra:
        return None
    value = extra.pop("sizewise")
    try:
        return _Inline.model_validate(value).feedback
    except ValidationError as error:
        failure = from_validation(error)
        param = f"sizewise.{failure.param}" if failure.param else "sizewise"
        message = failure.message.replace(repr(failure.param), repr(param)) if failure.param else failure.message
        raise GatewayError(400, message, failure.code, param) from None


async def outcome_notes(
    outcomes: GatewayOutcomes | None, feedback: FeedbackRequest | None, api_key: str | None
) -> dict[str, Any]:
    """What a chat answer's ``sizewise`` object adds: ``savings`` (the cached estimate) and, when the request
    carried feedback, ``feedback`` (stored, or the reason it was not; the chat request is answered either way)."""
    notes: dict[str, Any] = {}
    if outcomes is not None and outcomes.savings is not None:
        notes["savings"] = outcomes.savings_compact
    if feedback is None:
        return notes
    report: dict[str, Any] = {"request_id": feedback.request_id, "stored": False}
    if outcomes is None:
        report["error"] = "feedback needs the request log (gateway.log_url is 'none')"
    else:
        try:
            await asyncio.to_thread(outcomes.record, feedback, api_key, via="chat")
            report["stored"] = True
        except GatewayError as error:
            report["error"] = error.message
        except Exception as error:  # a database fault costs the feedback, never the chat answer
            logger.exception("feedback on %s: not stored", feedback.request_id)
            report["error"] = f"not stored: {type(error).__name__}"
    notes["feedback"] = report
    return notes


class PendingNotes:
    """:func:`outcome_notes` started at once, so feedback is stored while the model answers."""

    def __init__(self, outcomes: GatewayOutcomes | None, feedback: FeedbackRequest | None, api_key: str | None):
        self._task = asyncio.ensure_future(outcome_notes(outcomes, feedback, api_key)) if feedback else None
        self._ready = {"savings": outcomes.savings_compact} if outcomes is not None and outcomes.savings else {}

    async def result(self) -> dict[str, Any]:
        """The notes for the answer's ``sizewise`` object."""
        return await self._task if self._task is not None else self._ready


def start_outcomes(state: Any) -> GatewayOutcomes | None:
    """The outcome side of a gateway ``state`` (None when its request log is off): the store in the log's
    database, vectors kept by the log writer when text is off, savings gauges, the refresher thread."""
    if state.log is None:
        return None
    outcomes = GatewayOutcomes(OutcomeStore(state.log.url), state.log, big=state.engine.big.name)
    state.log.keep_features = outcomes.keep_features
    outcomes.register(state.metrics.registry)
    outcomes.start()
    return outcomes
