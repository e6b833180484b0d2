"""The budget filter: per-API-key and global spend limits per day and per month (UTC).

Spend lives in table ``budget_ledger`` of the request log's database (``gateway.log_url``). Each
request holds a *reservation* from before any model is called until it finishes, then *settles* it
to the real cost (:meth:`BudgetFilter.settle`, called by the gateway once per request):

1. :meth:`BudgetFilter.apply` (a filter, before the policy) keeps the models whose expected cost fits
   the remaining budget and reserves the expected cost of the *cheapest* of them, so any request it
   lets through can at least be answered by that model.
2. :meth:`BudgetFilter.admit` (called by the engine right before each model call: the chosen model,
   a retry, a fallback, a cascade rung) raises the reservation to cover that call: for the first call
   to its expected cost, for every further call by its expected cost. A call that no longer fits is
   refused like a failed call (the engine moves on to the next model of the plan, down to the one the
   reservation already covers). So a request reserves the cost of the model that really answers, not
   of the most expensive affordable one.

Every read of current spend, decision and write happens in one write transaction (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE``), so concurrent requests, in one process or in several
gateways sharing the database, can never together reserve more than a limit.

Expected cost = ``spec.cost_usd(prompt bound, max_tokens or DEFAULT_MAX_TOKENS)``. The prompt bound
(:func:`prompt_bound`) holds for any tokenizer and any script: the UTF-8 bytes of everything
forwarded (no tokenizer makes more tokens than bytes), plus the chat template's tokens per message
and a generous count per image or audio part. For a local GGUF model the same text is counted with
the model's own vocabulary (:func:`gguf_prompt_tokens`, loaded vocabulary-only in the gateway, as
the context filter does), which an English prompt needs about 4 times fewer of. Settlement uses the
upstream's reported usage clamped to what is physically possible (the prompt bound and
``max_tokens``, both at most the context window), so an upstream that reports ``prompt_tokens =
2**64`` settles at that bound, not at $1.8e13. The guarantee is exact when clients set
``max_tokens``; without it a call that writes more than ``DEFAULT_MAX_TOKENS`` tokens can settle
above its reservation (never above the context window).

Near the limit the filter *downgrades* instead of refusing: models whose expected cost no longer
fits the remaining budget are removed, and once ``downgrade_at`` (default 80%) of a limit is used
only the cheapest candidates stay. The report's note says so, and it is returned in the response's
``sizewise.filters``. Only when not even the cheapest model fits does the request get a 429.
Reservations never settled (a crashed worker) stop counting after ``stale_after_s``.

In a burst the byte bound holds most of the budget in reservations the calls will not spend. A request
that does not fit *now*, but would once the reservations in flight settle, waits for them (up to
``gateway.budget_wait_s``, never longer than the request timeout; :mod:`.budget_wait`) and tries again;
it gets the 429 only when even the budget's settled spend leaves no room, or when the wait runs out.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sizewise.catalog.schema import GatewaySettings, ModelSpec
from sizewise.core.chat import BackendError, ChatRequest
from sizewise.core.decision import Decision, FilterReport, RequestRejected
from sizewise.policy.constraints.budget_ledger import BudgetLedger, Limit, Usage, ledger_table, period_start
from sizewise.policy.constraints.budget_wait import BudgetBusy, wait_for_room
from sizewise.policy.types import RequestContext

DEFAULT_MAX_TOKENS = 1024
#: Chat-template tokens per message (role markers, separators): real templates use 3-8.
TOKENS_PER_MESSAGE = 16
#: Tokens per image or audio part, whatever its URL's length: above the largest image cost of the big APIs.
TOKENS_PER_MEDIA_PART = 4096
TOKENS_PER_REQUEST = 64
_MEDIA = {"image_url", "image", "input_image", "input_audio", "audio", "file"}


def prompt_bound(request: ChatRequest) -> int:
    """An upper bound on the prompt tokens of ``request`` under any tokenizer.

    Every forwarded string counts its UTF-8 bytes (a BPE or byte-fallback tokenizer never makes more
    tokens than bytes; CJK text is 3 bytes a character), JSON syntax included; each message adds
    :data:`TOKENS_PER_MESSAGE` for the chat template and each image/audio/file part
    :data:`TOKENS_PER_MEDIA_PART` (an image costs tokens by its pixels, not by its URL's length).
    """
    return len(_forwarded(request).encode("utf-8", "surrogatepass")) + _framing(request)


def _forwarded(request: ChatRequest) -> str:
    """Everything forwarded to a model, as JSON text (a superset of what its template renders)."""
    payload = {"messages": request.messages, "stop": request.stop, "extra": request.extra}
    return json.dumps(payload, ensure_ascii=False, default=str)


def _framing(request: ChatRequest) -> int:
    """Tokens a model adds or reads beyond the forwarded text: template tokens, media parts."""
    media = 0
    for message in request.messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            media += sum(1 for part in content if isinstance(part, dict) and part.get("type") in _MEDIA)
    return TOKENS_PER_MESSAGE * len(request.messages) + TOKENS_PER_MEDIA_PART * media + TOKENS_PER_REQUEST


def gguf_prompt_tokens(request: ChatRequest, gguf: Path) -> int:
    """The prompt tokens of ``request`` counted with a local model's own vocabulary (its GGUF file,
    loaded vocabulary-only once): the forwarded JSON text, special tokens read as text, plus
    :func:`_framing`. JSON syntax and escapes only add tokens to what the chat template renders."""
    from sizewise.policy.constraints.context import _gguf_vocab

    text = _forwarded(request).encode("utf-8", "surrogatepass")
    return len(_gguf_vocab(str(gguf)).tokenize(text, add_bos=False, special=False)) + _framing(request)


@dataclass
class Hold:
    """One request's reservation while it runs (kept in ``ctx.extras["budget"]``)."""

    reservation: int
    limits: list[Limit]
    #: USD reserved now.
    reserved: float
    #: Model calls admitted so far.
    calls: int = 0
    #: The most the admitted calls can physically cost (the settlement clamp).
    ceiling: float = 0.0
    #: The filter's report (in the decision): a call refused later is noted there too.
    report: FilterReport | None = None


