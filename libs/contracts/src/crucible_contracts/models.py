"""Wire models: the JSON that crosses process boundaries, shared by every service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from crucible_contracts.ids import EvalId
from crucible_contracts.limits import (
    INT32_MAX,
    MAX_LANGUAGE_CHARS,
    MAX_MEMORY_MB,
    MAX_PROGRAM_TIMEOUT,
)
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.output import Base64
from crucible_contracts.status import Status
from crucible_contracts.tenancy import DEFAULT_TENANT, TENANT_PATTERN

# A key or a name, kept in a text column: PostgreSQL's text refuses NUL (output and code are
# kept as bytes instead, see crucible_contracts.output).
NO_NUL = r"^[^\x00]*$"
_OUTPUT_BASE64 = "The exact bytes of `output`, base64, when they are not valid UTF-8; else null."
_ERROR_BASE64 = "The exact bytes of `error`, base64, when they are not valid UTF-8; else null."


def _iso_timestamp(value: Any) -> Any:
    """An ISO 8601 string (how JSON spells a datetime) as a datetime; anything else unchanged."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 date and time") from None
    return value


def _within_utc(value: datetime) -> datetime:
    """An aware datetime in UTC (naive ones unchanged); one that UTC cannot hold (0001-01-01 at
    +14:00 is in year 0) is refused here rather than overflowing in a database driver."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


# A datetime query parameter: any ISO 8601 FastAPI accepts, within what UTC can hold.
QueryTimestamp = Annotated[datetime, AfterValidator(_within_utc)]

# Strict mode (no "30" for 30, no "yes" for True) would also refuse an enum's value or an ISO 8601
# string in Python input, and most input is Python: FastAPI validates what `json.loads` returned,
# Celery kwargs and Redis entries arrive as dicts. These types accept exactly their JSON spelling
# (the enum's value, an ISO 8601 string) and nothing looser (not a number for a datetime).
Timestamp = Annotated[datetime, BeforeValidator(_iso_timestamp), AfterValidator(_within_utc)]
StatusValue = Annotated[Status, Strict(False)]
BackendValue = Annotated[Backend, Strict(False)]
RoleValue = Annotated[Role, Strict(False)]
EventValue = Annotated[EventName, Strict(False)]

# Structural bounds of the numbers and names every service stores or acts on (limits.py); the
# configured limits (a 1-300 s timeout, ...) are narrower and enforced where the work happens.
Language = Annotated[str, Field(min_length=1, max_length=MAX_LANGUAGE_CHARS, pattern=NO_NUL)]
ExecutorId = Annotated[str, Field(max_length=128, pattern=NO_NUL)]


def _nul_replaced(text: str) -> str:
    return text.replace("\x00", "\ufffd")


# Why a run ended as a service words it, kept in a text column: a NUL that came from a program
# (an exception's message quoting its output) is shown as U+FFFD rather than refusing the update
# that records the run's end.
Reason = Annotated[str, AfterValidator(_nul_replaced)]
Timeout = Annotated[float, Field(gt=0, le=MAX_PROGRAM_TIMEOUT, allow_inf_nan=False)]
MemoryMb = Annotated[int, Field(ge=1, le=MAX_MEMORY_MB)]
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
ExitCode = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
Millis = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


class StrictModel(BaseModel):
    """Base of every contract model: strict types, so no input is coerced into another type."""

    model_config = ConfigDict(strict=True)


class Wire(StrictModel):
    """Base of every wire model: unknown fields are refused, so a typo is an error, not a no-op.

    Every body a service receives types its `eval_id` as `EvalId` (32 lowercase hex digits), so
    a malformed id is refused where it enters. The views a service answers with keep `str`: they
    are built from ids already checked on the way in.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class UnicodeText(BaseModel):
    """Mixin of the internal bodies: JSON may spell a lone surrogate ("\\ud800"), which no
    database and no UTF-8 encoder takes; it is refused where it enters, naming the field, rather
    than failing where it is stored. (The public EvalRequest's text is checked by the gateway's
    validation, which names the limit.)"""

    @field_validator("*", mode="after")
    @classmethod
    def _text_is_unicode(cls, value: Any) -> Any:
        if not _is_unicode(value):
            raise ValueError("is not valid Unicode text (unpaired surrogate)")
        return value


