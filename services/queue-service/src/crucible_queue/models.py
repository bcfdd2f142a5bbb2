"""The queue-service's HTTP bodies: contract models around the EvalTask, never the legacy record."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from crucible_contracts.models import EvalTask, UnicodeText, Wire


class TaskState(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Enqueued(BaseModel):
    """`POST /tasks` answer. `position` counts the tasks ahead (0: delivered next)."""

    task_id: str
    position: int
    queued: int


class Lease(BaseModel):
    """`GET /tasks/next` answer. `attempts` is this delivery's number, the first being 1.

    The task goes back to the queue `lease_seconds` after the lease (or its last renewal) unless
    it is acked: its consumer renews it (`POST /tasks/{task_id}/renew`) while it works on it."""

    task_id: str
    task: EvalTask
    attempts: int
    lease_seconds: float


class FailBody(Wire, UnicodeText):
    reason: str = Field(min_length=1, max_length=2000)


class RequeueBody(Wire, UnicodeText):
    """Give a task back. `count_attempt=False` (a clean shutdown) keeps its delivery count."""

    reason: str = Field(default="given back by the worker", max_length=2000)
    count_attempt: bool = False


class TaskView(BaseModel):
    task_id: str
    state: TaskState
    attempts: int
    position: int | None = None
    enqueued_at: float | None = None
    finished_at: float | None = None
    reason: str | None = None


class Acked(BaseModel):
    task_id: str
    state: TaskState


class QueueStatus(BaseModel):
    queued: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    enqueued_total: int
    requeued_total: int
    lease_expired_total: int
    oldest_queued_age_s: float | None
    lease_seconds: float
    # Consumers waiting in a long poll (GET /tasks/next?wait=) for a task at this moment.
    waiting_consumers: int = 0
