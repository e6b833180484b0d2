"""Shadow judging: some answered requests are answered again by the decision's other model, off the
request path, and a judge scores both answers into the outcome store.

Which requests (:class:`Sampler`): each routed request is chosen with probability
``p = uniform_rate + (1 - uniform_rate) * a(score)``, where ``a`` is largest where the router is least
sure: ``a = active_rate * w / mean(w)``, capped at 1, with ``w = exp(-d^2 / 2)`` and ``d`` the distance
from the threshold in units of ``active_width`` times the spread of recent scores (so the mean of ``a``
over recent traffic is about ``active_rate``). ``p`` goes into every outcome's ``detail`` as
``inclusion_p`` (weight an estimate by ``1 / p``), beside ``chosen_by`` (``uniform`` or ``active``).

How (:class:`ShadowRunner`): a bounded queue and a few worker tasks; a job chosen while the queue is
full is dropped and counted. Each job checks the daily cap (:mod:`.shadow_spend`), keeps remote models
away from personal data (the gateway's privacy scan, given as ``personal``), calls the other model
through its backend, judges (:mod:`.judges`) and stores one outcome per model.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sizewise.backends.base import Backend, BackendError, ChatRequest
from sizewise.catalog.schema import ModelSpec, ShadowSettings
from sizewise.learn.judges import JudgeError, LLMJudge, Verdict, grade
from sizewise.learn.outcomes import Outcome
from sizewise.learn.shadow_spend import SpendLedger

logger = logging.getLogger("sizewise.shadow")

#: Recent router scores the sampler keeps, how many it needs before it trusts their spread, and how
#: often (in new scores) it refreshes the spread and the mean weight.
WINDOW = 512
MIN_SCORES = 20
REFRESH_EVERY = 32


class Store(Protocol):
    """What the runner needs of :class:`sizewise.learn.outcomes.OutcomeStore`."""

    def add_many(self, outcomes: list[Outcome]) -> None: ...


class Sampler:
    """Chooses which routed requests to shadow (see the module docstring); cheap enough for the request path."""

    def __init__(
        self, uniform_rate: float, active_rate: float, active_width: float, rng: random.Random | None = None
    ) -> None:
        self.uniform_rate = uniform_rate
        self.active_rate = active_rate
        self.active_width = active_width
        self.rng = rng or random.Random()
        self._scores: deque[float] = deque(maxlen=WINDOW)
        self._seen = 0
        self._spread: float | None = None
        self._mean_weight: dict[float, float] = {}  # per threshold: clients may send router-<name>-<t>

    def _refresh(self) -> None:
        ordered = sorted(self._scores)
        q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
        # The interquartile range (as a standard deviation) resists a few outlying scores.
        spread = (q3 - q1) / 1.349
        self._spread = spread if spread > 0 and len(ordered) >= MIN_SCORES else None
        self._mean_weight.clear()

    def _weight(self, score: float, threshold: float) -> float:
        assert self._spread is not None
        distance = abs(score - threshold) / (self.active_width * self._spread)
        return math.exp(-0.5 * distance * distance)

    def active_chance(self, score: float, threshold: float) -> float:
        """The active part ``a(score)``: ``active_rate`` everywhere until the spread of scores is known."""
        if self._spread is None:
            return self.active_rate
        mean = self._mean_weight.get(threshold)
        if mean is None:
            mean = self._mean_weight[threshold] = sum(self._weight(s, threshold) for s in self._scores) / len(
                self._scores
            )
        if mean <= 0:
            return self.active_rate
        return min(1.0, self.active_rate * self._weight(score, threshold) / mean)

    def choose(self, score: float, threshold: float) -> tuple[str, float] | None:
        """(``uniform`` or ``active``, inclusion probability) when this request is chosen, else None."""
        self._scores.append(score)
        self._seen += 1
        if self._seen % REFRESH_EVERY == 0 or self._seen == MIN_SCORES:
            self._refresh()
        active = self.active_chance(score, threshold)
        chance = self.uniform_rate + (1 - self.uniform_rate) * active
        if self.uniform_rate > 0 and self.rng.random() < self.uniform_rate:
            return "uniform", chance
        if active > 0 and self.rng.random() < active:
            return "active", chance
        return None


@dataclass
class ShadowJob:
    """One chosen request: what was asked, who answered what, and whom to ask in the shadow."""

    request_id: str
    #: What the client asked, without its ``sizewise`` object; the shadow model gets the same.
    request: ChatRequest
    #: The conversation as text, for the judge.
    question: str
    served: str
    answer: str
    others: list[ModelSpec]
    reference: str | None = None
    answer_format: str | None = None
    #: Whether the request carries personal data, when the gateway's privacy scan already said (None: unknown).
    personal: bool | None = None
    #: Goes into every outcome's detail: ``inclusion_p``, ``chosen_by``, the router's score and threshold.
    detail: dict[str, Any] = field(default_factory=dict)


class ShadowRunner:
    """Runs shadow jobs in the background: :meth:`submit` never waits; :meth:`aclose` at shutdown."""

    def __init__(
        self,
        settings: ShadowSettings,
        backend: Callable[[ModelSpec], Backend],
        store: Store,
        ledger: SpendLedger,
        *,
        judge: LLMJudge | None,
        personal: Callable[[ChatRequest], bool] | None = None,
        count: Callable[[str], None] = lambda event: None,
        timeout_s: float = 120.0,
        reference_for: Callable[[str], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.ledger = ledger
        self.judge = judge
        self.personal = personal
        self.count = count
        self.timeout_s = timeout_s
        #: A reference answer a client gave for a request in feedback (looked up when the request had no label).
        self.reference_for = reference_for
        self._queue: asyncio.Queue[ShadowJob] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self._busy = 0

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job`` (called on the event loop, after the response was sent); False when dropped."""
        if self._closed:
            self.count("dropped")
            return False
        if self._queue is None:  # created on the loop that serves, at the first job
            self._queue = asyncio.Queue(self.settings.queue_size)
            self._workers = [asyncio.create_task(self._work()) for _ in range(self.settings.concurrency)]
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.count("dropped")
            return False
        self.count("queued")
        return True

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            self._busy += 1
            try:
                await self.run(job)
            except Exception:  # a bug must not kill the worker: the next job still runs
                logger.exception("shadow job %s failed", job.request_id)
                self.count("failed")
            finally:
                self._busy -= 1
                self._queue.task_done()

    async def run(self, job: ShadowJob) -> list[Outcome]:
        """Shadow, judge and store one job; returns the outcomes stored (none when it was skipped).

        The cap is checked once, before the job: a job that starts is finished (a shadow answer without its
        verdict would be spent for nothing), so a day may end above the cap by at most the cost of the jobs
        that were running (``concurrency``).
        """
        if await asyncio.to_thread(self.ledger.today) >= self.settings.daily_cap_usd:
            self.count("capped")
            return []
        personal = job.personal
        if personal is None:  # the gateway did not know: scan here
            personal = self.personal is not None and await asyncio.to_thread(self.personal, job.request)
        others = [spec for spec in job.others if not (personal and spec.location != "local")]
        if len(others) < len(job.others):
            self.count("privacy")
        outcomes: list[Outcome] = []
        for spec in others:
            shadow = await self._shadow(job, spec)
            if shadow is None:
                continue
            answer, measured = shadow
            if job.reference is None and self.reference_for is not None:  # feedback may have come meanwhile
                job.reference = await asyncio.to_thread(self.reference_for, job.request_id)
            verdict = await self._verdict(job, spec.name, answer, personal)
            if verdict is not None:
                outcomes += _outcomes(job, spec.name, verdict, measured)
        if outcomes:
            await asyncio.to_thread(self.store.add_many, outcomes)
            self.count("judged")
        return outcomes

    async def _shadow(self, job: ShadowJob, spec: ModelSpec) -> tuple[str, dict[str, Any]] | None:
        """The other model's answer and what it cost (``cost``, ``tokens_out``, ``latency`` in seconds: what
        ``sizewise outcomes export`` puts in that model's row), or None when it failed. The cost is recorded."""
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(self.backend(spec).complete(job.request), self.timeout_s)
        except (BackendError, TimeoutError) as error:
            logger.warning("shadow call to %s for %s failed: %s", spec.name, job.request_id, error)
            self.count("failed")
            return None
        cost = spec.cost_usd(result.prompt_tokens, result.completion_tokens)
        await asyncio.to_thread(self.ledger.add, job.request_id, spec.name, "shadow", cost)
        latency = result.latency_s or time.perf_counter() - started
        return result.text, {"cost": cost, "tokens_out": result.completion_tokens, "latency": latency}

    async def _verdict(self, job: ShadowJob, other: str, answer: str, personal: bool) -> Verdict | None:
        """Grader or reference when the request carries a label, else the LLM judge (unless privacy forbids)."""
        answers = {job.served: job.answer, other: answer}
        if job.reference is not None:
            return grade(answers, job.reference, job.answer_format)
        judge = self.judge
        if judge is None:
            return None
        requests = judge.requests(job.question, (job.served, job.answer), (other, answer))
        if judge.spec.location != "local" and (
            personal or (self.personal is not None and await asyncio.to_thread(self.personal, _answers(answers)))
        ):
            self.count("privacy")  # the answers may carry personal data the prompt did not
            return None
        try:
            verdict = await asyncio.wait_for(judge.judge(requests, job.served, other), self.timeout_s)
        except (BackendError, JudgeError, TimeoutError) as error:
            logger.warning("judging %s failed: %s", job.request_id, error)
            self.count("failed")
            return None
        await asyncio.to_thread(self.ledger.add, job.request_id, judge.spec.name, "judge", verdict.cost_usd)
        return verdict

    async def aclose(self) -> None:
        """Stop taking jobs; wait up to ``shutdown_wait_s`` for queued and running ones, then drop the rest."""
        self._closed = True
        if self._queue is None:
            self._release()
            return
        try:
            await asyncio.wait_for(self._queue.join(), self.settings.shutdown_wait_s)
        except TimeoutError:
            left = self._queue.qsize() + self._busy
            logger.warning("shutdown: %d shadow job(s) dropped", left)
            for _ in range(left):
                self.count("dropped")
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._release()

    def _release(self) -> None:
        """Close the databases (the store's and the ledger's engines)."""
        self.ledger.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


