"""Every HTTP request's texts are a client's: the shared embedding caches never see them.

The MiniLM embedding caches (:mod:`sizewise.embedding`) are shared by every client and the disk one outlives
the process; a text found there is embedded about twice as fast, so a client timing ``/v1/route`` (a router
or domain route on MiniLM) or ``/v1/embeddings`` could learn whether anyone had ever sent a given text. This
ASGI middleware sets :data:`sizewise.embedding.CLIENT_TEXTS` for the request's task, so everything the request
runs (its worker threads and background tasks included, which copy the context) embeds afresh; what the
gateway does outside requests (loading models, retraining) keeps the caches.
"""

from __future__ import annotations

from typing import Any

from sizewise.embedding import CLIENT_TEXTS


class ClientTexts:
    """ASGI middleware: ``CLIENT_TEXTS`` is true while an HTTP request is handled."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = CLIENT_TEXTS.set(True)
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT_TEXTS.reset(token)
