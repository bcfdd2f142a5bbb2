"""What becomes of a run stuck in `queued` or `running`: decided from facts, no I/O.

A run is stuck when nobody will ever move it on: its path lost it (the legacy queue's deque lives
in memory and a restart empties it; a Celery message can be lost with the broker's data), or the
consumer that marked it `running` died. The decisions here take what `repair` found out and say
whether to leave the run alone, submit it again, or end it `error` with a reason. The paths'
differences arrive as facts (`Holding`, `may_redispatch`), never as a backend to branch on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from crucible_contracts.limits import celery_time_limits
from crucible_contracts.models import EvalTask, Event, StuckRun
from crucible_contracts.names import Backend, EventName, Role
from crucible_gateway.paths.base import Holding

# The `failure` of the retry record a re-dispatch leaves on the run (an `eval.retried` event):
# how the re-dispatches of one run are counted.
LOST_BY_QUEUE = "lost_by_queue"


class Action(StrEnum):
    """What became of one stuck run; also the label of its metric."""

    WAITING = "waiting"  # still on its way (or cannot be judged yet): left alone
    REDISPATCHED = "redispatched"
    ENDED_ERROR = "ended_error"
    CHANGED_MEANWHILE = "changed_meanwhile"  # it moved on by itself while being looked at
    FAILED = "failed"  # a service could not be reached; the next round tries again


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str  # logged; for ENDED_ERROR, the reason the run ends with


@dataclass(frozen=True)
class Rules:
    """The reconciler's deadlines (seconds) and its re-dispatch cap, from the settings."""

    # How long a run of each backend may wait in `queued` before its path is asked about it.
    queued_after: Mapping[Backend, float]
    running_grace: float
    max_redispatches: int

    def running_allowance(self, timeout: float) -> float:
        """How long a run of `timeout` seconds may go without a sign of life while running: its
        Celery hard time limit (timeout + margin; a retry runs under a hard limit of its own, from
        the retry on) and the grace."""
        return celery_time_limits(timeout)[1] + self.running_grace

    def running_before(self, now: datetime) -> datetime:
        """No run that started after this can be stuck yet, whatever its timeout."""
        return now - timedelta(seconds=self.running_allowance(0))


def decide_queued(
    run: StuckRun,
    *,
    holding: Holding,
    may_redispatch: bool,
    redispatches: int,
    now: datetime,
    rules: Rules,
) -> Decision:
    """A run queued past its backend's deadline, what its path says of it, and whether that path
    may be given a lost run again (`redispatches`: how often it was already).

    Held by its path: it is only waiting. Otherwise nobody will deliver it: it is submitted again,
    up to `max_redispatches` times, then ended `error`; on a path that may not be given it again
    (a copy may still be in a consumer's hands) it is ended `error` at once.
    """
    if holding.held:
        return Decision(Action.WAITING, holding.detail)
    if not may_redispatch:
        age = (now - run.queued_at).total_seconds()
        return Decision(
            Action.ENDED_ERROR,
            f"queued on the {run.backend} path for {age:.0f}s (deadline "
            f"{rules.queued_after[run.backend]:g}s) while {holding.detail}: its message was "
            "lost; not sent again, since a worker may still hold a copy",
        )
    if redispatches >= rules.max_redispatches:
        return Decision(
            Action.ENDED_ERROR,
            f"{holding.detail}, after it was enqueued again {redispatches} times "
            f"(limit {rules.max_redispatches}); given up by the reconciler",
        )
    return Decision(
        Action.REDISPATCHED,
        f"{holding.detail}; enqueued again ({redispatches + 1} of {rules.max_redispatches})",
    )


def decide_running(
    run: StuckRun, *, last_sign_of_life: datetime | None, now: datetime, rules: Rules
) -> Decision:
    """A run `running` since `run.started_at`; `last_sign_of_life` is its newest event (a retry
    scheduled, say). Past its allowance since the later of the two, its consumer is gone."""
    since = max(filter(None, (run.started_at, last_sign_of_life)), default=run.queued_at)
    quiet = (now - since).total_seconds()
    allowance = rules.running_allowance(run.program.timeout)
    if quiet <= allowance:
        return Decision(Action.WAITING, f"running, last heard of {quiet:.0f}s ago")
    return Decision(
        Action.ENDED_ERROR,
        f"running on the {run.backend} path without a sign of life for {quiet:.0f}s, past its "
        f"timeout of {run.program.timeout:g}s + the hard-limit margin + "
        f"{rules.running_grace:g}s grace: its consumer is gone; the reconciler stopped it",
    )


def redispatches_of(events: Iterable[Event], role: Role) -> int:
    """How often the reconciler already submitted this run again (from its retry records)."""
    return sum(
        1
        for event in events
        if event.role is role
        and event.event is EventName.RETRIED
        and event.detail.get("failure") == LOST_BY_QUEUE
    )


def last_sign_of_life(events: Iterable[Event], role: Role) -> datetime | None:
    """When the run of `role` was last heard of: its newest event."""
    return max((event.at for event in events if event.role is role), default=None)


def task_of(run: StuckRun) -> EvalTask:
    """The task to dispatch the run again, as the gateway first sent it."""
    return EvalTask(
        eval_id=run.eval_id,
        role=run.role,
        backend=run.backend,
        program=run.program,
        # The gateway never gives a shadow run priority.
        priority=run.priority and run.role is Role.PRIMARY,
    )
