"""Authentication: client API keys (API_KEYS) on /api/*, operator tokens (OPERATOR_TOKEN) on /api/admin/*."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import Response

from crucible_contracts.errors import Forbidden, Unauthorized
from crucible_runtime.web import error_response

PROTECTED_PREFIX = "/api/"
# The admin API authenticates operators with their own token (which may come as a Bearer too).
ADMIN_PREFIX = "/api/admin/"
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


def key_is_valid(given: str | None, keys: Sequence[str]) -> bool:
    """Constant-time comparison against every configured key (no early exit on a match)."""
    if given is None:
        return False
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key.encode())
    return matched


def install_api_keys(app: FastAPI, keys: Sequence[str]) -> None:
    """With keys configured, /api/* answers 401 without a valid one; with none, the API is open."""
    if not keys:
        return
    keys = tuple(keys)

    @app.middleware("http")
    async def _check_api_key(request: Request, call_next: Callable) -> Response:
        path = request.url.path
        if (
            path.startswith(PROTECTED_PREFIX)
            and not path.startswith(ADMIN_PREFIX)
            and not key_is_valid(presented_key(request), keys)
        ):
            error = Unauthorized(
                f"missing or wrong API key: send {API_KEY_HEADER} or Authorization: Bearer"
            )
            return error_response(error)
        return await call_next(request)


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
    found: str | None = None
    for name, token in tokens.items():
        if hmac.compare_digest(given.encode(), token.encode()):
            found = name
    if found is None:
        raise Forbidden("wrong operator token")
    return found
