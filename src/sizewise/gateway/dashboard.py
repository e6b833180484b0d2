"""The live dashboard: ``GET /dashboard`` (a page of plotly charts), ``GET /dashboard/data`` (their JSON,
:mod:`sizewise.gateway.dashboard_data`) and ``GET /dashboard/plotly.min.js``.

Offline: plotly.js is served from the installed ``plotly`` package (``plotly/package_data/plotly.min.js``),
never from a CDN, so the page works on a machine without internet and makes no request to another host.
With API keys on, every dashboard route is behind a key like the API; a browser cannot set a bearer
header on a page it navigates to, so the key is also taken as the password of HTTP Basic auth (any user
name), and every 401 of the dashboard asks the browser for it (``WWW-Authenticate: Basic``): a browser
sends Basic credentials to a page's scripts and ``fetch`` calls only when challenged.

What a key sees is its ``api_keys[].dashboard``: ``own`` (the default) the numbers of the requests made with
it only, ``all`` every client's (an operator), ``none`` a 403 on every dashboard route. Keys off: everything.
Answers are cached per client as well as per query, so one client's answer is never served to another.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib.util
import json
import logging
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from sizewise.catalog.schema import ApiKey
from sizewise.gateway.dashboard_data import QueryError, SavingsCache, dashboard_data, parse_window
from sizewise.gateway.errors import GatewayError, error_response

logger = logging.getLogger("sizewise.dashboard")

STATIC = Path(__file__).with_name("static")
#: Seconds an answer of ``/dashboard/data`` is reused for the same query (many open pages, one database read).
CACHE_S = 2.0
#: The most of one core the dashboard's computations may take (see :class:`_Cache`).
DUTY = 0.25
_PAGE_HEADERS = {
    # The page and its scripts come from this gateway only; nothing may be loaded from or sent to elsewhere.
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:",
    "cache-control": "no-store",
}


def _basic_as_bearer(headers: Any) -> dict[str, str]:
    """``headers`` with an HTTP Basic password presented as the bearer key (what the key checker reads)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return dict(headers)
    try:
        _, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return {}
    return {"authorization": f"Bearer {password}"} if password else {}


def _caller(request: Request) -> ApiKey | None:
    """The caller's key (None when keys are off): a 401 :class:`GatewayError` without a valid key, bearer or
    Basic, and a 403 for a key whose ``dashboard`` is ``none``."""
    record = request.app.state.gateway.keys.check(_basic_as_bearer(request.headers))
    if record is not None and record.dashboard == "none":
        raise GatewayError(
            403, "this API key may not see the dashboard (its api_keys[].dashboard is 'none')", "dashboard_forbidden"
        )
    return record


def client_of(record: ApiKey | None) -> str | None:
    """Whose requests the dashboard counts for a caller: its key name for an ``own`` key, None (every
    client's) for an ``all`` key or with keys off. Only ``all`` widens the view: any other value counts the
    key's own requests (fails closed)."""
    return None if record is None or record.dashboard == "all" else record.name


def _refusal(error: GatewayError) -> Response:
    """The error as OpenAI-style JSON; a 401 asks a browser for the key (Basic), a 403 does not (another
    try with the same key would be refused again)."""
    headers = {"www-authenticate": 'Basic realm="sizewise dashboard", charset="UTF-8"'} if error.status == 401 else None
    return error_response(error.status, error.message, error.code, headers=headers)


def _denied(request: Request) -> Response | None:
    """A 401 or 403 (OpenAI-style JSON) when the caller may not see the dashboard (see :func:`_caller`)."""
    try:
        _caller(request)
    except GatewayError as error:
        return _refusal(error)
    return None


@cache
def _asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@cache
def _plotly_js() -> bytes | None:
    """The installed plotly.js (about 4.6 MB, read once); None when the package is missing."""
    spec = importlib.util.find_spec("plotly")  # finds the package without importing it (and its dependencies)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path.read_bytes() if path.is_file() else None


