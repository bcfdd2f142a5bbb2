"""Queries and writes on the storage tables. No decisions here: those are in transitions/service."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, case, delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased, contains_eager, selectinload

from crucible_contracts.names import Backend, Role
from crucible_contracts.status import TERMINAL, Status
from crucible_storage.tables import Comparison, Evaluation, EventRecord, Run


def list_evaluations(
    session: Session,
    *,
    status: Status | None,
    backend: Backend | None,
    limit: int,
    offset: int,
    tenant: str | None = None,
) -> tuple[Sequence[Evaluation], int]:
    """One page, newest first, filtered on the primary run (and on the tenant, when given); and
    how many match in all."""
    matching = select(Evaluation.eval_id).join(
        Run, (Run.eval_id == Evaluation.eval_id) & (Run.role == Role.PRIMARY)
    )
    if tenant is not None:
        matching = matching.where(Evaluation.tenant == tenant)
    if status is not None:
        matching = matching.where(Run.status == status)
    if backend is not None:
        matching = matching.where(Run.backend == backend)
    total = session.scalar(select(func.count()).select_from(matching.subquery())) or 0
    page_ids = (
        matching.order_by(Evaluation.created_at.desc(), Evaluation.eval_id.desc())
        .limit(limit)
        .offset(offset)
    )
    query = (
        select(Evaluation)
        .where(Evaluation.eval_id.in_(page_ids.scalar_subquery()))
        .options(selectinload(Evaluation.runs))
        .order_by(Evaluation.created_at.desc(), Evaluation.eval_id.desc())
    )
    return session.scalars(query).all(), total


def pending_comparisons(session: Session, *, limit: int) -> Sequence[Evaluation]:
    """Evaluations with a shadow run and no comparison yet whose primary run has ended, with their
    runs: those whose shadow ended too first, then the rest; oldest first within each group.

    One statement for the evaluations and one (selectinload) for all their runs.
    """
    primary, shadow = aliased(Run), aliased(Run)
    ended = sorted(TERMINAL)
    shadow_not_ended = case((shadow.status.in_(ended), 0), else_=1)
    query = (
        select(Evaluation)
        .join(primary, (primary.eval_id == Evaluation.eval_id) & (primary.role == Role.PRIMARY))
        .join(shadow, (shadow.eval_id == Evaluation.eval_id) & (shadow.role == Role.SHADOW))
        .where(
            primary.status.in_(ended),
            ~exists().where(Comparison.eval_id == Evaluation.eval_id),
        )
        .order_by(shadow_not_ended, Evaluation.created_at, Evaluation.eval_id)
        .limit(limit)
        .options(selectinload(Evaluation.runs))
    )
    return session.scalars(query).all()


def stuck_runs(
    session: Session,
    *,
    queued_before: datetime,
    running_before: datetime,
    backend: Backend | None,
    limit: int,
) -> Sequence[Run]:
    """Runs queued since before `queued_before` or running since before `running_before`, with
    their evaluation loaded; the longest in that status first."""
    queued_since = func.coalesce(Run.queued_at, Run.created_at)
    since = case((Run.status == Status.RUNNING, Run.started_at), else_=queued_since)
    query = (
        select(Run)
        .join(Run.evaluation)
        .where(
            ((Run.status == Status.QUEUED) & (queued_since < queued_before))
            | ((Run.status == Status.RUNNING) & (Run.started_at < running_before))
        )
        .order_by(since, Run.eval_id, Run.role)
        .limit(limit)
        .options(contains_eager(Run.evaluation))
    )
    if backend is not None:
        query = query.where(Run.backend == backend)
    return session.scalars(query).all()


def list_events(session: Session, *, eval_id: str) -> Sequence[EventRecord]:
    """The timeline of one evaluation, oldest first."""
    query = select(EventRecord).where(EventRecord.eval_id == eval_id).order_by(EventRecord.id)
    return session.scalars(query).all()


def delete_created_before(session: Session, *, cutoff: datetime) -> int:
    """Delete evaluations created before `cutoff`; runs, events and comparisons go with them."""
    result = session.execute(
        delete(Evaluation)
        .where(Evaluation.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def set_created_at(session: Session, *, eval_id: str, created_at: datetime) -> None:
    """Back-date an evaluation. For tests and data repair only: the API never moves created_at."""
    session.execute(
        update(Evaluation)
        .where(Evaluation.eval_id == eval_id)
        .values(created_at=created_at)
        .execution_options(synchronize_session=False)
    )


def get_comparison(session: Session, *, eval_id: str) -> Comparison | None:
    return session.get(Comparison, eval_id, populate_existing=True)


def insert_comparison(
    session: Session,
    *,
    eval_id: str,
    outcome: str,
    differing_fields: list[str],
    details: dict[str, Any],
    now: datetime,
) -> Comparison:
    comparison = Comparison(
        eval_id=eval_id,
        outcome=outcome,
        differing_fields=differing_fields,
        details=details,
        created_at=now,
    )
    session.add(comparison)
    session.flush()
    return comparison


def run_rows(session: Session, *, since: datetime, until: datetime) -> Sequence[Row[Any]]:
    """(backend, role, status, created_at, started_at, completed_at) of every run created in
    [since, until): only the columns statistics need, never the outputs."""
    query = select(
        Run.backend, Run.role, Run.status, Run.created_at, Run.started_at, Run.completed_at
    ).where(Run.created_at >= since, Run.created_at < until)
    return session.execute(query).all()


def count_comparisons_by_outcome(
    session: Session, *, since: datetime, until: datetime
) -> dict[str, int]:
    """How many comparisons of each outcome were recorded in [since, until)."""
    query = (
        select(Comparison.outcome, func.count())
        .where(_recorded_within(since, until))
        .group_by(Comparison.outcome)
    )
    return {outcome: count for outcome, count in session.execute(query).all()}


def newest_comparisons(
    session: Session, *, since: datetime, until: datetime, excluding: Collection[str], limit: int
) -> Sequence[Comparison]:
    """Up to `limit` comparisons recorded in [since, until) whose outcome is not in `excluding`,
    newest first."""
    query = (
        select(Comparison)
        .where(_recorded_within(since, until), Comparison.outcome.not_in(sorted(excluding)))
        .order_by(Comparison.created_at.desc(), Comparison.eval_id.desc())
        .limit(limit)
    )
    return session.scalars(query).all()


def list_comparisons(
    session: Session,
    *,
    outcomes: Collection[str],
    agreeing: Collection[str],
    limit: int,
    offset: int,
) -> tuple[Sequence[Comparison], int]:
    """One page of comparisons (of `outcomes` only, when given): those whose outcome is not in
    `agreeing` first, newest first within each; and how many match in all."""
    query = select(Comparison)
    if outcomes:
        query = query.where(Comparison.outcome.in_(sorted(outcomes)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    last = case((Comparison.outcome.in_(sorted(agreeing)), 1), else_=0)
    page = (
        query.order_by(last, Comparison.created_at.desc(), Comparison.eval_id.desc())
        .limit(limit)
        .offset(offset)
    )
    return session.scalars(page).all(), total


def _recorded_within(since: datetime, until: datetime) -> ColumnElement[bool]:
    return (Comparison.created_at >= since) & (Comparison.created_at < until)
