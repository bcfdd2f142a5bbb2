"""Crucible's error tree and the one error body every service answers with.

    CrucibleError                   500 internal_error
    ├── InvalidInput                422 invalid_input      (names the field and the limit)
    ├── MalformedRequest            400 malformed_request  (not HTTP the server can parse)
    ├── Unauthorized                401 unauthorized
    ├── Forbidden                   403 forbidden
    ├── NotFound                    404 not_found
    ├── Conflict                    409 conflict
    │   └── IllegalTransition       409 illegal_transition
    ├── RequestTimeout              408 request_timeout    (a request not sent in time)
    ├── PayloadTooLarge             413 payload_too_large  (a body over the service's cap)
    ├── HeaderTooLarge              431 header_too_large   (a request head over the cap)
    ├── Busy                        429 busy               (at capacity; carries Retry-After)
    │   └── RateLimited             429 rate_limited       (a tenant's request rate is spent)
    └── Unavailable                 503 unavailable        (a dependency cannot be reached)
        └── NoPathAvailable         503 no_path_available  (neither queue took the evaluation)

The body is always `{"error": {"code": ..., "message": ..., "details": {...}}}`. What a client
sent is echoed only through `echo` (cut to MAX_ECHO characters, with a marker), and every body is
bounded again where it is built (`body`), so a megabyte field never comes back as a megabyte error.
"""

from __future__ import annotations

from typing import Any

# The most characters of client input an error body repeats, and the most of any message.
MAX_ECHO = 200
MAX_MESSAGE = 1000
MAX_ITEMS = 20
TRUNCATED = "...[truncated]"


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """`value` as text fit to repeat in an error: at most `limit` characters, then a marker."""
    text = value if isinstance(value, str) else repr(value)
    text = text if len(text) <= limit else f"{text[:limit]}{TRUNCATED}"
    # A lone surrogate (JSON may spell one) cannot be encoded into the answer: show it escaped.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Complete(tuple):
    """A list a service built itself, whose every item the client needs (the eval_ids a batch
    created before it stopped): `bounded` passes it in full, however long."""


def bounded(value: Any, limit: int = MAX_ECHO) -> Any:
    """`value` (JSON-like) with every string cut by `echo` and every list or dict to MAX_ITEMS,
    but a Complete list, which is kept whole."""
    if isinstance(value, Complete):
        return list(value)
    if isinstance(value, str):
        return echo(value, limit)
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        return {echo(str(key), limit): bounded(item, limit) for key, item in items}
    if isinstance(value, list | tuple):
        return [bounded(item, limit) for item in value[:MAX_ITEMS]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return echo(value, limit)


class CrucibleError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": echo(self.message, MAX_MESSAGE),
                "details": bounded(self.details),
            }
        }


class InvalidInput(CrucibleError):
    status_code = 422
    code = "invalid_input"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(f"{field}: {message}", field=field, **details)
        self.field = field


class MalformedRequest(CrucibleError):
    status_code = 400
    code = "malformed_request"


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


class RequestTimeout(CrucibleError):
    status_code = 408
    code = "request_timeout"


class PayloadTooLarge(CrucibleError):
    status_code = 413
    code = "payload_too_large"


class HeaderTooLarge(CrucibleError):
    status_code = 431
    code = "header_too_large"


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
        MalformedRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        IllegalTransition,
        RequestTimeout,
        PayloadTooLarge,
        HeaderTooLarge,
        Busy,
        RateLimited,
        Unavailable,
        NoPathAvailable,
    )
}
