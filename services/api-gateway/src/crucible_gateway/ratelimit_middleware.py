"""The per-tenant rate limit on the public API: one hit per `/api/*` request (not `/api/admin/*`,
`/health`, `/metrics`), 429 `rate_limited` once the tenant's rate is spent, `RateLimit-*` headers
on every answer it counted."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crucible_contracts.errors import RateLimited
from crucible_gateway.ratelimit import RateLimiter
from crucible_runtime.web import error_response

LIMITED_PREFIX = "/api/"
# Operators are few and authenticated by their own token; a flood of tenants must not lock them out.
EXEMPT_PREFIX = "/api/admin/"
DEFAULT_TENANT = "default"


def tenant_of(request: Request) -> str:
    """The tenant a request is counted against: its principal's (set by the auth middleware,
    which runs before this one), else the one tenant of local mode."""
    return _tenant(getattr(request.state, "principal", None))


def rate_of(request: Request, default: float) -> float:
    """The tenant's own requests per second, or `default` (RATE_LIMIT_PER_SECOND) when it has
    none (no principal, or a limit of None)."""
    return _rate(getattr(request.state, "principal", None), default)


def _tenant(principal: Any) -> str:
    return principal.tenant if principal is not None else DEFAULT_TENANT


def _rate(principal: Any, default: float) -> float:
    per_second = principal.limits.requests_per_second if principal is not None else None
    return default if per_second is None else per_second


class RateLimitMiddleware:
    """Pure ASGI: one hit per `/api/*` request but `/api/admin/*`; a refusal is answered 429
    here, an allowed request goes on with the `RateLimit-*` headers added to its answer."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, default_per_second: float) -> None:
        self.app = app
        self.limiter = limiter
        self.default_per_second = default_per_second

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path.startswith(LIMITED_PREFIX) or path.startswith(EXEMPT_PREFIX):
            await self.app(scope, receive, send)
            return
        principal = scope.get("state", {}).get("principal")
        tenant = _tenant(principal)
        decision = await self.limiter.hit(tenant, _rate(principal, self.default_per_second))
        if decision is None:
            await self.app(scope, receive, send)
            return
        extra = [
            (name.lower().encode(), value.encode()) for name, value in decision.headers().items()
        ]
        names = {name for name, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Ours replace the answer's own (a 429's Retry-After), as headers.update did.
                kept = [h for h in message.get("headers", ()) if h[0].lower() not in names]
                message = {**message, "headers": [*kept, *extra]}
            await send(message)

        if decision.allowed:
            await self.app(scope, receive, send_with_headers)
            return
        retry_after = decision.headers()["Retry-After"]
        error = RateLimited(
            f"too many requests: tenant {tenant!r} may send {decision.limit} per "
            f"{self.limiter.window_seconds} s; retry after {retry_after} s",
            retry_after=int(retry_after),
            limit=decision.limit,
            window_seconds=self.limiter.window_seconds,
        )
        await error_response(error)(scope, receive, send_with_headers)


def install_rate_limit(app: FastAPI, limiter: RateLimiter, *, default_per_second: float) -> None:
    """Count every public API request against its tenant's rate (`RateLimitMiddleware`).

    Install it before the auth middleware (Starlette runs the last added first), so that the
    principal is known here and a request refused 401 is never counted.
    """
    app.add_middleware(RateLimitMiddleware, limiter=limiter, default_per_second=default_per_second)
