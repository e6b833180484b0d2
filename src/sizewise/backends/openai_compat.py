"""Any OpenAI-compatible HTTP upstream (vLLM, Ollama, llama-server, a cloud API) through httpx.

Requests go through httpx's own connection pool (httpcore), configured per model by :func:`upstream_client`:
it handles 1xx responses, trailers, keep-alive after errors and proxies, and never replays a request that was
written. Errors map to :class:`BackendError`: timeouts, refused connections, 5xx, 429 and a stream cut before its end
are ``retryable`` (another try or another model may work); other 4xx are not (the request itself is wrong).
``timeout_s`` bounds each read, so a stream runs as long as chunks keep coming; a longer gap is a timeout.

The request passes through as the client sent it, and the answer's fields come back verbatim (tool calls,
logprobs objects, every choice of ``n``, the upstream's ``id``): :func:`parse_answer`, :func:`parse_event`.
Why not the official ``openai`` async client: measured on the fake upstream (``bench/upstream_client.py``),
it cost 0.6 ms more CPU per answer and 1.4 ms per stream, and its typed models would have to be dumped
again to pass fields through verbatim; the SSE parsing it would replace is the few lines below.
"""

from __future__ import annotations

import email.utils
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from sizewise.backends.base import Backend
from sizewise.backends.capped import capped_lines, read_capped
from sizewise.catalog.schema import ModelSpec, OpenAISettings
from sizewise.core.chat import BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.errors import ConfigError

# Per upstream: enough concurrent requests for a busy gateway. Idle connections are dropped after httpx's
# default 5 s, as the openai client does: shorter than most servers' idle timeouts, so a request is rarely
# written on a connection the server is closing (that request fails; the engine's retry then sends it again).
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)


def tls_verify(name: str, settings: OpenAISettings, ca_bundle: Path | None = None) -> ssl.SSLContext | bool:
    """What httpx checks the upstream's certificate with: ``ca_bundle`` (a PEM file) or ``settings.verify``.

    A bundle that is missing or unreadable is a one-line :class:`ConfigError` naming the file.
    """
    if ca_bundle is None:
        return settings.verify
    if not ca_bundle.is_file():
        raise ConfigError(f"model {name!r}: ca_bundle {ca_bundle} does not exist")
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"model {name!r}: ca_bundle {ca_bundle} is not a PEM CA bundle: {error}") from None


