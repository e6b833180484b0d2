"""Budgets hold in every language, against absurd usage reports and in bursts (issue #16, item 3).

Real gateways on 127.0.0.1 driven by the official openai client, a billing upstream that reports the
worst usage a real tokenizer can produce (one token per UTF-8 byte) or an absurd one, and the ledger
on SQLite or on the PostgreSQL that ``.ci/run`` starts, shared by two gateways.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import create_engine, text

from billing_upstream import BillingUpstream, byte_tokens
from fakes import GatewayServer

CJK = ("预算必须在每一种语言里都成立，无论提示有多长。" * 50)[:1000]  # 1,000 characters, 3,000 UTF-8 bytes


def _model(name: str, base_url: str, price_in: float, price_out: float) -> dict[str, Any]:
    return {
        "name": name,
        "backend": "openai",
        "context_window": 8192,
        "location": "remote",
        "price_in": price_in,
        "price_out": price_out,
        "settings": {"base_url": base_url, "model": f"up-{name}", "timeout_s": 10.0},
    }


def _burst(urls: list[str], n: int, model: str, content: str, max_tokens: int) -> list[Any]:
    """``n`` parallel requests spread over the gateways at ``urls``: answers or the errors raised."""
    clients = [openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30) for url in urls]

    async def one(client: openai.AsyncOpenAI) -> Any:
        try:
            return await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": content}], max_tokens=max_tokens
            )
        except openai.APIStatusError as error:
            return error

    async def run() -> list[Any]:
        return await asyncio.gather(*(one(c) for c, _ in zip(itertools.cycle(clients), range(n), strict=False)))

    return asyncio.run(run())


def _settled(db_url: str) -> tuple[float, int]:
    engine = create_engine(db_url)
    with engine.connect() as connection:
        spent = connection.execute(text("select coalesce(sum(spent), 0) from budget_ledger where settled")).scalar()
        still_open = connection.execute(text("select count(*) from budget_ledger where not settled")).scalar()
    engine.dispose()
    return float(spent or 0.0), int(still_open or 0)


@pytest.mark.parametrize(("db", "gateways"), [("sqlite", 1), ("sqlite", 2), ("postgres", 2)])
def test_parallel_cjk_prompts_never_overspend(db: str, gateways: int, tmp_path: Path, request: Any) -> None:
    """Old: a prompt was estimated at characters / 4, so 1,000 Chinese characters (up to 3,000 tokens)
    reserved a tenth of their cost and 100 parallel requests spent several times the limit."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}" if db == "sqlite" else request.getfixturevalue("postgres_url")
    limit = 0.01
    with BillingUpstream(byte_tokens, delay_s=0.2) as upstream, ExitStack() as stack:
        spec = {
            "models": [_model("cloud", upstream.base_url, 1.0, 2.0)],
            "gateway": {"log_url": url, "daily_budget_usd": limit},
        }
        servers = [stack.enter_context(GatewayServer(spec)) for _ in range(gateways)]
        results = _burst([s.url for s in servers], 100, "cloud", CJK, max_tokens=50)
        for server in servers:
            server.rows()
    answered = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert answered and all(getattr(r, "code", None) == "budget_exceeded" for r in refused), refused[:1]
    billed = upstream.cost({"up-cloud": (1.0, 2.0)})
    spent, still_open = _settled(url)
    assert still_open == 0
    assert billed <= limit + 1e-12, f"upstream billed ${billed:.4f} against a ${limit} limit"
    assert spent == pytest.approx(billed)


def test_an_absurd_usage_report_settles_at_what_is_physically_possible(tmp_path: Path) -> None:
    """Old: one answer reporting prompt_tokens = 2**64 settled $1.8e13 and every later request got 429."""
    reports = iter([(2**64, 2**64)])

    def usage(body: dict[str, Any]) -> tuple[int, int]:
        return next(reports, None) or byte_tokens(body)

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with BillingUpstream(usage) as upstream:
        spec = {
            "models": [_model("cloud", upstream.base_url, 1.0, 2.0)],
            "gateway": {"log_url": url, "daily_budget_usd": 1.0},
        }
        with GatewayServer(spec) as gw:
            client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
            first = client.chat.completions.create(
                model="cloud", messages=[{"role": "user", "content": "hi"}], max_tokens=10
            )
            assert first.usage is not None and first.usage.prompt_tokens == 2**64  # passed on as reported
            second = client.chat.completions.create(
                model="cloud", messages=[{"role": "user", "content": "hi"}], max_tokens=10
            )
            assert second.choices[0].message.content == "ok"
            rows = gw.rows()
    spent, _ = _settled(url)
    # "hi" with max_tokens=10 is at most a few hundred tokens in (the byte bound) and 10 out.
    assert spent < 0.001, spent
    assert [r["status"] for r in rows] == [200, 200]


def test_a_burst_reserves_the_chosen_models_cost_not_the_dearest(tmp_path: Path) -> None:
    """Old: each request reserved the most expensive affordable model (30x the chosen one here), so
    the first requests of a burst filled the budget with reservations they never spent and most of
    the burst got 429 while 90% of the budget stayed unspent."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    limit = 0.01
    per_request = (200 + 100) / 1e6  # "hello" on cheap ($1/1M): a bound of at most 200 tokens in, 100 out
    with BillingUpstream(byte_tokens, delay_s=0.3) as upstream:
        models = [_model("cheap", upstream.base_url, 1.0, 1.0), _model("dear", upstream.base_url, 30.0, 30.0)]
        with GatewayServer({"models": models, "gateway": {"log_url": url, "daily_budget_usd": limit}}) as gw:
            results = _burst([gw.url], 100, "cheap", "hello", max_tokens=100)
            gw.rows()
    answered = [r for r in results if not isinstance(r, Exception)]
    # Every request in flight at once holds the chosen model's bound: at least floor(limit / that) fit.
    assert len(answered) >= int(limit / per_request), f"{len(answered)} answered, {int(limit / per_request)} fit"
    assert {r.model for r in answered} == {"cheap"}
    assert upstream.cost({"up-cheap": (1.0, 1.0)}) <= limit
