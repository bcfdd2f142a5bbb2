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


def celery_time_limits(timeout: float) -> tuple[float, float]:
    """(soft, hard) Celery time limits for an evaluation whose program may run `timeout` seconds.

    The executor's own timer is the first line; these only catch a task stuck around it, so they
    leave room for the executor call, storage writes and one busy-executor back-off.
    """
    soft = timeout + 30
    return soft, soft + 15