def _is_unicode(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_is_unicode(key) and _is_unicode(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return all(_is_unicode(item) for item in value)
    return True


# --- the program of an evaluation -------------------------------------------------------------


class Program(Wire, UnicodeText):
    """What to run: the program of an evaluation, carried as `program` by the internal models.

    The public API (EvalRequest, EvaluationView) and the executor contract (ExecuteRequest) keep
    these fields flat, as DESIGN.md fixes them; they are built from or into a Program in one call.
    """

    code: str
    language: Language
    timeout: Timeout
    stdin: str | None = None
    memory_mb: MemoryMb | None = None

    @classmethod
    def of(cls, flat: BaseModel) -> Program:
        """The program a flat model (EvalRequest, EvaluationView) spells out beside its other fields."""
        return cls.model_validate(flat.model_dump(include=set(cls.model_fields)))


class CarriesProgram(StrictModel):
    """Base of the internal models that nest a `program: Program`; output is always nested.

    Messages already queued (Celery kwargs, legacy queue entries) and older services send the
    program's fields flat beside the others: those are lifted into `program` on input. A body that
    has `program` is left as it is, so flat fields beside it stay unknown fields (refused where
    the model forbids extras) rather than being merged or silently dropped.
    """

    @model_validator(mode="before")
    @classmethod
    def _lift_flat_program(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "program" in data:
            return data
        flat = {name: data[name] for name in Program.model_fields if name in data}
        if not flat:
            return data
        rest = {name: value for name, value in data.items() if name not in flat}
        return {**rest, "program": flat}


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
        pattern=NO_NUL,
        description="Keeps every evaluation with the same key on the same path (e.g. a user id).",
    )


class BatchRequest(Wire):
    evaluations: list[EvalRequest]


class Accepted(StrictModel):
    """`POST /api/eval` answer (202)."""

    eval_id: str
    status: StatusValue
    backend: BackendValue
    shadow_backend: BackendValue | None = None
    fallback_from: BackendValue | None = None
    created_at: Timestamp


class BatchAccepted(StrictModel):
    evaluations: list[Accepted]


# --- consumers: the task both paths carry ----------------------------------------------------


class EvalTask(Wire, CarriesProgram, UnicodeText):
    """One run to perform: what the gateway hands to the legacy queue or to Celery."""

    eval_id: EvalId
    role: RoleValue = Role.PRIMARY
    backend: BackendValue
    program: Program
    priority: bool = False


# --- executor ----------------------------------------------------------------------------------


class ExecuteRequest(Wire, UnicodeText):
    """`POST /execute` body: flat, as DESIGN.md fixes the executor contract."""

    eval_id: EvalId
    role: RoleValue = Role.PRIMARY
    code: str
    language: Language = "python"
    timeout: Timeout = 30
    stdin: str | None = None
    memory_mb: MemoryMb | None = None

    @classmethod
    def of(cls, *, eval_id: str, role: Role, program: Program) -> ExecuteRequest:
        return cls(eval_id=eval_id, role=role, **program.model_dump())


class ExecuteResult(StrictModel):
    """The executor's answer once the program has ended. `status` is never queued/running."""

    eval_id: str
    status: StatusValue
    exit_code: int | None = None
    output: str = ""
    error: str = ""
    output_base64: Base64 | None = Field(default=None, description=_OUTPUT_BASE64)
    error_base64: Base64 | None = Field(default=None, description=_ERROR_BASE64)
    output_truncated: bool = False
    error_truncated: bool = False
    runtime_ms: float = 0
    executor_id: str = ""
    reason: str | None = None


# --- storage -----------------------------------------------------------------------------------


class EvaluationCreate(Wire, CarriesProgram, UnicodeText):
    """`POST /evaluations` body (gateway → storage)."""

    eval_id: EvalId
    program: Program
    priority: bool = False
    backend: BackendValue
    routing_key: Annotated[str, Field(max_length=200, pattern=NO_NUL)] | None = None
    tenant: str = Field(default=DEFAULT_TENANT, pattern=TENANT_PATTERN)
    # The tenant's cap on evaluations queued or running; storage refuses (429) at the cap, checked
    # in the transaction that creates the evaluation. None: no cap.
    max_in_flight: int | None = Field(default=None, ge=1, le=INT32_MAX)
    shadow_backend: BackendValue | None = Field(
        default=None,
        description="The path of a shadow run, created queued with the primary one in the same "
        "transaction (one call for a shadowed submission); None: no shadow run. Never `backend`.",
    )

    @model_validator(mode="after")
    def _shadow_on_the_other_path(self) -> EvaluationCreate:
        if self.shadow_backend is not None and self.shadow_backend == self.backend:
            raise ValueError("shadow_backend must be the other path than backend")
        return self


class RunCreate(Wire, UnicodeText):
    """Adds a run beside the primary one (a shadow run)."""

    role: RoleValue
    backend: BackendValue


class RunUpdate(Wire, UnicodeText):
    """A consumer's report on a run. Fields left None are not changed.

    `status` moves the run through the state machine; a move that is not legal answers 409, and
    a report of the status the run already has is accepted and changes nothing.
    """

    status: StatusValue | None = None
    backend: BackendValue | None = None
    executor_id: ExecutorId | None = None
    exit_code: ExitCode | None = None
    output: str | None = None
    error: str | None = None
    output_base64: Base64 | None = Field(default=None, description=_OUTPUT_BASE64)
    error_base64: Base64 | None = Field(default=None, description=_ERROR_BASE64)
    output_truncated: bool | None = None
    error_truncated: bool | None = None
    runtime_ms: Millis | None = None
    reason: Reason | None = None
    attempts: Count | None = None
    detail: dict[str, Any] | None = Field(
        default=None, description="Recorded on the event timeline with this update."
    )


class RunView(StrictModel):
    role: RoleValue
    backend: BackendValue
    status: StatusValue
    attempts: int = 0
    executor_id: str | None = None
    exit_code: int | None = None
    output: str | None = None
    error: str | None = None
    output_base64: Base64 | None = Field(default=None, description=_OUTPUT_BASE64)
    error_base64: Base64 | None = Field(default=None, description=_ERROR_BASE64)
    output_truncated: bool = False
    error_truncated: bool = False
    runtime_ms: float | None = None
    reason: str | None = None
    replays: int = 0
    created_at: Timestamp
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None


class EvaluationView(StrictModel):
    """One evaluation as clients see it: the primary run's fields flattened, every run listed."""

    eval_id: str
    status: StatusValue
    backend: BackendValue
    tenant: str = DEFAULT_TENANT
    language: str
    code: str
    stdin: str | None = None
    timeout: float
    memory_mb: int | None = None
    priority: bool = False
    routing_key: str | None = None
    output: str | None = None
    error: str | None = None
    output_base64: Base64 | None = Field(default=None, description=_OUTPUT_BASE64)
    error_base64: Base64 | None = Field(default=None, description=_ERROR_BASE64)
    exit_code: int | None = None
    output_truncated: bool = False
    error_truncated: bool = False
    runtime_ms: float | None = None
    reason: str | None = None
    executor_id: str | None = None
    attempts: int = 0
    created_at: Timestamp
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    runs: list[RunView] = Field(default_factory=list)


class EvaluationPage(StrictModel):
    items: list[EvaluationView]
    total: int
    limit: int
    offset: int


class Event(StrictModel):
    """One entry on an evaluation's timeline; also what storage appends to EVENTS_STREAM."""

    eval_id: str
    event: EventValue
    role: RoleValue | None = None
    status: StatusValue | None = None
    backend: BackendValue | None = Field(
        default=None,
        description="As published: the backend of the run when the event was recorded (after "
        "a reroute, the new one). Null on the stored timeline.",
    )
    at: Timestamp
    detail: dict[str, Any] = Field(default_factory=dict)
    evaluation: EvaluationView | None = Field(
        default=None,
        description="On the event that ends the primary run, as published: the evaluation as "
        "that commit left it, so that a follower needs no read. Null on the stored timeline.",
    )


class Deleted(StrictModel):
    deleted: int


class StuckRun(CarriesProgram):
    """`GET /runs/stuck`: a run still `queued` or `running` past the caller's deadline, with what a
    reconciler needs to judge it and to dispatch it again.

    `queued_at` is when the run last entered `queued` (its creation, or its latest replay);
    `program` and `priority` are the evaluation's.
    """

    eval_id: str
    role: RoleValue
    backend: BackendValue
    status: StatusValue
    attempts: int = 0
    replays: int = 0
    created_at: Timestamp
    queued_at: Timestamp
    started_at: Timestamp | None = None
    program: Program
    priority: bool = False


# --- comparisons (shadow mode) and migration statistics ---------------------------------------


class ComparisonOutcome(StrEnum):
    """How a primary run and its shadow compared. "Failed" here means ended `error` (the platform
    could not run it); a user program's failure on both paths is an agreement, not a failure."""

    MATCH = "match"
    MATCH_AFTER_NORMALISATION = "match_after_normalisation"
    MISMATCH = "mismatch"
    PRIMARY_FAILED_ONLY = "primary_failed_only"
    SHADOW_FAILED_ONLY = "shadow_failed_only"
    BOTH_FAILED = "both_failed"
    SHADOW_MISSING = "shadow_missing"


class ComparisonRecord(Wire, UnicodeText):
    """`PUT /evaluations/{eval_id}/comparison` body: what the comparer found (recorded once).

    `differing_fields` names the compared fields that differ after normalisation (status,
    exit_code, stdout, stderr); `details` holds each run's backend, status and durations, the
    rules version applied and the fields that only normalisation made equal.
    """

    outcome: Annotated[ComparisonOutcome, Strict(False)]
    differing_fields: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class ComparisonView(StrictModel):
    eval_id: str
    outcome: Annotated[ComparisonOutcome, Strict(False)]
    differing_fields: list[str]
    details: dict[str, Any]
    created_at: Timestamp


class ComparisonPage(StrictModel):
    """`GET /comparisons`: recorded comparisons, the ones that did not agree first."""

    items: list[ComparisonView]
    total: int
    limit: int
    offset: int


class LatencySummary(StrictModel):
    """Nearest-rank percentiles of one duration, in milliseconds; None without samples."""

    count: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


class PathStats(StrictModel):
    """The runs one path (backend) took in a window, primary and shadow together."""

    backend: BackendValue
    total: int = 0
    terminal: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    by_role: dict[str, int] = Field(default_factory=dict)
    success_rate: float | None = Field(default=None, description="completed / terminal")
    error_rate: float | None = Field(default=None, description="error / terminal")
    queue_wait: LatencySummary = Field(default_factory=LatencySummary)  # created -> started
    run_time: LatencySummary = Field(default_factory=LatencySummary)  # started -> completed
    end_to_end: LatencySummary = Field(default_factory=LatencySummary)  # created -> completed


class ComparisonStats(StrictModel):
    total: int = 0
    by_outcome: dict[str, int] = Field(default_factory=dict)
    rates: dict[str, float] = Field(default_factory=dict)
    samples: list[ComparisonView] = Field(
        default_factory=list, description="A few of the newest comparisons that did not match."
    )


class MigrationStats(StrictModel):
    """`GET /stats`: runs created and comparisons recorded in [since, until)."""

    since: Timestamp
    until: Timestamp
    paths: dict[BackendValue, PathStats]
    comparisons: ComparisonStats


# --- dead letters (the entries both consumers park, the gateway's admin API serves) ---------------


def new_dead_letter_id() -> str:
    return uuid.uuid4().hex


class DeadLetter(StrictModel):
    """One given-up task: enough to understand why and to send it again.

    `eval_id`, `role` and `backend` are None only for a task whose arguments were too malformed to
    say which run it was. `kwargs` are the task's arguments as they were sent; `first_seen_at` is
    when the task was first received, when known.
    """

    id: str = Field(default_factory=new_dead_letter_id)
    eval_id: str | None = None
    role: RoleValue | None = None
    backend: BackendValue | None = None
    task_name: str
    task_id: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    reason: str
    exception_type: str | None = None
    exception: str | None = None
    traceback: str | None = None
    attempts: int = 0
    failed_at: Timestamp
    first_seen_at: Timestamp | None = None
    replays: int = 0


# --- the audit log of settings changes (the gateway writes it, storage keeps it) -----------------


def new_audit_id() -> str:
    return uuid.uuid4().hex


class AuditEntry(Wire, UnicodeText):
    """One change of a settings document: who, when, versions, what changed ([old, new]) and why.

    `audit_id` is chosen by the writer, so that an entry delivered twice is recorded once.
    `document` names the settings document that changed (the gateway's MIGRATION_KEY_PREFIX), so
    that deployments or tests sharing one storage keep their logs apart.
    """

    audit_id: str = Field(default_factory=new_audit_id, pattern=r"^[0-9a-f]{32}$")
    document: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    actor: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    at: Timestamp
    action: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    version_before: int = Field(ge=0, le=INT32_MAX)
    version_after: int = Field(ge=0, le=INT32_MAX)
    changes: dict[str, list[Any]] = Field(default_factory=dict)
    reason: str = Field(min_length=1, max_length=10_000, pattern=NO_NUL)
