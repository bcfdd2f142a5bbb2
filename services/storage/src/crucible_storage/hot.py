"""Storage's hot path in SQLAlchemy Core: the statements that create an evaluation, report on a run,
record events and read an evaluation, on rows rather than ORM objects.

Every Celery evaluation makes these calls, so they skip the ORM's unit of work and identity map;
the columns' types (UTC datetimes, UTF-8 and base64 bytes, enums) still apply, since the
statements are built on the ORM's own tables. Nothing here commits: the caller's transaction does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, Update, bindparam, case, insert, select, update
from sqlalchemy.orm import Session

from crucible_contracts.models import EvaluationCreate, Event
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_storage.tables import Evaluation, EventRecord, Run
from crucible_storage.transitions import RESULT_CLEARED, PlannedEvent, RunState

# What the hot operations run on: the routes' plain Connection, or a Session (tests, tools).
SessionLike = Session | Connection

EVALUATIONS = Evaluation.__table__
RUNS = Run.__table__
EVENTS = EventRecord.__table__

_RUN_PREFIX = "run__"

_RUN_KEY = (RUNS.c.eval_id == bindparam("eval_id")) & (RUNS.c.role == bindparam("role"))
_SELECT_RUN = select(RUNS).where(_RUN_KEY)
# What the state machine decides on (RunState's fields): the other columns (the output among
# them) would be fetched and converted for nothing.
_SELECT_RUN_STATE = select(*(RUNS.c[field.name] for field in fields(RunState))).where(_RUN_KEY)
_EVALUATION_EXISTS = select(EVALUATIONS.c.eval_id).where(
    EVALUATIONS.c.eval_id == bindparam("eval_id")
)
# The evaluation and its runs in one statement: one row per run (a LEFT JOIN, so that an
# evaluation without runs, which the API never makes, still reads as existing).
_SELECT_EVALUATION = (
    select(*EVALUATIONS.c, *(column.label(_RUN_PREFIX + column.name) for column in RUNS.c))
    .select_from(EVALUATIONS.outerjoin(RUNS, RUNS.c.eval_id == EVALUATIONS.c.eval_id))
    .where(EVALUATIONS.c.eval_id == bindparam("eval_id"))
)
_INSERT_EVALUATION = insert(EVALUATIONS)
_INSERT_RUN = insert(RUNS)
_INSERT_EVENT = insert(EVENTS)


def connection_of(session: SessionLike) -> Connection:
    """The Connection of `session` (itself when it is one), in its transaction."""
    return session if isinstance(session, Connection) else session.connection()


def insert_evaluation(
    connection: Connection, *, create: EvaluationCreate, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Insert the evaluation and its primary run (queued on `create.backend`): (its row, its
    run's row), as the database now holds them. IntegrityError when the eval_id exists."""
    evaluation = {
        "eval_id": create.eval_id,
        **create.program.model_dump(),
        "priority": create.priority,
        "routing_key": create.routing_key,
        "tenant": create.tenant,
        "created_at": now,
    }
    connection.execute(_INSERT_EVALUATION, evaluation)
    run = insert_run(
        connection, eval_id=create.eval_id, role=Role.PRIMARY, backend=create.backend, now=now
    )
    return evaluation, run


def insert_run(
    connection: Connection, *, eval_id: str, role: Role, backend: Backend, now: datetime
) -> dict[str, Any]:
    """Insert a queued run; its row as the database now holds it."""
    run = {
        "eval_id": eval_id,
        "role": role,
        "backend": backend,
        "status": Status.QUEUED,
        "attempts": 0,
        **RESULT_CLEARED,
        "reason": None,
        "replays": 0,
        "created_at": now,
        "queued_at": now,
    }
    connection.execute(_INSERT_RUN, run)
    return run


def evaluation_exists(connection: Connection, *, eval_id: str) -> bool:
    return connection.execute(_EVALUATION_EXISTS, {"eval_id": eval_id}).first() is not None


def get_run(connection: Connection, *, eval_id: str, role: Role) -> Row[Any] | None:
    """The run as committed now (or as this transaction changed it)."""
    return connection.execute(_SELECT_RUN, {"eval_id": eval_id, "role": role}).first()


