"""Remote transcriptions against the gateway's spend limits, in the chat path's own budget ledger.

A remote speech model's price is ``price_per_minute`` (USD per minute of audio). Before its call, the
clip's cost (minutes x price; the duration is known from the local decode) is reserved in the same
``budget_ledger`` rows the chat path's :class:`~sizewise.policy.constraints.budget.BudgetFilter` writes,
atomically against every limit that applies to the request's key, so parallel escalations never overspend.
After the call the reservation settles at that cost (0 when the call failed). A reservation that does not
fit raises the chat path's ``429 budget_exceeded``; :func:`sizewise.serve.speech.hear` then answers with
the local transcript when there is one and says why.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Any

from sizewise.backends.speech import AudioError, sniff_format
from sizewise.catalog.schema import ModelSpec
from sizewise.core.decision import RequestRejected
from sizewise.policy.constraints.budget import BudgetFilter
from sizewise.policy.constraints.budget_ledger import BudgetLedger, Usage


@dataclass
class SpeechHold:
    """One remote transcription's reservation (``ledger`` None: no limit applies, nothing reserved)."""

    cost: float
    ledger: BudgetLedger | None = None
    reservation: int = 0

    async def settle(self, spent: float) -> None:
        """Replace the reservation by what the call cost."""
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.settle, self.reservation, spent)

    def settle_later(self, spent: float) -> None:
        """Settle from a task being cancelled (the client left mid-call): the write runs in a thread, not awaited."""
        if self.ledger is not None:
            asyncio.get_running_loop().run_in_executor(None, self.ledger.settle, self.reservation, spent)


def transcription_cost(spec: ModelSpec, seconds: float) -> float:
    """USD for ``seconds`` of audio on ``spec``."""
    return spec.price_per_minute * max(seconds, 0.0) / 60.0


#: The demuxer of each container :func:`sniff_format` names.
_DEMUXERS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3", "mp4": "mp4", "webm": "matroska"}


def clip_seconds(data: bytes) -> float:
    """The clip's duration, for the price of audio no local model heard: decoded frame by frame and counted,
    nothing kept (a long clip costs no memory). AudioError for what is not audio."""
    import av

    name = sniff_format(data)
    try:
        with av.open(io.BytesIO(data), mode="r", format=_DEMUXERS[name], metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"the {name} file holds no audio stream", "invalid_audio")
            seconds = sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, IndexError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AudioError(f"cannot decode the {name} audio: {reason}", "invalid_audio") from None
    if seconds <= 0:
        raise AudioError(f"the {name} file holds no audio samples", "empty_audio")
    return float(seconds)


def _budget(engine: Any) -> BudgetFilter | None:
    return next((f for f in getattr(engine, "filters", []) if isinstance(f, BudgetFilter)), None)


async def reserve(engine: Any, spec: ModelSpec, seconds: float, api_key: str | None, request_id: str) -> SpeechHold:
    """Reserve the cost of sending ``seconds`` of audio to ``spec``; 429 ``budget_exceeded`` when it does not fit."""
    cost = transcription_cost(spec, seconds)
    budget = _budget(engine)
    limits = budget.limits_for(api_key) if budget is not None else []
    if budget is None or not limits or cost == 0:  # a free model is never refused, like a local chat model
        return SpeechHold(cost)

    def decide(usages: list[Usage]) -> float | None:
        return cost if all(used + cost <= limit.usd + 1e-12 for limit, used, _ in usages) else None

    # The ledger's write transaction may wait on the database lock: off the event loop, like the filter's.
    reservation = await asyncio.to_thread(budget.ledger.reserve, limits, api_key, request_id, decide)
    if reservation is None:
        message = (
            f"spend limit reached: {seconds:.1f} s of audio on {spec.name!r} costs ${cost:.6f}, over the budget left"
        )
        raise RequestRejected(429, message, "budget_exceeded")
    return SpeechHold(cost, budget.ledger, reservation)