class BudgetFilter:
    """Spend limits per key and globally; downgrades near a limit, 429 only when nothing fits."""

    name = "budget"
    #: ``apply`` and ``admit`` run SQL in a write transaction (up to a 10 s busy wait): off the event loop.
    blocking = True

    def __init__(
        self,
        settings: GatewaySettings,
        ledger: BudgetLedger,
        models: list[ModelSpec] | None = None,
        *,
        downgrade_at: float = 0.8,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        gguf_path: Callable[[ModelSpec], Path | None] | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.downgrade_at = downgrade_at
        self.default_max_tokens = default_max_tokens
        #: Finds a local model's GGUF file (its vocabulary counts the prompt exactly); None: bytes only.
        self.gguf_path = gguf_path
        self._ggufs: dict[str, Path | None] = {}
        self._keys = {key.name: key for key in settings.api_keys}
        self._models = {spec.name: spec for spec in models or []}

    def limits_for(self, api_key: str | None) -> list[Limit]:
        """Every limit that applies to a request made with ``api_key``."""
        limits = []
        if self.settings.daily_budget_usd is not None:
            limits.append(Limit(None, "day", self.settings.daily_budget_usd))
        if self.settings.monthly_budget_usd is not None:
            limits.append(Limit(None, "month", self.settings.monthly_budget_usd))
        key = self._keys.get(api_key) if api_key else None
        if key is not None and key.daily_budget_usd is not None:
            limits.append(Limit(key.name, "day", key.daily_budget_usd))
        if key is not None and key.monthly_budget_usd is not None:
            limits.append(Limit(key.name, "month", key.monthly_budget_usd))
        return limits

    @staticmethod
    def prompt_bound(ctx: RequestContext) -> int:
        """:func:`prompt_bound` of the request, computed once per request."""
        bound = ctx.extras.get("budget_prompt_bound")
        if bound is None:
            bound = ctx.extras["budget_prompt_bound"] = prompt_bound(ctx.request)
        return int(bound)

    def _gguf(self, spec: ModelSpec) -> Path | None:
        if self.gguf_path is None or spec.backend != "llamacpp":
            return None
        if spec.name not in self._ggufs:
            try:
                self._ggufs[spec.name] = self.gguf_path(spec)
            except Exception:  # an unresolvable file only costs precision: the byte bound still holds
                self._ggufs[spec.name] = None
        return self._ggufs[spec.name]

    def prompt_tokens(self, spec: ModelSpec, ctx: RequestContext) -> int:
        """The prompt tokens reserved for a call of ``spec``: :func:`prompt_bound`, or for a local GGUF
        model :func:`gguf_prompt_tokens` when smaller (once per request and file)."""
        bound = self.prompt_bound(ctx)
        gguf = self._gguf(spec)
        if gguf is None:
            return bound
        key = f"budget_gguf:{gguf}"
        if key not in ctx.extras:
            try:
                ctx.extras[key] = gguf_prompt_tokens(ctx.request, gguf)
            except Exception:  # llama.cpp missing or the file unreadable: the byte bound still holds
                ctx.extras[key] = bound
        return min(bound, int(ctx.extras[key]))

    def expected_cost(self, spec: ModelSpec, ctx: RequestContext) -> float:
        """The amount reserved for one call of ``spec`` (see the module docstring)."""
        prompt = min(self.prompt_tokens(spec, ctx), spec.context_window)
        return spec.cost_usd(prompt, min(ctx.max_tokens or self.default_max_tokens, spec.context_window))

    def ceiling(self, spec: ModelSpec, ctx: RequestContext) -> float:
        """The most one call of ``spec`` can physically cost: prompt bound and ``max_tokens`` (or the
        whole context window when unset), each at most the context window."""
        prompt = min(self.prompt_bound(ctx), spec.context_window)
        return spec.cost_usd(prompt, min(ctx.max_tokens or spec.context_window, spec.context_window))

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        limits = self.limits_for(ctx.api_key)
        if not limits:
            return candidates, report
        expected = {spec.name: self.expected_cost(spec, ctx) for spec in candidates}
        kept: list[ModelSpec] = []
        busy = False  # nothing fits now, but would once the reservations in flight settle

        def decide(usages: list[Usage]) -> float | None:
            nonlocal busy
            remaining = min(limit.usd - used for limit, used, _ in usages)
            tight = [
                (limit, used) for limit, used, _ in usages if limit.usd <= 0 or used >= self.downgrade_at * limit.usd
            ]
            affordable = [spec for spec in candidates if expected[spec.name] <= remaining + 1e-12]
            for spec in candidates:
                if spec not in affordable:
                    report.removed[spec.name] = f"expected cost ${expected[spec.name]:.6f} > remaining ${remaining:.6f}"
            if not affordable:
                report.note = self._note(usages, tight, affordable)
                settled_room = min(limit.usd - used + held for limit, used, held in usages)
                busy = min(expected.values(), default=math.inf) <= settled_room + 1e-12
                return None
            cheapest = min(expected[spec.name] for spec in affordable)
            if tight:
                for spec in affordable:
                    if expected[spec.name] > cheapest + 1e-12:
                        report.removed[spec.name] = "budget near its limit: downgraded to a cheaper model"
                affordable = [spec for spec in affordable if expected[spec.name] <= cheapest + 1e-12]
            if report.removed:
                report.note = self._note(usages, tight, affordable)
            kept.extend(affordable)
            return cheapest  # admit() raises it to the model that is really called

        reservation = self.ledger.reserve(limits, ctx.api_key, ctx.request_id, decide)
        if not kept or reservation is None:
            message = f"spend limit reached: {report.note or 'no model fits the remaining budget'}"
            if busy and self._may_wait(ctx):
                waited = f" (the rest is held by requests in flight; waited up to {self._wait_s():g} s for them)"
                raise BudgetBusy(message + waited, self._waiter(ctx, limits, min(expected.values())))
            raise RequestRejected(429, message, "budget_exceeded")
        cheapest = min(expected[spec.name] for spec in kept)
        ctx.extras["budget"] = Hold(reservation, limits, reserved=cheapest, report=report)
        return kept, report

    def _may_wait(self, ctx: RequestContext) -> bool:
        """Whether this request's wait for the budget (started at its first refusal) has time left."""
        deadline = ctx.extras.setdefault("budget_deadline", time.monotonic() + self._wait_s())
        return bool(time.monotonic() < deadline)

    def _wait_s(self) -> float:
        return min(self.settings.budget_wait_s, self.settings.request_timeout_s)

    def _waiter(self, ctx: RequestContext, limits: list[Limit], needed: float) -> Callable[[], Awaitable[bool]]:
        """``wait()`` for :class:`BudgetBusy`: until ``needed`` USD may fit every limit, or nothing is in
        flight any more (the next attempt then decides for good); False when the wait runs out."""

        async def wait() -> bool:
            deadline = float(ctx.extras["budget_deadline"])
            return await wait_for_room(self.ledger.signal, lambda: self.ledger.may_fit(limits, needed), deadline)

        return wait

    @staticmethod
    def _note(usages: list[Usage], tight: list[tuple[Limit, float]], affordable: list[ModelSpec]) -> str:
        worst = (
            tight[0] if tight else min(((limit, used) for limit, used, _ in usages), key=lambda lu: lu[0].usd - lu[1])
        )
        outcome = "downgraded to cheaper models" if affordable else "exhausted"
        return f"{worst[0].label()} budget ${worst[1]:.4f} of ${worst[0].usd:.4f} used: {outcome}"

    def admit(self, ctx: RequestContext, spec: ModelSpec) -> None:
        """Cover one model call by the reservation, before it is made; raises a non-retryable
        :class:`BackendError` when the limits no longer allow it (the engine tries the next model)."""
        hold: Hold | None = ctx.extras.get("budget")
        if hold is None:
            return
        cost = self.expected_cost(spec, ctx)
        amount = max(hold.reserved, cost) if hold.calls == 0 else hold.reserved + cost
        if amount > hold.reserved and not self.ledger.raise_to(hold.reservation, hold.limits, amount):
            reason = f"expected cost ${cost:.6f} no longer fits the budget"
            if hold.report is not None:
                hold.report.removed[spec.name] = reason
                hold.report.note = (
                    hold.report.note or "budget taken by concurrent requests: downgraded to cheaper models"
                )
            raise BackendError(f"{spec.name}: {reason}", retryable=False)
        hold.reserved = amount
        hold.calls += 1
        hold.ceiling += self.ceiling(spec, ctx)

    def settle(
        self,
        ctx: RequestContext,
        decision: Decision | None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Turn this request's reservation into its real cost (0 when no model was called), clamped to
        what the admitted calls could physically cost."""
        hold: Hold | None = ctx.extras.pop("budget", None)
        if hold is None:
            return
        spent = 0.0
        if decision is not None and hold.calls:
            spent = decision.cost
            spec = self._models.get(decision.model or "")
            if spec is not None:
                spent = max(spent, spec.cost_usd(max(prompt_tokens, 0), max(completion_tokens, 0)))
            # An upstream's usage is a claim: never settle more than the calls could cost, nor less than 0.
            spent = min(max(spent, 0.0), hold.ceiling) if math.isfinite(spent) else hold.ceiling
        self.ledger.settle(hold.reservation, spent)


__all__ = [
    "BudgetBusy",
    "BudgetFilter",
    "BudgetLedger",
    "Hold",
    "Limit",
    "gguf_prompt_tokens",
    "ledger_table",
    "period_start",
    "prompt_bound",
]
