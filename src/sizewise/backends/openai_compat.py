"""Any OpenAI-compatible HTTP upstream (vLLM, Ollama, llama-server, a cloud API) through httpx.

Errors map to :class:`BackendError`: timeouts, refused connections, 5xx, 429 and a stream cut before its end
are ``retryable`` (another try or another model may work); other 4xx are not (the request itself is wrong).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.catalog.schema import ModelSpec, OpenAISettings


def _body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {**request.extra, "model": model, "messages": request.messages}
    for name in ("max_tokens", "temperature", "top_p", "stop", "seed"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.logprobs:
        body["logprobs"] = True
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _logprobs(choice: dict[str, Any]) -> tuple[list[str], list[float]] | None:
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return [str(item.get("token", "")) for item in content], [float(item["logprob"]) for item in content]


class OpenAICompatBackend(Backend):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint (``backend: openai``)."""

    def __init__(self, spec: ModelSpec, settings: OpenAISettings, *, client: httpx.AsyncClient | None = None) -> None:
        self.model = spec.name
        self.upstream_model = settings.model or spec.name
        self.settings = settings
        self._client = client

    def _headers(self) -> dict[str, str]:
        headers = dict(self.settings.headers)
        if self.settings.api_key_env:
            key = os.environ.get(self.settings.api_key_env)
            if not key:
                raise BackendError(
                    f"{self.model}: environment variable {self.settings.api_key_env} (the API key) is not set",
                    retryable=False,
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    @property
    def client(self) -> httpx.AsyncClient:
        """The shared connection pool (created on first use, inside the running event loop)."""
        if self._client is None:
            timeout = httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s)
            self._client = httpx.AsyncClient(
                base_url=self.settings.base_url.rstrip("/") + "/",
                timeout=timeout,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        return self._client

    def _error(self, error: Exception) -> BackendError:
        if isinstance(error, httpx.TimeoutException):
            return BackendError(f"{self.model}: upstream timed out ({type(error).__name__})", retryable=True)
        if isinstance(error, httpx.HTTPError):
            return BackendError(f"{self.model}: upstream unreachable: {error or type(error).__name__}", retryable=True)
        return BackendError(f"{self.model}: {error}", retryable=True)

    @staticmethod
    def _status_error(model: str, status: int, text: str) -> BackendError:
        retryable = status >= 500 or status in (408, 429)
        return BackendError(f"{model}: upstream answered {status}: {text[:200]}", retryable=retryable, status=status)

    async def complete(self, request: ChatRequest) -> ChatResult:
        """POST ``chat/completions`` and return the first choice."""
        start = time.perf_counter()
        try:
            response = await self.client.post(
                "chat/completions", json=_body(request, self.upstream_model, False), headers=self._headers()
            )
        except httpx.HTTPError as error:
            raise self._error(error) from None
        if response.status_code >= 400:
            raise self._status_error(self.model, response.status_code, response.text)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(f"{self.model}: upstream sent a malformed answer", retryable=True) from None
        usage = data.get("usage") or {}
        result = ChatResult(
            model=self.model,
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            latency_s=time.perf_counter() - start,
        )
        if (pairs := _logprobs(choice)) is not None:
            result.tokens, result.logprobs = pairs
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream server-sent events; a stream that ends without a finish reason or ``[DONE]`` is an error."""
        finish: str | None = None
        usage: dict[str, Any] = {}
        done = False
        try:
            async with self.client.stream(
                "POST", "chat/completions", json=_body(request, self.upstream_model, True), headers=self._headers()
            ) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode("utf-8", errors="replace")
                    raise self._status_error(self.model, response.status_code, text)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    try:
                        event = json.loads(payload)
                    except ValueError:
                        raise BackendError(f"{self.model}: upstream sent a malformed event", retryable=True) from None
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        pairs = _logprobs(choice)
                        finish = choice.get("finish_reason") or finish
                        if piece:
                            yield ChatChunk(text=piece, logprob=sum(pairs[1]) if pairs else None)
        except httpx.HTTPError as error:
            raise self._error(error) from None
        if finish is None and not done:
            raise BackendError(f"{self.model}: upstream stream was cut before its end", retryable=True)
        yield ChatChunk(
            finish_reason=finish or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