async def page(request: Request) -> Response:
    """``GET /dashboard``: the page (HTML that loads plotly.js and the dashboard script from this gateway)."""
    denied = _denied(request)
    if denied is not None:
        return denied
    return Response(_asset("dashboard.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def script(request: Request) -> Response:
    """``GET /dashboard/dashboard.js``: the page's own script."""
    denied = _denied(request)
    headers = {"cache-control": "no-store"}
    return denied or Response(_asset("dashboard.js"), media_type="text/javascript", headers=headers)


async def plotly_js(request: Request) -> Response:
    """``GET /dashboard/plotly.min.js``: plotly.js from the installed package."""
    denied = _denied(request)
    if denied is not None:
        return denied
    body = await asyncio.to_thread(_plotly_js)
    if body is None:
        return error_response(503, "plotly is not installed: pip install plotly", "plotly_missing")
    return Response(body, media_type="text/javascript", headers={"cache-control": "private, max-age=86400"})


class _Cache:
    """Answers by query, each kept :data:`CACHE_S` seconds, computed one at a time and at most :data:`DUTY`
    of the time: after a computation that took ``d`` seconds the next one starts ``(1 / DUTY - 1) * d`` later,
    so however many pages poll, and whatever they ask, the dashboard takes at most that share of one core
    from the requests the gateway serves (a large log makes refreshes rarer, never the gateway slower)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str | None, ...], tuple[float, bytes]] = {}
        self.lock = asyncio.Lock()
        self.next_start = 0.0

    def get(self, key: tuple[str | None, ...]) -> bytes | None:
        hit = self.answers.get(key)
        return hit[1] if hit is not None and time.monotonic() - hit[0] < CACHE_S else None

    def put(self, key: tuple[str | None, ...], body: bytes) -> None:
        now = time.monotonic()
        self.answers = {k: v for k, v in self.answers.items() if now - v[0] < CACHE_S}
        self.answers[key] = (now, body)

    async def answer(self, key: tuple[str | None, ...], compute: Callable[[], bytes]) -> bytes:
        """The cached answer for ``key``, else ``compute()`` in a thread, in turn and within the duty cycle."""
        async with self.lock:
            body = self.get(key)  # another request may have computed it while this one waited
            if body is not None:
                return body
            await asyncio.sleep(max(0.0, self.next_start - time.monotonic()))
            started = time.monotonic()
            try:
                body = await asyncio.to_thread(compute)
            finally:
                took = time.monotonic() - started
                self.next_start = time.monotonic() + took * (1 / DUTY - 1)
            self.put(key, body)
            return body


async def data(request: Request) -> Response:
    """``GET /dashboard/data?since=1h&bucket=60``: the charts' numbers as JSON, of the caller's own requests
    unless its key sees all (400 for a bad parameter)."""
    try:
        client = client_of(_caller(request))
    except GatewayError as error:
        return _refusal(error)
    since, bucket = request.query_params.get("since"), request.query_params.get("bucket")
    key = (client, since, bucket)  # the client first: an answer for one client is never another's cache hit
    try:
        parse_window(since, bucket)  # a bad parameter is answered at once, never queued behind a computation
    except QueryError as error:
        param = "since" if error.args[0].startswith("since") else "bucket"
        return error_response(400, str(error), "invalid_value", param)
    state, cache_ = request.app.state.gateway, request.app.state.dashboard_cache
    savings = request.app.state.dashboard_savings
    body = cache_.get(key)
    if body is None:
        try:
            body = await cache_.answer(
                key,
                lambda: json.dumps(dashboard_data(state, since, bucket, savings, client=client), default=str).encode(),
            )
        except SQLAlchemyError as error:  # the page keeps its last charts and shows this line
            logger.error("dashboard: cannot read the request log: %s", error)
            return error_response(503, f"cannot read the request log: {type(error).__name__}", "log_unavailable")
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


ROUTES = {
    "/dashboard": page,
    "/dashboard/dashboard.js": script,
    "/dashboard/plotly.min.js": plotly_js,
    "/dashboard/data": data,
}


def install_dashboard(app: Any) -> None:
    """Add the dashboard's routes to a gateway app (plain routes, not in the OpenAPI schema)."""
    app.state.dashboard_cache = _Cache()
    app.state.dashboard_savings = SavingsCache()
    for path, handler in ROUTES.items():
        app.add_route(path, handler, methods=["GET"])
