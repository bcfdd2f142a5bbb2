"""FastAPI glue shared by the services: the one error body, the internal-key check, `/metrics`."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crucible_contracts.errors import (
    MAX_ECHO,
    Busy,
    CrucibleError,
    InvalidInput,
    Unauthorized,
    echo,
)
from crucible_contracts.names import INTERNAL_KEY_HEADER
from crucible_runtime.edge import BodyGuard, EdgeLimits

OPEN_PATHS = frozenset({"/health", "/metrics"})

HTTP_REQUESTS = Counter(
    "crucible_http_requests_total", "HTTP requests served", ["service", "method", "route", "code"]
)
HTTP_LATENCY = Histogram(
    "crucible_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def error_response(exc: CrucibleError) -> JSONResponse:
    headers = (
        {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, Busy) else None
    )
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


# A 422 names where the problem is and what was expected, never the value that was sent: that
# may be anything (a megabyte, a newline). Only a place named by the client (an unknown field's
# name) is echoed, and at most this many characters of it (`errors.echo`, with a marker).
MAX_ECHOED = 64
MAX_PROBLEMS = 20

NOT_JSON = "request body is not valid JSON"


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request"}
    field = ".".join(_bounded(part) for part in first["loc"] if part != "body") or "body"
    message = echo(first["msg"], MAX_ECHO)
    if first.get("type") == "json_invalid":
        field, message = "body", NOT_JSON
    error = InvalidInput(field, message, problems=[_plain(p) for p in problems[:MAX_PROBLEMS]])
    return error_response(error)


def _bounded(part: object) -> str:
    return echo(str(part), MAX_ECHOED)


def _plain(problem: dict) -> dict:
    return {
        "loc": [_bounded(part) for part in problem.get("loc", ())],
        "msg": echo(problem.get("msg", ""), MAX_ECHO),
    }


def _unparsable_body(exc: StarletteHTTPException) -> InvalidInput | None:
    """The 422 for a body FastAPI could not even decode (it answers those with a bare 400)."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, UnicodeDecodeError):
        return InvalidInput("body", f"{NOT_JSON}: it is not UTF-8 text")
    if isinstance(cause, RecursionError):
        return InvalidInput("body", f"{NOT_JSON}: it is nested too deeply")
    return InvalidInput("body", NOT_JSON)


def install_error_handlers(app: FastAPI) -> None:
    """Every error a service raises or FastAPI produces leaves in the shape of `errors.py`."""

    @app.exception_handler(CrucibleError)
    async def _crucible(_: Request, exc: CrucibleError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        unparsable = _unparsable_body(exc)
        if unparsable is not None:
            return error_response(unparsable)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"error": {"code": code, "message": echo(str(exc.detail)), "details": {}}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


class InternalKeyCheck:
    """ASGI middleware: every call but `/health` and `/metrics` must carry the internal key (401).

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs each
    request through a task group and memory streams, which cost more CPU than most routes do.
    """

    def __init__(self, app: ASGIApp, expected: str) -> None:
        self.app = app
        self.expected = expected.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = Headers(scope=scope).get(INTERNAL_KEY_HEADER, "")
            if not hmac.compare_digest(given.encode(), self.expected):
                refusal = error_response(Unauthorized(f"missing or wrong {INTERNAL_KEY_HEADER}"))
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_internal_key(app: FastAPI, expected: str | None) -> None:
    """When `expected` is set, every call but `/health` and `/metrics` must carry it (else 401)."""
    if expected:
        app.add_middleware(InternalKeyCheck, expected=expected)


class RequestMetrics:
    """ASGI middleware: counts and times every request, labelled by its route template (the
    router leaves the matched route in the scope), and by the status it was answered with."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before a response starts

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, path).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI, service: str) -> None:
    """`GET /metrics` in Prometheus text format, and request counters labelled by route template."""
    app.add_middleware(RequestMetrics, service=service)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# What each error status means, as every service's OpenAPI document says it.
ERROR_STATUSES = {
    400: "The request is not HTTP the server can parse.",
    401: "Missing or wrong credentials.",
    403: "The credentials do not allow this.",
    404: "No such resource.",
    408: "The request (head or body) did not arrive in time.",
    409: "The resource's state does not allow this.",
    413: "The request body is over the service's limit.",
    422: "Invalid input: the message names the field and the limit.",
    429: "At capacity or over a quota; retry after Retry-After seconds.",
    431: "The request head is over the service's limit.",
    503: "A dependency cannot be reached.",
}
# Answered by every operation of every service: the edge's and the validator's.
EDGE_STATUSES = frozenset({408, 413, 422})

_ERROR_SCHEMA = {
    "ErrorBody": {
        "title": "ErrorBody",
        "description": "The one error body of every Crucible service (crucible_contracts.errors).",
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
    },
    "ErrorDetail": {
        "title": "ErrorDetail",
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "object"},
        },
    },
}


def document_errors(app: FastAPI, statuses: Iterable[int]) -> None:
    """Every operation of `app`'s OpenAPI document lists `statuses` (and EDGE_STATUSES) with the
    one error body, replacing FastAPI's own 422 (`HTTPValidationError`), which no service sends."""
    wanted = sorted(EDGE_STATUSES | set(statuses))
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(_ERROR_SCHEMA)
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code in wanted:
                    responses[str(code)] = {
                        "description": ERROR_STATUSES[code],
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorBody"}
                            }
                        },
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_common(
    app: FastAPI,
    *,
    service: str,
    internal_api_key: str | None,
    edge: EdgeLimits | None = None,
    statuses: Iterable[int] = (),
) -> None:
    """Error handlers, the internal key, metrics, the error statuses of the OpenAPI document
    (`statuses`, plus 401 with an internal key) and, outermost, the body guard (`edge`)."""
    document_errors(app, {*statuses, *((401,) if internal_api_key else ())})
    install_error_handlers(app)
    install_internal_key(app, internal_api_key)
    install_metrics(app, service)
    # Added last, so it wraps every middleware installed before it (auth included): no body
    # is read past the cap or past its deadlines, whoever reads it.
    app.add_middleware(BodyGuard, limits=edge or EdgeLimits())
