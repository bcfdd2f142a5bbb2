"""What the reconciler does with a run stuck in `queued` or `running`: decided from facts, no I/O.

A run is stuck when nobody will ever move it on: the legacy queue lost it (its deque lives in
memory and a restart empties it), a Celery message was lost, or the consumer that marked it
`running` died. The decisions here take what the reconciler found out (reconciler.py) and say
whether to leave the run alone, enqueue it again, or end it `error` with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from crucible_contracts.limits import celery_time_limits
from crucible_contracts.models import EvalTask, Event, StuckRun
from crucible_contracts.names import Backend, EventName, Role

# The `failure` of the retry record a re-dispatch leaves on the run (an `eval.retried` event):
# how the reconciler counts the re-dispatches of one run.
LOST_BY_QUEUE = "lost_by_queue"
# States of the queue-service's GET /tasks/{task_id} in which the run is still on its way.
WAITING_STATES = frozenset({"queued", "processing"})


class Action(StrEnum):
    """What became of one stuck run; also the keys of the task's counts."""

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

    legacy_queued_after: float
    celery_queued_after: float
    running_grace: float
    max_redispatches: int

    def queued_after(self, backend: Backend) -> float:
        return self.legacy_queued_after if backend is Backend.LEGACY else self.celery_queued_after

    def running_allowance(self, timeout: float) -> float:
        """How long a run of `timeout` seconds may go without a sign of life while running: its
        Celery hard time limit (timeout + margin; a retry runs under a hard limit of its own, from
        the retry on) and the grace."""
        return celery_time_limits(timeout)[1] + self.running_grace

    def running_before(self, now: datetime) -> datetime:
        """No run that started after this can be stuck yet, whatever its timeout."""
        return now - timedelta(seconds=self.running_allowance(0))


def decide_legacy_queued(
    run: StuckRun, *, queue_state: str | None, redispatches: int, rules: Rules
) -> Decision:
    """A legacy run queued past its deadline, and the state its queue-service reports for it
    (None: unknown there, i.e. lost in a restart).

    Still queued or processing there: it is only waiting. Otherwise nobody will deliver it: it is
    enqueued again, up to `max_redispatches` times, then ended `error`.
    """
    if queue_state in WAITING_STATES:
        return Decision(Action.WAITING, f"the legacy queue still holds it ({queue_state})")
    lost = (
        "the legacy queue no longer holds it"
        if queue_state is None
        else (f"the legacy queue let go of it ({queue_state}) but it never started")
    )
    if redispatches >= rules.max_redispatches:
        return Decision(
            Action.ENDED_ERROR,
            f"{lost}, after it was enqueued again {redispatches} times "
            f"(limit {rules.max_redispatches}); given up by the reconciler",
        )
    return Decision(
        Action.REDISPATCHED,
        f"{lost} (lost in a restart?); enqueued again "
        f"({redispatches + 1} of {rules.max_redispatches})",
    )


def decide_celery_queued(
    run: StuckRun, *, waiting_messages: int | None, now: datetime, rules: Rules
) -> Decision:
    """A Celery run queued past its (long) deadline, and how many messages the broker's
    evaluation queues hold (None: the broker could not say).

    While messages wait, the run may be one of them: a lost message cannot be told from a waiting
    one without reading whole queues, so it is left alone. With the queues empty its message is
    gone; the run ends `error` rather than being sent again, since a worker may still hold an
    unacknowledged copy (a retry waiting out its countdown) that would then run beside it.
    """
    if waiting_messages is None:
        return Decision(Action.WAITING, "the broker could not be asked about its queues")
    if waiting_messages:
        return Decision(
            Action.WAITING, f"{waiting_messages} messages still wait in the Celery queues"
        )
    age = (now - run.queued_at).total_seconds()
    return Decision(
        Action.ENDED_ERROR,
        f"queued on Celery for {age:.0f}s (deadline {rules.celery_queued_after:g}s) while no "
        "Celery queue holds a message any more: its message was lost; not sent again, since "
        "a worker may still hold a copy",
    )


def decide_running(
    run: StuckRun, *, last_sign_of_life: datetime | None, now: datetime, rules: Rules
) -> Decision:
    """A run `running` since `run.started_at`; `last_sign_of_life` is its newest event (a retry
    scheduled, say). Past its allowance since the later of the two, its consumer is gone."""
    since = max(filter(None, (run.started_at, last_sign_of_life)), default=run.queued_at)
    quiet = (now - since).total_seconds()
    allowance = rules.running_allowance(run.timeout)
    if quiet <= allowance:
        return Decision(Action.WAITING, f"running, last heard of {quiet:.0f}s ago")
    return Decision(
        Action.ENDED_ERROR,
        f"running on the {run.backend} path without a sign of life for {quiet:.0f}s, past its "
        f"timeout of {run.timeout:g}s + the hard-limit margin + "
        f"{rules.running_grace:g}s grace: its consumer is gone; the reconciler stopped it",
    )


def redispatches_of(events: Iterable[Event], role: Role) -> int:
    """How often the reconciler already enqueued this run again (from its retry records)."""
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
        code=run.code,
        language=run.language,
        timeout=run.timeout,
        stdin=run.stdin,
        memory_mb=run.memory_mb,
        # The gateway never gives a shadow run priority.
        priority=run.priority and run.role is Role.PRIMARY,
    )
