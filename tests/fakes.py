"""Test helpers for the gateway: the fake upstream (from bench/), a real gateway server on a free port."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fake_upstream import FakeUpstream, free_port, read_body, send_answer
from sizewise.catalog.schema import CatalogSpec
from sizewise.gateway.app import create_app

__all__ = ["FakeUpstream", "GatewayServer", "fake_model", "free_port", "read_body", "send_answer"]


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


class GatewayServer:
    """A real uvicorn server for ``create_app(catalog)`` in a thread: ``with GatewayServer(spec) as gw: gw.url``."""

    def __init__(self, catalog: Any, **app_kwargs: Any) -> None:
        if isinstance(catalog, dict):
            catalog = CatalogSpec.model_validate(catalog)
        self.app = create_app(catalog, **app_kwargs)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """Base URL for the OpenAI client (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def rows(self) -> list[dict[str, Any]]:
        """The request log's rows, after waiting for queued writes."""
        from sizewise.gateway.log import read_rows

        log = self.app.state.gateway.log
        assert log.flush(10)
        return read_rows(log.url)

    def __enter__(self) -> GatewayServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
