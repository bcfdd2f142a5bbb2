"""The per-tenant rate limit on the public API: one hit per `/api/*` request (not `/api/admin/*`,
`/health`, `/metrics`), 429 `rate_limited` once the tenant's rate is spent, `RateLimit-*` headers
on every answer it counted."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

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
    principal = getattr(request.state, "principal", None)
    return principal.tenant if principal is not None else DEFAULT_TENANT


def rate_of(request: Request, default: float) -> float:
    """The tenant's own requests per second, or `default` (RATE_LIMIT_PER_SECOND) when it has
    none (no principal, or a limit of None)."""
    principal = getattr(request.state, "principal", None)
    per_second = principal.limits.requests_per_second if principal is not None else None
    return default if per_second is None else per_second


def install_rate_limit(app: FastAPI, limiter: RateLimiter, *, default_per_second: float) -> None:
    """Count every public API request against its tenant's rate.

    Install it before the auth middleware (Starlette runs the last added first), so that the
    principal is known here and a request refused 401 is never counted.
    """

    @app.middleware("http")
    async def _rate_limit(request: Request, call_next: Callable) -> Response:
        path = request.url.path
        if not path.startswith(LIMITED_PREFIX) or path.startswith(EXEMPT_PREFIX):
            return await call_next(request)
        tenant = tenant_of(request)
        decision = await limiter.hit(tenant, rate_of(request, default_per_second))
        if decision is None:
            return await call_next(request)
        if decision.allowed:
            response = await call_next(request)
        else:
            headers = decision.headers()
            error = RateLimited(
                f"too many requests: tenant {tenant!r} may send {decision.limit} per "
                f"{limiter.window_seconds} s; retry after {headers['Retry-After']} s",
                retry_after=int(headers["Retry-After"]),
                limit=decision.limit,
                window_seconds=limiter.window_seconds,
            )
            response = error_response(error)
        response.headers.update(decision.headers())
        return response
