"""Client authentication of the public API: API keys from API_KEYS, checked on every /api/* call."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import Response

from crucible_contracts.errors import Unauthorized
from crucible_contracts.web import error_response

PROTECTED_PREFIX = "/api/"
API_KEY_HEADER = "X-API-Key"


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
        if request.url.path.startswith(PROTECTED_PREFIX) and not key_is_valid(
            presented_key(request), keys
        ):
            error = Unauthorized(
                f"missing or wrong API key: send {API_KEY_HEADER} or Authorization: Bearer"
            )
            return error_response(error)
        return await call_next(request)
