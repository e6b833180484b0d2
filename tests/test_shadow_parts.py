"""Shadow judging's parts without a gateway (#22): the sampler, the judge's verdicts and graders, the daily
spend ledger. The live-gateway tests are in tests/test_shadow.py."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from sizewise.learn.judges import grade, judge_prompt, pairwise_request, parse_verdict, reference_score
from sizewise.learn.shadow import Sampler
from sizewise.learn.shadow_spend import SpendLedger


def test_the_sampler_prefers_scores_near_the_threshold_and_reports_the_inclusion_probability() -> None:
    rng = random.Random(0)
    sampler = Sampler(0.02, 0.1, 0.5, rng=random.Random(1))
    picked: list[tuple[float, str, float]] = []
    scores = [rng.gauss(0.3, 0.2) for _ in range(20_000)]
    for score in scores:
        chosen = sampler.choose(score, 0.3)
        if chosen is not None:
            picked.append((score, *chosen))
    share = len(picked) / len(scores)
    assert 0.09 < share < 0.13  # about uniform + (1 - uniform) * active
    near = sum(abs(s - 0.3) for s, _, _ in picked) / len(picked)
    assert near < 0.6 * sum(abs(s - 0.3) for s in scores) / len(scores)
    uniform = [p for _, how, p in picked if how == "uniform"]
    assert 0.015 < len(uniform) / len(scores) < 0.025
    assert all(0.02 <= p <= 1 for _, _, p in picked)
    # Horvitz-Thompson: the chosen requests weighted by 1/p estimate the traffic's size.
    assert sum(1 / p for _, _, p in picked) == pytest.approx(len(scores), rel=0.1)


def test_the_uniform_slice_alone_has_a_constant_inclusion_probability() -> None:
    sampler = Sampler(0.5, 0.0, 0.5, rng=random.Random(2))
    chosen = [sampler.choose(s / 100, 0.5) for s in range(100)]
    assert {c for c in chosen if c is not None} == {("uniform", 0.5)}


def test_constant_router_scores_leave_the_active_share_uniform() -> None:
    sampler = Sampler(0.0, 0.2, 0.5, rng=random.Random(3))
    chosen = [sampler.choose(0.4, 0.23) for _ in range(5_000)]
    picked = [c for c in chosen if c is not None]
    assert 0.17 < len(picked) / len(chosen) < 0.23 and {p for _, p in picked} == {0.2}


def test_verdicts_prompt_and_graders() -> None:
    assert [parse_verdict(t) for t in ("A", " b.", "Tie", "[[A]]")] == ["A", "B", "tie", "A"]
    with pytest.raises(Exception, match="not A, B or tie"):
        parse_verdict("Answer A is better")
    prompt = judge_prompt()
    assert set(prompt) == {"system", "user"} and "{answer_b}" in prompt["user"]
    request = pairwise_request("q?", "first", "x" * 10_000)
    assert "first" in request.messages[1]["content"] and len(request.messages[1]["content"]) < 5000
    assert grade({"a": "so the answer is 42", "b": "41"}, "42", "numeric").scores == {"a": 1.0, "b": 0.0}
    assert reference_score("The answer is (C).", "C") == 1.0 and reference_score("B", "C") == 0.0
    assert reference_score("Paris is the capital", "paris") == 1.0
    assert reference_score("It is Lyon", "Paris France") == 0.0


@pytest.mark.parametrize("database", [True, False], ids=["sqlite", "memory"])
def test_the_spend_ledger_counts_the_utc_day_only(tmp_path: Path, database: bool) -> None:
    from sizewise.learn.shadow_spend import day_start

    url = f"sqlite:///{tmp_path / 'spend.sqlite'}" if database else None
    now = day_start(time.time()) + 3600  # 01:00 UTC today
    ledger = SpendLedger(url)
    ledger.add("r1", "strong", "shadow", 0.25, now=now - 7200)  # 23:00 yesterday
    ledger.add("r2", "strong", "shadow", 0.5, now=now)
    ledger.add("r3", "local", "shadow", 0.0, now=now)  # free calls leave no row
    assert ledger.today(now) == pytest.approx(0.5)
    assert ledger.today(now + 86_400) == 0.0
    if database:
        assert SpendLedger(url).today(now) == pytest.approx(0.5)  # another process sees it


def test_the_llm_judge_averages_the_two_orders() -> None:
    from sizewise.backends.base import Backend, ChatChunk, ChatRequest, ChatResult
    from sizewise.catalog.schema import ModelSpec
    from sizewise.learn.judges import LLMJudge

    class Scripted(Backend):
        """Answers each call with the next scripted reply (10 tokens in, 1 out)."""

        def __init__(self, replies: list[str]) -> None:
            self.replies = replies

        async def complete(self, request: ChatRequest) -> ChatResult:
            return ChatResult("judge", self.replies.pop(0), prompt_tokens=10, completion_tokens=1)

        async def stream(self, request: ChatRequest) -> Any:  # pragma: no cover - not used
            yield ChatChunk()

    spec = ModelSpec(name="judge", backend="openai", context_window=4096, price_in=1.0, price_out=2.0)
    cases = {("A", "B"): (1.0, 0.0), ("A", "A"): (0.5, 0.5), ("tie", "B"): (0.75, 0.25), ("B", "tie"): (0.25, 0.75)}
    for replies, (served, shadow) in cases.items():
        judge = LLMJudge(spec, Scripted(list(replies)))
        verdict = asyncio.run(judge.judge(judge.requests("q", ("weak", "w"), ("strong", "s")), "weak", "strong"))
        assert verdict.scores == {"weak": served, "strong": shadow}, replies
        assert verdict.cost_usd == pytest.approx(2 * 12e-6)
