"""Platform limits: one place for every bound on what a client may ask for and a program may use."""

from __future__ import annotations

from pydantic import BaseModel

KIB = 1024
MIB = 1024 * KIB


class Limits(BaseModel):
    """Defaults of DESIGN.md; each service reads its own copy from its settings and enforces it."""

    max_code_bytes: int = 64 * KIB
    max_stdin_bytes: int = 1 * MIB
    min_timeout: float = 1
    max_timeout: float = 300
    default_timeout: float = 30
    memory_mb: int = 256
    max_output_bytes: int = 1 * MIB
    max_batch: int = 100


# Structural bounds: what any service accepts at all, whatever its configured limits, so that no
# number a client or a peer sends can overflow a database column, a timedelta or a Redis index.
# Out of range is a 422 where it enters (docs/security.md).
MAX_OFFSET = 1_000_000_000  # any `offset` query parameter
MAX_PAGE = 500  # any `limit` of a page
MAX_AGE_SECONDS = 100 * 365 * 24 * 3600  # `older_than_seconds` and other look-backs: 100 years
MAX_WINDOW_SECONDS = 30 * 24 * 3600.0  # the guard's windows, a ramp's hold, a shadow's grace
MAX_PROGRAM_TIMEOUT = 24 * 3600.0  # a program's timeout in any internal model, seconds
MAX_MEMORY_MB = 1024 * 1024  # a program's memory_mb in any internal model: 1 TiB
MAX_LANGUAGE_CHARS = 32  # a language name (storage's column)
INT32_MAX = 2**31 - 1  # counters and exit codes (INTEGER columns)


def celery_time_limits(timeout: float) -> tuple[float, float]:
    """(soft, hard) Celery time limits for an evaluation whose program may run `timeout` seconds.

    The executor's own timer is the first line; these only catch a task stuck around it, so they
    leave room for the executor call, storage writes and one busy-executor back-off.
    """
    soft = timeout + 30
    return soft, soft + 15
