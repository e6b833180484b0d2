"""``POST /v1/route`` (the decision without the call), ``GET /v1/models/{id}`` and the names ``/v1/models`` lists.

``/v1/route`` takes a chat-completions body and runs the same filters and policy as a chat request, then
stops: no model is called. The budget filter reserves its usual amount while the filters run and the
reservation is settled at 0 before the answer (nothing is spent, nothing stays held); the request log and
the metrics do not count it, since no model answered.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from sizewise.errors import SizewiseError
from sizewise.gateway.errors import GatewayError, error_response
from sizewise.gateway.responses import JSON, decision_headers, error_status, model_entry
from sizewise.gateway.schemas import parse_request, request_context
from sizewise.policy.types import CascadePolicy, RequestContext, RequestRejected

if TYPE_CHECKING:
    from sizewise.gateway.state import GatewayState
    from sizewise.serve.pipeline import Engine

#: Scorers whose ``cascade-<scorer>`` policy is listed when it can be built here (a fitted one or none needed).
CASCADE_SCORERS = ("logprob", "consistency", "verifier", "answer-classifier")

#: The local embedding model's name in ``/v1/models`` and ``/v1/embeddings``.
LOCAL_EMBEDDING = "all-MiniLM-L6-v2"
#: Every name ``/v1/embeddings`` takes for it (its Hugging Face id too).
LOCAL_EMBEDDING_NAMES = (LOCAL_EMBEDDING, "sentence-transformers/all-MiniLM-L6-v2")


def advertised_names(engine: Engine) -> list[str]:
    """What ``/v1/models`` lists: ``sizewise``, the configured default policy, each ``cascade-<scorer>`` that
    can serve here, the catalog models, their aliases and the local embedding model. Name patterns
    (``router-<name>-<threshold>``, ``multi-<router>-<target>``) are documented, never listed as models."""
    names = ["sizewise"]
    if engine.settings.default_policy not in names:
        names.append(engine.settings.default_policy)
    for scorer in CASCADE_SCORERS:
        name = f"cascade-{scorer}"
        if name not in names and _buildable(engine, name):
            names.append(name)
    names += [name for name in engine.by_name if name not in names]
    names += [alias for alias, name in engine.aliases.items() if name in engine.by_name and alias not in names]
    return [*names, LOCAL_EMBEDDING]


def _buildable(engine: Engine, name: str) -> bool:
    try:
        engine.policy(name)
    except (SizewiseError, RequestRejected):
        return False
    return True


async def model_by_id(request: Request) -> Response:
    """``GET /v1/models/{id}``: a listed name, an alias or any name the ``model`` field accepts (a router
    policy with its threshold); 404 in OpenAI's shape otherwise."""
    state: GatewayState = request.app.state.gateway
    try:
        state.keys.check(request.headers)
    except GatewayError as error:
        return error_response(error.status, error.message, error.code)
    name = request.path_params["model_id"]
    if name not in LOCAL_EMBEDDING_NAMES and name not in state.engine.aliases:
        try:
            state.engine.policy(name)
        except (SizewiseError, RequestRejected) as error:
            failure = error_status(error)
            if failure.status != 503:  # a model whose key is unset exists: it is reported, not hidden
                return error_response(
                    404, f"model {name!r} does not exist: {failure.message}", "model_not_found", "model"
                )
    return Response(json.dumps(model_entry(name)).encode(), media_type=JSON)


async def route(request: Request) -> Response:
    """``POST /v1/route``: which model a chat request would go to, why, the filters and the scores."""
    state: GatewayState = request.app.state.gateway
    started = time.perf_counter()
    request_id = state.next_id()
    ctx: RequestContext | None = None
    try:
        record = state.keys.check(request.headers)
        body = await parse_request(request, state.settings.max_body_bytes, state.settings.max_messages)
        ctx = request_context(
            request, body, stream=body.stream, api_key=record.name if record else None, request_id=request_id
        )
        policy, decision, order = await state.engine.decide(ctx)
    except (GatewayError, RequestRejected, SizewiseError) as error:
        failure = error_status(error)
        return error_response(
            failure.status, failure.message, failure.code, failure.param, {"x-request-id": request_id}
        )
    finally:
        if ctx is not None:
            state.engine.settle(ctx, None)  # the budget's reservation, if one was made, settles at 0
    cascade = isinstance(policy, CascadePolicy)
    if cascade and order:
        decision.model = order[0].name  # a cascade starts at its first rung; a scorer decides after each answer
        decision.reason = f"cascade: {order[0].name} answers first; a scorer decides whether a larger model takes over"
    answer = {
        "object": "sizewise.route",
        "id": f"route-{request_id}",
        "model": decision.model,
        "order": [spec.name for spec in order],
        "cascade": cascade,
        "reserved_usd": 0.0,
        "decision_ms": round((time.perf_counter() - started) * 1000, 3),
        "sizewise": decision.to_dict(),
    }
    return Response(json.dumps(answer).encode(), headers=decision_headers(decision, request_id), media_type=JSON)
