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

from crucible_contracts.models import EvalTask, Event, StuckRun
from crucible_contracts.names import Backend, EventName, Role
from crucible_gateway.paths.base import Holding

# The `failure` of the retry record a re-dispatch leaves on the run (an `eval.retried` event):
# how the re-dispatches of one run are counted. A queued run its path lost, a running run whose
# consumer is gone (its lease ran out).
LOST_BY_QUEUE = "lost_by_queue"
CONSUMER_LOST = "consumer_lost"
REDISPATCH_FAILURES = frozenset({LOST_BY_QUEUE, CONSUMER_LOST})


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

    def running_lease(self, timeout: float) -> float:
        """How long a running run may go without a sign of life: its own timeout (the executor
        ends the program by then) and the grace (sandbox start, recording the result). A
        consumer renews it with every attempt and retry it records; once it runs out the
        consumer is taken for gone. Taking a live one for gone costs nothing but a message: the
        copy sent again joins the run at its executor or collects its result."""
        return timeout + self.running_grace

    def running_before(self, now: datetime) -> datetime:
        """No run that started after this can be stuck yet, whatever its timeout."""
        return now - timedelta(seconds=self.running_lease(0))


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
    run: StuckRun,
    *,
    last_sign_of_life: datetime | None,
    holding: Holding,
    may_redispatch: bool,
    redispatches: int,
    now: datetime,
    rules: Rules,
) -> Decision:
    """A run `running` since `run.started_at`; `last_sign_of_life` is its newest event (a retry
    scheduled, say). Within its lease (`Rules.running_lease`) since the later of the two, it is
    running. Past it, its consumer is gone: the run is recovered by sending it again (the new
    copy collects the result from the executor that ran it, or runs the program again when
    that executor lost it), unless its path still holds a copy that will come (a queue lease
    not yet run out); after `max_redispatches` it ends `error`.
    """
    quiet = silent_for(run, last_sign_of_life=last_sign_of_life, now=now)
    lease = rules.running_lease(run.program.timeout)
    if quiet <= lease:
        return Decision(Action.WAITING, f"running, last heard of {quiet:.0f}s ago")
    silent = (
        f"running on the {run.backend} path without a sign of life for {quiet:.0f}s, past its "
        f"lease of {lease:g}s (timeout {run.program.timeout:g}s + {rules.running_grace:g}s "
        "grace): its consumer is gone"
    )
    if holding.held:
        return Decision(Action.WAITING, f"{silent}, but {holding.detail}")
    if not may_redispatch:
        return Decision(Action.ENDED_ERROR, f"{silent}; ended by the reconciler")
    if redispatches >= rules.max_redispatches:
        return Decision(
            Action.ENDED_ERROR,
            f"{silent}, after it was sent again {redispatches} times "
            f"(limit {rules.max_redispatches}); given up by the reconciler",
        )
    return Decision(
        Action.REDISPATCHED,
        f"{silent}; sent again to collect its result ({redispatches + 1} of "
        f"{rules.max_redispatches})",
    )


def silent_for(run: StuckRun, *, last_sign_of_life: datetime | None, now: datetime) -> float:
    """Seconds since the running run was last heard of: its start or its newest event."""
    since = max(filter(None, (run.started_at, last_sign_of_life)), default=run.queued_at)
    return (now - since).total_seconds()


def lease_ran_out(
    run: StuckRun, *, last_sign_of_life: datetime | None, now: datetime, rules: Rules
) -> bool:
    return silent_for(run, last_sign_of_life=last_sign_of_life, now=now) > rules.running_lease(
        run.program.timeout
    )


def redispatches_of(events: Iterable[Event], role: Role) -> int:
    """How often the reconciler already submitted this run again (from its retry records)."""
    return sum(
        1
        for event in events
        if event.role is role
        and event.event is EventName.RETRIED
        and event.detail.get("failure") in REDISPATCH_FAILURES
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
