"""Test helpers for the gateway: the fake upstream (from bench/), a real gateway server on a free port."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fake_upstream import FakeUpstream, ThreadedServer, free_port, read_body, send_answer, send_until_gone
from sizewise.catalog.schema import CatalogSpec
from sizewise.gateway.app import create_app

__all__ = [
    "FakeUpstream",
    "GatewayServer",
    "ThreadedServer",
    "fake_model",
    "free_port",
    "read_body",
    "send_answer",
    "send_until_gone",
]


def fake_model(name: str, upstream_model: str, params_b: float, base_url: str, **extra: Any) -> dict[str, Any]:
    """A catalog entry for an ``openai``-backend model served by the fake upstream."""
    settings = {"base_url": base_url, "model": upstream_model, "timeout_s": extra.pop("timeout_s", 1.0)}
    return {
        "name": name,
        "backend": "openai",
        "context_window": extra.pop("context_window", 4096),
        "params_b": params_b,
        "price_in": params_b,
        "price_out": 2 * params_b,
        "location": "remote",
        "settings": settings,
        **extra,
    }


class GatewayServer(ThreadedServer):
    """A real uvicorn server for ``create_app(catalog)`` in a thread: ``with GatewayServer(spec) as gw: gw.url``."""

    start_timeout_s = 30.0
    stop_timeout_s = 10.0

    def __init__(self, catalog: Any, **app_kwargs: Any) -> None:
        if isinstance(catalog, dict):
            catalog = CatalogSpec.model_validate(catalog)
        self.app = create_app(catalog, **app_kwargs)
        super().__init__(self.app, lifespan="auto")

    @property
    def url(self) -> str:
        """Base URL for the OpenAI client (ends in /v1)."""
        return self.base_url

    def rows(self) -> list[dict[str, Any]]:
        """The request log's rows, after waiting for queued writes."""
        from sizewise.gateway.log import read_rows

        log = self.app.state.gateway.log
        assert log.flush(10)
        return read_rows(log.url)
