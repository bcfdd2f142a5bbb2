"""Names shared across processes: Celery tasks and queues, Redis channels and keys, HTTP headers."""

from __future__ import annotations

from enum import StrEnum

TASK_EVALUATE = "tasks.evaluate_code"
TASK_HARD_LIMIT = "tasks.end_after_hard_time_limit"
# Records a give-up that Celery reported in a worker's main process (e.g. a hard time limit).
TASK_DEAD_LETTER = "tasks.dead_letter"

# Redis key (in the broker's Redis) of the dead-letter queue: see crucible_runtime.dead_letters.
DEAD_LETTER_KEY = "crucible:dead_letter"

INTERNAL_KEY_HEADER = "X-Internal-Key"

# Redis Stream (in the state Redis) to which storage appends every committed event, one entry
# per event, capped at about EVENTS_STREAM_MAXLEN entries: the gateway's live event streams read
# it, and a `Last-Event-ID` is one of its entry ids. The entry's fields are EVENT_ENTRY_FIELDS.
EVENTS_STREAM = "crucible:events"
# An entry's fields: the Event's JSON (`data`), and beside it the fields a reader filters on,
# so that it need not parse the JSON of an event it drops.
EVENT_ENTRY_FIELDS = ("eval_id", "event", "role", "status", "backend", "data")


class Queue(StrEnum):
    """Celery queues, in the order a worker drains them."""

    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"
    SHADOW = "shadow"


QUEUE_ORDER = (Queue.HIGH, Queue.DEFAULT, Queue.LOW, Queue.SHADOW)


class Backend(StrEnum):
    LEGACY = "legacy"
    CELERY = "celery"

    @property
    def other(self) -> Backend:
        return Backend.CELERY if self is Backend.LEGACY else Backend.LEGACY


class Role(StrEnum):
    """An evaluation has one primary run (what the client sees) and at most one shadow run."""

    PRIMARY = "primary"
    SHADOW = "shadow"


class EventName(StrEnum):
    CREATED = "eval.created"
    STATUS_CHANGED = "eval.status_changed"
    REROUTED = "eval.rerouted"
    RETRIED = "eval.retried"
    # An operator sent a run that ended `error` back to `queued` (storage's replay).
    REPLAYED = "eval.replayed"


def task_id_for(eval_id: str, role: Role | str) -> str:
    """The id of a run's task, `{eval_id}:{role}`, the same on both paths: the Celery task id
    (what a revoke names) and the queue-service's task id (`/tasks/{task_id}`)."""
    return f"{eval_id}:{Role(role).value}"
