"""``POST /v1/messages``: Anthropic's Messages API through the same decision, model call and request log as
``/v1/chat/completions`` (the translation is :mod:`sizewise.gateway.anthropic`, the events
:mod:`sizewise.gateway.anthropic_stream`).

Keys: ``x-api-key`` (what Anthropic clients send) or ``Authorization: Bearer``. ``anthropic-version`` and
``anthropic-beta`` are accepted and not checked: the answer has the fields every version reads.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from sizewise.core.chat import ChatChunk
from sizewise.core.text import conversation_text
from sizewise.gateway.anthropic import CountTokensRequest, error_response, message_body, parse_messages
from sizewise.gateway.anthropic_stream import anthropic_events
from sizewise.gateway.errors import GatewayError
from sizewise.gateway.responses import JSON, decision_headers
from sizewise.gateway.schemas import read_body, request_context
from sizewise.gateway.state import GatewayState, ReportedStream, StreamReport
from sizewise.gateway.streaming import OnDone
from sizewise.policy.types import Decision, RequestContext
from sizewise.serve.tasks import TASK_KEY, take_task

logger = logging.getLogger("sizewise.gateway")


async def messages(request: Request) -> Response:
    """``POST /v1/messages``: translate, decide, call, answer (JSON or Anthropic events), log."""
    state: GatewayState = request.app.state.gateway
    started = time.perf_counter()
    request_id = state.next_id()
    ctx: RequestContext | None = None
    api_key: str | None = None
    decision: Decision | None = None
    stops: list[str] | None = None
    try:
        record = state.keys.check(request.headers)
        api_key = record.name if record else None
        raw = await read_body(request, state.settings.max_body_bytes)
        body, chat = parse_messages(raw, state.settings.max_messages)
        stops = body.stop_sequences
        task = take_task(body.model_extra)  # "sizewise": {"task": ...}: as on chat completions (serve.tasks)
        ctx = request_context(request, chat, stream=body.stream, api_key=api_key, request_id=request_id)
        ctx.extras[TASK_KEY] = task
        if body.stream:
            return await _stream(state, ctx, started, api_key, request, stops)
        result, decision = await state.engine.complete(ctx)
    except Exception as error:  # Anthropic's error shape; the log keeps the row
        failure, headers = state.refuse(error, ctx, decision, started, request_id=request_id, api_key=api_key)
        return error_response(failure.status, failure.message, headers)
    state.finish(
        ctx,
        decision,
        499 if await request.is_disconnected() else 200,
        started,
        request_id=request_id,
        api_key=api_key,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
    body_bytes = message_body(result, decision, request_id, stops)
    # Shadow judging (gateway.shadow) sees Anthropic traffic as it sees chat: after the answer is sent.
    later = state.shadow.after(ctx, decision, result) if state.shadow is not None else None
    return Response(body_bytes, headers=decision_headers(decision, request_id), media_type=JSON, background=later)


async def _stream(
    state: GatewayState,
    ctx: RequestContext,
    started: float,
    api_key: str | None,
    request: Request,
    stops: list[str] | None,
) -> Response:
    chunks, decision, spec = await state.engine.open_stream(ctx)
    report = StreamReport(state, ctx, decision, chunks, started, api_key)
    if await request.is_disconnected():  # gone while the first chunk was awaited: nobody to send it to
        await report.if_never_started()
        return Response(status_code=499)
    shown: AsyncIterator[ChatChunk] = chunks
    on_done: OnDone = report.done
    if state.shadow is not None:  # a chosen stream keeps its text; its shadow job is queued when it is over
        shown, on_done = state.shadow.tap(ctx, decision, chunks, report.done)
    events = anthropic_events(shown, decision, spec.name, ctx.request_id, stops, on_done)
    headers = decision_headers(decision, ctx.request_id)
    return ReportedStream(events, report.if_never_started, media_type="text/event-stream", headers=headers)


async def count_tokens(request: Request) -> Response:
    """``POST /v1/messages/count_tokens``: the prompt's size as the gateway estimates it on the request path
    (characters / 4 of its text, tool calls and tool schemas), not any model's tokenizer."""
    state: GatewayState = request.app.state.gateway
    try:
        state.keys.check(request.headers)
        raw = await read_body(request, state.settings.max_body_bytes)
        _, chat = parse_messages(raw, state.settings.max_messages, CountTokensRequest)
    except GatewayError as error:
        return error_response(error.status, error.message)
    asked = chat.to_chat_request()
    calls = [message["tool_calls"] for message in asked.messages if message.get("tool_calls")]
    chars = len(conversation_text(asked.messages)) + len(json.dumps(calls)) * bool(calls)
    chars += len(json.dumps(asked.extra["tools"])) if asked.extra.get("tools") else 0
    return Response(json.dumps({"input_tokens": math.ceil(chars / 4)}).encode(), media_type=JSON)