def upstream_client(settings: OpenAISettings, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """httpx's pooled client for one upstream: timeouts, TLS ``verify``, ``proxy``, redirects.

    With no ``proxy`` the environment's ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` apply (``trust_env``),
    as for the openai client. Redirects are followed as the openai client does: 307 and 308 keep the method
    and body; httpx drops the ``Authorization`` header when a redirect leaves the origin.
    """
    return httpx.AsyncClient(
        base_url=settings.base_url.rstrip("/") + "/",
        timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        limits=LIMITS,
        verify=verify,
        proxy=settings.proxy,
        trust_env=True,
        follow_redirects=True,
    )


def missing_api_key(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be called now: its ``api_key_env`` variable is unset or empty (else None)."""
    if spec.backend != "openai":
        return None
    variable = spec.settings.get("api_key_env")
    if variable and not os.environ.get(variable):
        return f"environment variable {variable} (its API key) is not set"
    return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds an upstream's ``Retry-After`` asks to wait (a number or an HTTP date); None if absent or unreadable."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(seconds, 0.0) if seconds == seconds else None  # NaN: unreadable


def _body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """The upstream request: the client's fields as it sent them (``request.extra`` holds every field the gateway
    does not read: tools, tool_choice, response_format, n, user, metadata, reasoning_effort, top_logprobs...)."""
    body: dict[str, Any] = {**request.extra, "model": model, "messages": request.messages}
    for name in ("temperature", "top_p", "stop", "seed"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    # A client's max_completion_tokens travels as itself (OpenAI's reasoning models reject max_tokens).
    if request.max_tokens is not None and "max_completion_tokens" not in body:
        body["max_tokens"] = request.max_tokens
    if request.logprobs:
        body["logprobs"] = True
    if stream:
        body["stream"] = True
        # The usage counts are sizewise's own need (budgets, the log); the client's other options stay.
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body


def _logprobs(choice: dict[str, Any]) -> tuple[list[str], list[float]] | None:
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return [str(item.get("token", "")) for item in content], [float(item["logprob"]) for item in content]


#: Top-level answer fields kept verbatim (``ChatResult.upstream`` / ``ChatChunk.upstream``) and written back.
KEPT = ("id", "created", "system_fingerprint", "service_tier")


def _kept(data: dict[str, Any]) -> dict[str, Any]:
    return {name: data[name] for name in KEPT if data.get(name) is not None}


def parse_answer(model: str, data: Any, latency_s: float) -> ChatResult:
    """A ``chat.completion`` object as a :class:`ChatResult`; choice 0 in its fields, the rest verbatim."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ValueError("no choices")
    choice = data["choices"][0]
    message = choice["message"]
    content = message.get("content")
    if not isinstance(content, str | None) or not isinstance(message.get("tool_calls") or [], list):
        raise ValueError("bad message")
    usage = data.get("usage") or {}
    upstream = _kept(data)
    # The message's other fields (refusal, annotations, audio, reasoning_content; content null) stay as sent.
    others = {k: v for k, v in message.items() if k not in ("role", "tool_calls") and (k != "content" or v is None)}
    if others:
        upstream["message"] = others
    if choice.get("logprobs") is not None:
        upstream["logprobs"] = choice["logprobs"]
    if len(data["choices"]) > 1:  # n > 1: every choice goes back to the client as the upstream wrote it
        upstream["choices"] = data["choices"]
    result = ChatResult(
        model=model,
        text=content or "",
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency_s,
        tool_calls=message.get("tool_calls") or None,
        upstream=upstream,
    )
    if (pairs := _logprobs(choice)) is not None:
        result.tokens, result.logprobs = pairs
    return result


def parse_event(event: Any) -> tuple[ChatChunk | None, str | None, dict[str, Any] | None]:
    """One ``chat.completion.chunk``: the chunk to pass on (None when it carries nothing for the client), choice
    0's finish reason and the usage. Choices other than 0 (``n > 1``) ride verbatim in ``upstream["choices"]``."""
    if not isinstance(event, dict):
        raise ValueError("not an object")
    chunk = ChatChunk(upstream=_kept(event))
    finish: str | None = None
    carries = False
    for choice in event.get("choices") or []:
        if choice.get("index", 0) != 0:
            chunk.upstream.setdefault("choices", []).append(choice)
            carries = True
            continue
        delta = choice.get("delta") or {}
        chunk.text = delta.get("content") or ""
        chunk.tool_calls = delta.get("tool_calls") or None
        others = {k: v for k, v in delta.items() if k not in ("role", "content", "tool_calls") and v is not None}
        if others:  # refusal, reasoning_content...
            chunk.upstream["delta"] = others
        if choice.get("logprobs") is not None:
            chunk.upstream["logprobs"] = choice["logprobs"]
            if (pairs := _logprobs(choice)) is not None:
                chunk.logprob = sum(pairs[1])
        finish = choice.get("finish_reason") or None
        carries = carries or bool(chunk.text or chunk.tool_calls or others or "logprobs" in chunk.upstream)
    return (chunk if carries else None), finish, event.get("usage")


class OpenAICompatBackend(Backend):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint (``backend: openai``)."""

    def __init__(
        self,
        spec: ModelSpec,
        settings: OpenAISettings,
        *,
        client: httpx.AsyncClient | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        """``ca_bundle`` overrides ``settings.ca_bundle`` (the factory passes it resolved against the catalog)."""
        self.model = spec.name
        self.upstream_model = settings.model or spec.name
        self.settings = settings
        if ca_bundle is None and settings.ca_bundle:
            ca_bundle = Path(settings.ca_bundle).expanduser()
        self._verify = tls_verify(spec.name, settings, ca_bundle)  # now, so a bad bundle fails at start-up
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
            self._client = upstream_client(self.settings, self._verify)
        return self._client

    def _error(self, error: Exception) -> BackendError:
        if isinstance(error, httpx.TimeoutException):
            return BackendError(f"{self.model}: upstream timed out ({type(error).__name__})", retryable=True)
        if isinstance(error, httpx.HTTPError):
            return BackendError(f"{self.model}: upstream unreachable: {error or type(error).__name__}", retryable=True)
        return BackendError(f"{self.model}: {error}", retryable=True)

    @staticmethod
    def _status_error(model: str, response: httpx.Response, text: str) -> BackendError:
        status = response.status_code
        retryable = status >= 500 or status in (408, 429)
        return BackendError(
            f"{model}: upstream answered {status}: {text[:200]}",
            retryable=retryable,
            status=status,
            retry_after_s=retry_after(response.headers) if retryable else None,
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        """POST ``chat/completions`` and return the first choice."""
        start = time.perf_counter()
        try:
            async with self.client.stream(
                "POST", "chat/completions", json=_body(request, self.upstream_model, False), headers=self._headers()
            ) as response:
                body = await read_capped(response, self.model)  # an endless body fails the call, never fills memory
        except httpx.HTTPError as error:
            raise self._error(error) from None
        if response.status_code >= 400:
            raise self._status_error(self.model, response, body.decode(response.encoding or "utf-8", "replace"))
        try:
            return parse_answer(self.model, json.loads(body), time.perf_counter() - start)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(f"{self.model}: upstream sent a malformed answer", retryable=True) from None

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
                    text = (await read_capped(response, self.model)).decode("utf-8", errors="replace")
                    raise self._status_error(self.model, response, text)
                async for line in capped_lines(response, self.model):
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    try:
                        chunk, finished, new_usage = parse_event(json.loads(payload))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        raise BackendError(f"{self.model}: upstream sent a malformed event", retryable=True) from None
                    usage = new_usage if isinstance(new_usage, dict) else usage
                    finish = finished or finish
                    if chunk is not None:
                        yield chunk
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
