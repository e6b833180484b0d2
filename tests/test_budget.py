"""Budget filter: limits per key and global, downgrade near the limit, 429 when exhausted, no overspend."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from constraint_helpers import ctx, model
from sizewise.catalog.schema import ApiKey, GatewaySettings
from sizewise.policy.constraints.budget import BudgetFilter, BudgetLedger, Limit, period_start, prompt_bound
from sizewise.policy.types import Decision, RequestRejected

CHEAP = model("cheap", location="local")  # free
MID = model("mid", price_in=1.0, price_out=2.0)
DEAR = model("dear", price_in=10.0, price_out=30.0)


def make(tmp_path: Path, **settings: object) -> BudgetFilter:
    cfg = GatewaySettings(log_url=f"sqlite:///{tmp_path}/log.sqlite", **settings)  # type: ignore[arg-type]
    return BudgetFilter(cfg, BudgetLedger(cfg.log_url), [CHEAP, MID, DEAR])


def test_period_start_is_utc_midnight_and_month_start() -> None:
    t = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    assert period_start("day", t) == 1_699_920_000.0
    assert period_start("month", t) == 1_698_796_800.0


def test_no_limits_no_reservation(tmp_path: Path) -> None:
    flt = make(tmp_path)
    c = ctx("hi", max_tokens=10)
    kept, report = flt.apply(c, [CHEAP, MID, DEAR])
    assert len(kept) == 3 and not report.fired and "budget_reservation" not in c.extras


def test_reserve_settle_and_downgrade_then_429(tmp_path: Path) -> None:
    flt = make(tmp_path, daily_budget_usd=0.1)
    c = ctx("hi", max_tokens=1000)  # dear: ~0.03 per call, mid ~0.002
    kept, report = flt.apply(c, [CHEAP, MID, DEAR])
    assert [s.name for s in kept] == ["cheap", "mid", "dear"] and not report.fired
    limit = Limit(None, "day", 0.1)
    assert flt.ledger.usage(limit) == 0.0  # the filter holds the cheapest kept model's cost (free)
    flt.admit(c, DEAR)  # the model really called: the reservation grows to its expected cost
    assert flt.ledger.usage(limit) == pytest.approx(DEAR.cost_usd(prompt_bound(c.request), 1000))
    flt.settle(c, Decision(policy="p", model="dear", cost=0.02), 10, 10)
    assert flt.ledger.usage(limit) == pytest.approx(0.02)
    flt.ledger.settle(flt.ledger.reserve([limit], None, "y", lambda usages: 0.065) or 0, 0.065)
    # 85% used: only the cheapest model remains, and the report says so.
    c2 = ctx("hi", max_tokens=1000)
    kept, report = flt.apply(c2, [CHEAP, MID, DEAR])
    assert [s.name for s in kept] == ["cheap"]
    assert "downgraded" in (report.note or "") and "dear" in report.removed and "mid" in report.removed
    flt.settle(c2, None)
    # A request with only priced candidates that do not fit: 429.
    flt.ledger.settle(flt.ledger.reserve([limit], None, "x", lambda usages: 0.02) or 0, 0.02)
    with pytest.raises(RequestRejected) as info:
        flt.apply(ctx("hi", max_tokens=1000), [DEAR])
    assert info.value.status == 429 and info.value.code == "budget_exceeded"


def test_key_limit_applies_only_to_that_key(tmp_path: Path) -> None:
    keys = [ApiKey(name="team", sha256="a" * 64, daily_budget_usd=0.0)]
    flt = make(tmp_path, api_keys=keys)
    kept, _ = flt.apply(ctx("hi", max_tokens=10, api_key="team"), [CHEAP, MID])
    assert [s.name for s in kept] == ["cheap"]
    kept, _ = flt.apply(ctx("hi", max_tokens=10, api_key="other"), [CHEAP, MID])
    assert [s.name for s in kept] == ["cheap", "mid"]


def test_concurrent_ledgers_never_overspend(tmp_path: Path) -> None:
    """100 threads, each with its own ledger (as separate worker processes would), one shared DB."""
    url = f"sqlite:///{tmp_path}/shared.sqlite"
    BudgetLedger(url).close()
    limit = Limit(None, "day", 1.0)
    granted: list[float] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        ledger = BudgetLedger(url)

        def decide(usages: list[tuple[Limit, float]]) -> float | None:
            remaining = limit.usd - usages[0][1]
            return 0.03 if remaining >= 0.03 else None

        rid = ledger.reserve([limit], None, f"r{i}", decide)
        if rid is not None:
            with lock:
                granted.append(0.03)
            ledger.settle(rid, 0.03)
        ledger.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 33  # floor(1.0 / 0.03)
    assert BudgetLedger(url).usage(limit) == pytest.approx(0.99) and sum(granted) <= 1.0
