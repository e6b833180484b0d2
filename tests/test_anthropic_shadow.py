"""Shadow judging (``gateway.shadow``) sees ``/v1/messages`` traffic as it sees chat completions: after the
answer (or the stream) is sent, the other model answers and the judge compares both; the official
``anthropic`` client against a live gateway, the upstream and catalog of ``tests/test_shadow.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from fakes import GatewayServer
from sizewise.learn.outcomes import OutcomeStore
from test_shadow import WEAK_ROUTE, Upstream, catalog, wait_for


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_answers_are_shadow_judged(up: Upstream, tmp_path: Path, stream: bool) -> None:
    with GatewayServer(catalog(up, tmp_path)) as gw:
        client = anthropic.Anthropic(base_url=gw.url.removesuffix("/v1"), api_key="x", max_retries=0, timeout=5.0)
        ask = {"model": WEAK_ROUTE, "max_tokens": 16, "messages": [{"role": "user", "content": "What is 2+2?"}]}
        if stream:
            with client.messages.stream(**ask) as events:  # type: ignore[arg-type]
                message = events.get_final_message()
        else:
            message = client.messages.create(**ask)  # type: ignore[arg-type]
        assert message.content[0].text == "weak answer"  # type: ignore[union-attr]
        store = OutcomeStore(gw.app.state.gateway.settings.log_url)
        wait_for(lambda: len(store.outcomes()) == 2)
    assert {o.model: o.score for o in store.outcomes()} == {"weak": 0.0, "strong": 1.0}
