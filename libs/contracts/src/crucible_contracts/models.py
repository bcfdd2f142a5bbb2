"""Wire models: the JSON that crosses process boundaries, shared by every service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status


class Wire(BaseModel):
    """Base of every wire model: unknown fields are refused, so a typo is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


# --- public API (gateway) -------------------------------------------------------------------


class EvalRequest(Wire):
    """`POST /api/eval` body. Types are checked here; limits by `crucible_contracts.limits`."""

    code: str
    language: str = "python"
    timeout: float | None = None
    priority: bool = False
    stdin: str | None = None
    routing_key: str | None = Field(
        default=None,
        max_length=200,
        description="Keeps every evaluation with the same key on the same path (e.g. a user id).",
    )


class BatchRequest(Wire):
    evaluations: list[EvalRequest]


class Accepted(BaseModel):
    """`POST /api/eval` answer (202)."""

    eval_id: str
    status: Status
    backend: Backend
    shadow_backend: Backend | None = None
    fallback_from: Backend | None = None
    created_at: datetime


class BatchAccepted(BaseModel):
    evaluations: list[Accepted]


# --- consumers: the task both paths carry ----------------------------------------------------


class EvalTask(Wire):
    """One run to perform: what the gateway hands to the legacy queue or to Celery."""

    eval_id: str
    role: Role = Role.PRIMARY
    backend: Backend
    code: str
    language: str
    timeout: float
    stdin: str | None = None
    memory_mb: int | None = None
    priority: bool = False


# --- executor ----------------------------------------------------------------------------------


class ExecuteRequest(Wire):
    eval_id: str
    role: Role = Role.PRIMARY
    code: str
    language: str = "python"
    timeout: float = 30
    stdin: str | None = None
    memory_mb: int | None = None


class ExecuteResult(BaseModel):
    """The executor's answer once the program has ended. `status` is never queued/running."""

    eval_id: str
    status: Status
    exit_code: int | None = None
    output: str = ""
    error: str = ""
    output_truncated: bool = False
    error_truncated: bool = False
    runtime_ms: float = 0
    executor_id: str = ""
    reason: str | None = None


# --- storage -----------------------------------------------------------------------------------


class EvaluationCreate(Wire):
    eval_id: str
    code: str
    language: str
    timeout: float
    stdin: str | None = None
    memory_mb: int | None = None
    priority: bool = False
    backend: Backend
    routing_key: str | None = None


class RunCreate(Wire):
    """Adds a run beside the primary one (a shadow run)."""

    role: Role
    backend: Backend


class RunUpdate(Wire):
    """A consumer's report on a run. Fields left None are not changed.

    `status` moves the run through the state machine; a move that is not legal answers 409, and
    a report of the status the run already has is accepted and changes nothing.
    """

    status: Status | None = None
    backend: Backend | None = None
    executor_id: str | None = None
    exit_code: int | None = None
    output: str | None = None
    error: str | None = None
    output_truncated: bool | None = None
    error_truncated: bool | None = None
    runtime_ms: float | None = None
    reason: str | None = None
    attempts: int | None = None
    detail: dict[str, Any] | None = Field(
        default=None, description="Recorded on the event timeline with this update."
    )


class RunView(BaseModel):
    role: Role
    backend: Backend
    status: Status
    attempts: int = 0
    executor_id: str | None = None
    exit_code: int | None = None
    output: str | None = None
    error: str | None = None
    output_truncated: bool = False
    error_truncated: bool = False
    runtime_ms: float | None = None
    reason: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None


class EvaluationView(BaseModel):
    """One evaluation as clients see it: the primary run's fields flattened, every run listed."""

    eval_id: str
    status: Status
    backend: Backend
    language: str
    code: str
    stdin: str | None = None
    timeout: float
    memory_mb: int | None = None
    priority: bool = False
    routing_key: str | None = None
    output: str | None = None
    error: str | None = None
    exit_code: int | None = None
    output_truncated: bool = False
    error_truncated: bool = False
    runtime_ms: float | None = None
    reason: str | None = None
    executor_id: str | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    runs: list[RunView] = Field(default_factory=list)


class EvaluationPage(BaseModel):
    items: list[EvaluationView]
    total: int
    limit: int
    offset: int


class Event(BaseModel):
    """One entry on an evaluation's timeline; also what storage publishes on EVENTS_CHANNEL."""

    eval_id: str
    event: EventName
    role: Role | None = None
    status: Status | None = None
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class Deleted(BaseModel):
    deleted: int