def feedback_reference(engine: Any, request_id: str) -> str | None:
    """The reference answer of the latest feedback on ``request_id`` that gave one (in the outcome store whose
    SQLAlchemy engine is ``engine``), else None."""
    import json

    from sqlalchemy import select

    from sizewise.core.outcomelog import outcomes_table

    c = outcomes_table.c
    query = select(c.detail).where(c.request_id == request_id, c.source == "feedback").order_by(c.id.desc())
    with engine.connect() as connection:
        for (detail,) in connection.execute(query):
            reference = json.loads(detail).get("reference") if detail else None
            if isinstance(reference, str) and reference.strip():
                return reference
    return None


def _answers(answers: dict[str, str]) -> ChatRequest:
    """The answers as a request, for the privacy scan (the prompt was scanned already)."""
    return ChatRequest(messages=[{"role": "assistant", "content": text} for text in answers.values()])


def _outcomes(job: ShadowJob, other: str, verdict: Verdict, measured: dict[str, Any]) -> list[Outcome]:
    """One outcome per model of the pair; an LLM judge's are pairwise (``other_model`` set); the shadow
    model's carries what its answer cost."""
    pairwise = verdict.source == "llm-judge"
    out = []
    for model, score in verdict.scores.items():
        rival = other if model == job.served else job.served
        detail = {**job.detail, **verdict.detail, "served": model == job.served, "pair": rival}
        if model == other:
            detail.update(measured)
        against = rival if pairwise else None
        out.append(Outcome(job.request_id, model, score, verdict.source, other_model=against, detail=detail))
    return out
