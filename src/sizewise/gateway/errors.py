"""OpenAI-style JSON errors: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

Every failure the gateway can foresee maps here; an unforeseen one becomes a 500 with a one-line
message (never a traceback in the body).
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.responses import Response

from sizewise.core.decision import RequestRejected

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_error",
}


#: The one rejection error (:class:`sizewise.core.decision.RequestRejected`) under the gateway's name.
GatewayError = RequestRejected


def error_body(status: int, message: str, code: str | None, param: str | None = None) -> dict[str, object]:
    """The JSON body of an error."""
    return {"error": {"message": message, "type": _TYPES.get(status, "api_error"), "param": param, "code": code}}


def error_response(
    status: int, message: str, code: str | None, param: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """A JSON error response."""
    body = json.dumps(error_body(status, message, code, param)).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def from_validation(error: ValidationError) -> GatewayError:
    """A 400 naming the first invalid field (or saying the JSON is malformed)."""
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return GatewayError(400, f"malformed JSON body: {first['msg']}", "invalid_json")
    if first["type"] in ("model_type", "model_attributes_type") and not first["loc"]:
        return GatewayError(400, "the request body must be a JSON object", "invalid_request")
    param = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "missing":
        return GatewayError(400, f"missing required field {param!r}", "missing_field", param)
    message = str(first["msg"]).removeprefix("Value error, ")
    where = f" for {param!r}" if param else ""  # a check of the whole request names no field
    return GatewayError(400, f"invalid value{where}: {message}", "invalid_value", param)
