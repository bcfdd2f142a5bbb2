"""Authentication and scopes: client keys (of tenants, looked up in storage) and operator tokens
(OPERATOR_TOKEN), checked on every /api/ request before its body is read."""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from crucible_contracts.errors import CrucibleError, Forbidden, Unauthorized
from crucible_contracts.tenancy import Scope
from crucible_gateway.tenancy.principal import KeyResolver, Principal
from crucible_runtime.web import error_response

PROTECTED_PREFIX = "/api/"
# The admin API: operators, by their token or a key with the operator scope.
ADMIN_PREFIX = "/api/admin/"
OPERATOR_PREFIXES = ("/api/celery/", "/api/migration/report", "/api/events")
SUBMIT_PATHS = frozenset({"/api/eval", "/api/eval-batch"})
API_KEY_HEADER = "X-API-Key"
OPERATOR_HEADER = "X-Operator-Token"


def presented_key(request: Request) -> str | None:
    """The key a client sent, as `X-API-Key: <key>` or `Authorization: Bearer <key>`."""
    key = request.headers.get(API_KEY_HEADER)
    if key:
        return key.strip()
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def required_scope(method: str, path: str) -> Scope:
    """The scope a request to `path` needs, decided from the path alone (before any body is read).

    Submitting needs `submit`; the operators' views (the admin API, Celery's workers and tasks,
    the migration report with its samples of other tenants' output, the live stream of every
    tenant's events) need `operator`; every other
    /api/ route needs `read` and then answers about the caller's own tenant only.
    """
    if path.startswith(ADMIN_PREFIX) or path.startswith(OPERATOR_PREFIXES):
        return Scope.OPERATOR
    if method == "POST" and path in SUBMIT_PATHS:
        return Scope.SUBMIT
    return Scope.READ


class Authenticator:
    """Turns a request's credentials into a Principal, or the 401/403 it deserves.

    An operator token (OPERATOR_TOKEN) is an operator; a key (X-API-Key or a Bearer) is looked
    up in storage (`KeyResolver`). Without credentials: 401 when keys are required, else the
    anonymous principal of local mode (tenant `default`, submit and read) — except on the admin
    API, which never opens without an operator's credentials.
    """

    def __init__(
        self, *, resolver: KeyResolver, operator_tokens: dict[str, str], keys_required: bool
    ) -> None:
        self.resolver = resolver
        self.operator_tokens = operator_tokens
        self.keys_required = keys_required

    async def authenticate(self, request: Request) -> Principal:
        """The caller of `request`, allowed to do what `required_scope` asks; else Unauthorized,
        Forbidden, or Unavailable when storage cannot look the key up."""
        path = request.scope["path"]
        needed = required_scope(request.method, path)
        principal = await self._principal(request, admin=path.startswith(ADMIN_PREFIX))
        if not principal.can(needed):
            raise Forbidden(f"this key lacks the {needed} scope", scope=needed.value)
        return principal

    async def _principal(self, request: Request, *, admin: bool) -> Principal:
        token = presented_operator_token(request)
        name = _operator_of(token, self.operator_tokens)
        if name is not None:
            return Principal.operator(name)
        key = presented_key(request)
        if key is not None:
            principal = await self.resolver.resolve_async(key)
            if principal is not None:
                return principal
        if admin:
            # No operator and no key of a known tenant: the admin API's own answers.
            operator_name(token, self.operator_tokens)
        if key is not None or token is not None:
            raise Unauthorized(
                f"wrong or revoked API key: send {API_KEY_HEADER} or Authorization: Bearer"
            )
        if self.keys_required:
            raise Unauthorized(f"missing API key: send {API_KEY_HEADER} or Authorization: Bearer")
        return Principal.anonymous()


class AuthMiddleware:
    """Pure ASGI: authenticates every /api/ request before the app reads its body (a request
    without valid credentials is answered 401/403 at once, whatever its body) and leaves its
    principal in `request.state.principal`. Every other request passes untouched."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.authenticator.authenticate(Request(scope))
        except CrucibleError as exc:
            await error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def install_auth(app: FastAPI, authenticator: Authenticator) -> None:
    """Authenticate every /api/ request (`AuthMiddleware`); the principal is then
    `request.state.principal`."""
    app.add_middleware(AuthMiddleware, authenticator=authenticator)


def _operator_of(given: str | None, tokens: dict[str, str]) -> str | None:
    """The name of the operator whose token `given` is (every token compared in constant time)."""
    found: str | None = None
    if given is None:
        return None
    for name, token in tokens.items():
        if hmac.compare_digest(given.encode(), token.encode()):
            found = name
    return found


def presented_operator_token(request: Request) -> str | None:
    """The token an operator sent, as `X-Operator-Token: <token>` or `Authorization: Bearer <token>`."""
    token = request.headers.get(OPERATOR_HEADER)
    if token and token.strip():
        return token.strip()
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def operator_name(given: str | None, tokens: dict[str, str]) -> str:
    """The name of the operator whose token `given` is.

    Raises Forbidden when no operator token is configured (the admin API is never open),
    Unauthorized when none was sent, Forbidden when it matches no configured token.
    """
    if not tokens:
        raise Forbidden("the admin API is disabled: OPERATOR_TOKEN is not configured")
    if given is None:
        raise Unauthorized(
            f"operator token required: send {OPERATOR_HEADER} or Authorization: Bearer"
        )
    found = _operator_of(given, tokens)
    if found is None:
        raise Forbidden("wrong operator token")
    return found
