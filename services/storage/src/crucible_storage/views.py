"""The wire views of storage's rows (Core rows, plain dicts or ORM objects alike).

The rows come from the database, which only ever holds what a validated body put there, so the
views are assembled without validating them again (`model_construct`): on the hot path that
validation cost as much as the query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Row

from crucible_contracts.errors import CrucibleError
from crucible_contracts.models import (
    ComparisonView,
    EvaluationView,
    Event,
    Program,
    RunView,
    StuckRun,
)
from crucible_contracts.names import EventName, Role
from crucible_storage.tables import Base, Comparison, EventRecord, Run

RUN_FIELDS = tuple(RunView.model_fields)
PROGRAM_FIELDS = tuple(Program.model_fields)
# The evaluation view's fields that are its primary run's (flat, as DESIGN.md fixes the view).
PRIMARY_RUN_FIELDS = tuple(
    name for name in EvaluationView.model_fields if name in RUN_FIELDS and name != "created_at"
)


def columns(row: Mapping[str, Any] | Row[Any] | Base) -> Mapping[str, Any]:
    """A row's columns by name, whatever kind of row it is."""
    if isinstance(row, Mapping):
        return row
    if isinstance(row, Row):
        return row._mapping
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def run_view(run: Mapping[str, Any] | Row[Any] | Run) -> RunView:
    values = columns(run)
    return RunView.model_construct(**{name: values[name] for name in RUN_FIELDS})


def evaluation_view(
    evaluation: Mapping[str, Any] | Row[Any] | Base, runs: Iterable[Any]
) -> EvaluationView:
    """The evaluation with its primary run's fields flat and every run listed, primary first."""
    row = columns(evaluation)
    run_rows = sorted(
        (columns(run) for run in runs), key=lambda run: run["role"] is not Role.PRIMARY
    )
    if not run_rows or run_rows[0]["role"] is not Role.PRIMARY:
        raise CrucibleError(f"evaluation {row['eval_id']} has no primary run")
    primary = run_rows[0]
    return EvaluationView.model_construct(
        eval_id=row["eval_id"],
        **{name: row[name] for name in PROGRAM_FIELDS},
        priority=row["priority"],
        routing_key=row["routing_key"],
        tenant=row["tenant"],
        created_at=row["created_at"],
        **{name: primary[name] for name in PRIMARY_RUN_FIELDS},
        runs=[run_view(run) for run in run_rows],
    )


def program_of(row: Mapping[str, Any] | Row[Any] | Base) -> Program:
    """The program an evaluation's row holds (one column per field, named alike)."""
    values = columns(row)
    return Program.model_construct(**{name: values[name] for name in PROGRAM_FIELDS})


def stuck_run_view(run: Run) -> StuckRun:
    evaluation = run.evaluation
    return StuckRun(
        eval_id=run.eval_id,
        role=run.role,
        backend=run.backend,
        status=run.status,
        attempts=run.attempts,
        replays=run.replays,
        created_at=run.created_at,
        queued_at=run.queued_at or run.created_at,
        started_at=run.started_at,
        program=program_of(evaluation),
        priority=evaluation.priority,
    )


def event_view(record: EventRecord) -> Event:
    return Event(
        eval_id=record.eval_id,
        event=EventName(record.event),
        role=record.role,
        status=record.status,
        at=record.at,
        detail=record.detail or {},
    )


def comparison_view(comparison: Comparison) -> ComparisonView:
    return ComparisonView.model_validate(comparison, from_attributes=True)
