"""The run state machine, decided in one place: what a RunUpdate may change on a run as it stands.

`plan_update` is pure: given the run as read and the update, it answers what to write and which
events to record, or raises. The repository then applies the plan with a compare-and-set on the
status it was planned against, so a plan made from a stale read is never applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crucible_contracts.errors import Conflict, IllegalTransition
from crucible_contracts.models import RunUpdate
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status

# RunUpdate fields copied to the run as given (when not None); the others have rules of their own.
PLAIN_FIELDS = (
    "executor_id",
    "exit_code",
    "output",
    "error",
    "output_base64",
    "error_base64",
    "output_truncated",
    "error_truncated",
    "runtime_ms",
    "reason",
)

# What a replay resets: a queued run carries no result.
RESULT_CLEARED: dict[str, Any] = {
    "executor_id": None,
    "exit_code": None,
    "output": None,
    "error": None,
    "output_base64": None,
    "error_base64": None,
    "output_truncated": False,
    "error_truncated": False,
    "runtime_ms": None,
    "started_at": None,
    "completed_at": None,
}


@dataclass(frozen=True)
class RunState:
    """What the decision needs to know about a run as it was read."""

    eval_id: str
    role: Role
    status: Status
    backend: Backend
    attempts: int
    replays: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class PlannedEvent:
    event: EventName
    status: Status
    detail: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What to write on the run (`values`, status included when it changes) and what to record.

    `attempts` is applied as "at least this many", so concurrent reports can only make it grow.
    An empty plan means the update is accepted and changes nothing.
    """

    expected_status: Status
    values: dict[str, Any] = field(default_factory=dict)
    attempts: int | None = None
    events: tuple[PlannedEvent, ...] = ()

    @property
    def is_noop(self) -> bool:
        return not self.values and self.attempts is None and not self.events


def plan_update(run: RunState, update: RunUpdate, *, now: datetime) -> Plan:
    """Decide what `update` does to `run`.

    - A legal status change applies together with every other field given; `started_at` is set on
      → running and `completed_at` on → a terminal status, from `now`.
    - Reporting the status the run already has changes no status and records no status event; the
      other fields apply only while the run has not ended.
    - Anything that would change an ended run, or a move the transition table does not allow,
      raises IllegalTransition with the current status in its details.
    - `backend` may change only while queued (a fallback reroute); `attempts` only grows.
    """
    current, target = run.status, update.status
    transition = target if target is not None and target != current else None
    if transition is not None and not current.can_become(transition):
        raise _illegal(run, f"cannot go from {current} to {transition}", requested=transition)
    if transition is None and current.is_terminal():
        if target is None and _changes_something(update):
            raise _illegal(run, f"has already ended ({current}); it cannot change")
        return Plan(expected_status=current)

    detail = dict(update.detail or {})
    values: dict[str, Any] = {
        name: getattr(update, name) for name in PLAIN_FIELDS if getattr(update, name) is not None
    }
    events: list[PlannedEvent] = []
    if update.backend is not None and update.backend != run.backend:
        if current is not Status.QUEUED:
            raise Conflict(
                f"run {run.role} of {run.eval_id} is {current}: its backend can change only "
                "while queued",
                eval_id=run.eval_id,
                role=run.role.value,
                current=current.value,
            )
        values["backend"] = update.backend
        reroute = {"from": run.backend.value, "to": update.backend.value}
        events.append(PlannedEvent(EventName.REROUTED, current, {**reroute, **detail}))

    attempts = update.attempts if (update.attempts or 0) > run.attempts else None
    if transition is not None:
        values["status"] = transition
        if transition is Status.RUNNING:
            values["started_at"] = now
        if transition.is_terminal():
            values["completed_at"] = now
        events.append(
            PlannedEvent(EventName.STATUS_CHANGED, transition, {**_summary(run, update), **detail})
        )
    elif attempts is not None:
        events.append(PlannedEvent(EventName.RETRIED, current, {"attempts": attempts, **detail}))
    return Plan(expected_status=current, values=values, attempts=attempts, events=tuple(events))


def plan_replay(run: RunState, *, max_replays: int, now: datetime) -> Plan:
    """Send a run that ended `error` back to `queued`: the one way out of a terminal state.

    It is an operator's explicit act (replaying a dead letter), never a consumer's report, so it
    is not a transition of the table. The result fields are cleared, `started_at` and
    `completed_at` too, `queued_at` becomes `now`; `attempts` is kept, so the next attempt
    continues the count; `replays` grows by one and `reason` says it was replayed and why it had
    ended. Raises IllegalTransition unless the run is `error`, Conflict once it has been replayed
    `max_replays` times.
    """
    if run.status is not Status.ERROR:
        raise _illegal(run, f"is {run.status}: only a run that ended error can be replayed")
    if run.replays >= max_replays:
        raise Conflict(
            f"run {run.role} of {run.eval_id} was replayed {run.replays} times already "
            f"(limit {max_replays})",
            eval_id=run.eval_id,
            role=run.role.value,
            replays=run.replays,
            max_replays=max_replays,
        )
    replays = run.replays + 1
    values: dict[str, Any] = {
        **RESULT_CLEARED,
        "status": Status.QUEUED,
        "replays": replays,
        "reason": f"replayed ({replays} of {max_replays}) after it ended error: {run.reason}",
        "queued_at": now,
    }
    detail = {
        "backend": run.backend.value,
        "replays": replays,
        "max_replays": max_replays,
        "attempts": run.attempts,
        "previous_reason": run.reason,
    }
    event = PlannedEvent(EventName.REPLAYED, Status.QUEUED, detail)
    return Plan(expected_status=Status.ERROR, values=values, events=(event,))


def _summary(run: RunState, update: RunUpdate) -> dict[str, Any]:
    """The facts a follower of the event stream wants without fetching the evaluation."""
    summary: dict[str, Any] = {"backend": (update.backend or run.backend).value}
    for name in ("executor_id", "exit_code", "runtime_ms", "reason", "attempts"):
        if getattr(update, name) is not None:
            summary[name] = getattr(update, name)
    return summary


def _changes_something(update: RunUpdate) -> bool:
    return any(getattr(update, name) is not None for name in (*PLAIN_FIELDS, "backend", "attempts"))


def _illegal(run: RunState, what: str, **details: Any) -> IllegalTransition:
    plain = {key: getattr(value, "value", value) for key, value in details.items()}
    return IllegalTransition(
        f"run {run.role} of {run.eval_id} {what}",
        eval_id=run.eval_id,
        role=run.role.value,
        current=run.status.value,
        **plain,
    )
