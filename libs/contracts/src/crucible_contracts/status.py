"""The status of an evaluation run and the one table of legal transitions between statuses."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ERROR = "error"

    def is_terminal(self) -> bool:
        return self in TERMINAL

    def can_become(self, new: Status) -> bool:
        """True when moving from this status to `new` is a legal, state-changing transition."""
        return new in TRANSITIONS[self]


TERMINAL = frozenset(
    {Status.COMPLETED, Status.FAILED, Status.TIMEOUT, Status.CANCELLED, Status.ERROR}
)

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED, Status.ERROR}),
    Status.RUNNING: frozenset(
        {Status.COMPLETED, Status.FAILED, Status.TIMEOUT, Status.CANCELLED, Status.ERROR}
    ),
    **{status: frozenset() for status in TERMINAL},
}


def predecessors(new: Status) -> frozenset[Status]:
    """Every status from which `new` can legally be reached."""
    return frozenset(old for old, targets in TRANSITIONS.items() if new in targets)