def get_run_state(connection: Connection, *, eval_id: str, role: Role) -> RunState | None:
    """What the state machine needs of the run as committed now (or as this transaction left it)."""
    row = connection.execute(_SELECT_RUN_STATE, {"eval_id": eval_id, "role": role}).first()
    return None if row is None else run_state(row)


def compare_and_set_run(
    connection: Connection,
    *,
    eval_id: str,
    role: Role,
    expected_status: Status,
    values: dict[str, Any],
    attempts: int | None,
) -> Row[Any] | None:
    """UPDATE the run only if its status is still `expected_status`; the updated row, else None.

    `attempts` is written as max(current, attempts) inside the statement, so it only grows.
    """
    statement = _compare_and_set_statement(
        tuple(sorted(values)), with_attempts=attempts is not None
    )
    params = {f"v_{name}": value for name, value in values.items()}
    params.update(w_eval_id=eval_id, w_role=role, w_status=expected_status, v_attempts=attempts)
    return connection.execute(statement, params).first()


@cache
def _compare_and_set_statement(names: tuple[str, ...], *, with_attempts: bool) -> Update:
    """The compare-and-set UPDATE of these columns, built once per set of columns (the plans
    make a handful): building a statement cost more than running it."""
    changes: dict[str, Any] = {
        name: bindparam(f"v_{name}", type_=RUNS.c[name].type) for name in names
    }
    if with_attempts:
        wanted = bindparam("v_attempts", type_=RUNS.c.attempts.type)
        changes["attempts"] = case((RUNS.c.attempts < wanted, wanted), else_=RUNS.c.attempts)
    return (
        update(RUNS)
        .where(
            RUNS.c.eval_id == bindparam("w_eval_id"),
            RUNS.c.role == bindparam("w_role"),
            RUNS.c.status == bindparam("w_status"),
        )
        .values(changes)
        .returning(*RUNS.c)
    )


def record_events(
    connection: Connection,
    *,
    eval_id: str,
    role: Role | None,
    at: datetime,
    planned: Iterable[PlannedEvent],
    backend: Backend | str | None = None,
) -> list[Event]:
    """Insert the events on the evaluation's timeline, in order, in one statement; their views,
    as published (with `backend`, the run's, which the timeline does not store)."""
    rows = [
        {
            "eval_id": eval_id,
            "event": event.event.value,
            "role": role,
            "status": event.status,
            "at": at,
            "detail": event.detail,
        }
        for event in planned
    ]
    if not rows:
        return []
    connection.execute(_INSERT_EVENT, rows)
    return [
        Event.model_construct(
            eval_id=eval_id,
            event=EventName(row["event"]),
            role=role,
            status=row["status"],
            backend=Backend(backend) if backend is not None else None,
            at=at,
            detail=row["detail"],
            evaluation=None,
        )
        for row in rows
    ]


def get_evaluation(
    connection: Connection, *, eval_id: str
) -> tuple[Row[Any], list[dict[str, Any]]] | None:
    """(The evaluation's row, its runs' rows), or None when there is no such evaluation."""
    rows = connection.execute(_SELECT_EVALUATION, {"eval_id": eval_id}).all()
    if not rows:
        return None
    role = _RUN_PREFIX + "role"
    return rows[0], [_run_of(row) for row in rows if row._mapping[role] is not None]


def _run_of(row: Row[Any]) -> dict[str, Any]:
    mapping = row._mapping
    return {column.name: mapping[_RUN_PREFIX + column.name] for column in RUNS.c}


def run_state(run: Mapping[str, Any] | Row[Any]) -> RunState:
    """What the state machine needs to know of a run's row."""
    mapping: Mapping[str, Any] = run if isinstance(run, Mapping) else run._mapping
    return RunState(
        eval_id=mapping["eval_id"],
        role=mapping["role"],
        status=mapping["status"],
        backend=mapping["backend"],
        attempts=mapping["attempts"],
        replays=mapping["replays"],
        reason=mapping["reason"],
    )


def ends_primary(role: Role, events: Sequence[PlannedEvent]) -> bool:
    """Whether these events end the primary run (a status change into a terminal status)."""
    return role is Role.PRIMARY and any(
        event.event is EventName.STATUS_CHANGED and event.status.is_terminal() for event in events
    )
