"""Crucible's error tree and the one error body every service answers with.

    CrucibleError                   500 internal_error
    ├── InvalidInput                422 invalid_input      (names the field and the limit)
    ├── Unauthorized                401 unauthorized
    ├── Forbidden                   403 forbidden
    ├── NotFound                    404 not_found
    ├── Conflict                    409 conflict
    │   └── IllegalTransition       409 illegal_transition
    ├── Busy                        429 busy               (at capacity; carries Retry-After)
    │   └── RateLimited             429 rate_limited       (a tenant's request rate is spent)
    └── Unavailable                 503 unavailable        (a dependency cannot be reached)
        └── NoPathAvailable         503 no_path_available  (neither queue took the evaluation)

The body is always `{"error": {"code": ..., "message": ..., "details": {...}}}`.
"""

from __future__ import annotations

from typing import Any


class CrucibleError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(CrucibleError):
    status_code = 422
    code = "invalid_input"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(f"{field}: {message}", field=field, **details)
        self.field = field


class Unauthorized(CrucibleError):
    status_code = 401
    code = "unauthorized"


class Forbidden(CrucibleError):
    status_code = 403
    code = "forbidden"


class NotFound(CrucibleError):
    status_code = 404
    code = "not_found"


class Conflict(CrucibleError):
    status_code = 409
    code = "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class Busy(CrucibleError):
    status_code = 429
    code = "busy"

    def __init__(self, message: str, retry_after: float = 1, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class RateLimited(Busy):
    """The caller's tenant spent its request rate; `retry_after` says when one more may pass."""

    code = "rate_limited"


class Unavailable(CrucibleError):
    status_code = 503
    code = "unavailable"


class NoPathAvailable(Unavailable):
    code = "no_path_available"


BY_CODE: dict[str, type[CrucibleError]] = {
    cls.code: cls
    for cls in (
        CrucibleError,
        InvalidInput,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        IllegalTransition,
        Busy,
        RateLimited,
        Unavailable,
        NoPathAvailable,
    )
}
