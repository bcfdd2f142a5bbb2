"""Storage's operations: each takes a session, commits what it wrote, then publishes the events.

The operations of the hot path (create, get, add and report on a run) also take a plain Core
Connection (`hot.SessionLike`), which the async routes give them: it skips the Session's
bookkeeping, which they do not use.

Publishing only after the commit means a follower of the event stream never hears of a change that
the database does not hold; a change whose event is lost is still in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crucible_contracts.errors import Conflict, InvalidInput, NotFound
from crucible_contracts.models import (
    ComparisonOutcome,
    ComparisonPage,
    ComparisonRecord,
    ComparisonView,
    Deleted,
    EvaluationCreate,
    EvaluationPage,
    EvaluationView,
    Event,
    MigrationStats,
    RunCreate,
    RunUpdate,
    RunView,
    StuckRun,
)
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_storage import hot, metrics, repository, stats, tenancy
from crucible_storage.db import Database
from crucible_storage.events import EventPublisher
from crucible_storage.hot import SessionLike
from crucible_storage.schemas import Health
from crucible_storage.tables import utcnow
from crucible_storage.transitions import Plan, PlannedEvent, RunState, plan_replay, plan_update
from crucible_storage.views import (
    comparison_view,
    evaluation_view,
    event_view,
    run_view,
    stuck_run_view,
)

# Each lost compare-and-set means the status moved forward, and it can do that at most twice.
MAX_CAS_ROUNDS = 5


# --- evaluations ---------------------------------------------------------------------------------


def create_evaluation(
    *, session: SessionLike, publisher: EventPublisher, create: EvaluationCreate
) -> EvaluationView:
    """Create the evaluation with its primary run queued on `create.backend`, and its shadow run
    queued on `create.shadow_backend` when there is one; 409 if it exists, Busy (429) when its
    tenant has `create.max_in_flight` evaluations queued or running already.

    The primary key is the only duplicate check: a look-up first would cost every creation a
    query to catch what the insert catches anyway.
    """
    tenancy.check_in_flight(session, tenant=create.tenant, cap=create.max_in_flight)
    now = utcnow()
    created = PlannedEvent(
        EventName.CREATED,
        Status.QUEUED,
        {"backend": create.backend.value, "priority": create.priority},
    )
    connection = hot.connection_of(session)
    try:
        evaluation, run = hot.insert_evaluation(connection, create=create, now=now)
        runs = [run]
        events = hot.record_events(
            connection,
            eval_id=create.eval_id,
            role=Role.PRIMARY,
            at=now,
            planned=[created],
            backend=create.backend,
        )
        if create.shadow_backend is not None:
            runs.append(
                hot.insert_run(
                    connection,
                    eval_id=create.eval_id,
                    role=Role.SHADOW,
                    backend=create.shadow_backend,
                    now=now,
                )
            )
            events += hot.record_events(
                connection,
                eval_id=create.eval_id,
                role=Role.SHADOW,
                at=now,
                planned=[_run_created(create.shadow_backend)],
                backend=create.shadow_backend,
            )
        session.commit()
    except IntegrityError as exc:  # the eval_id exists
        session.rollback()
        raise _exists(create.eval_id) from exc
    publisher.publish(events)
    return evaluation_view(evaluation, runs)


def _run_created(backend: Backend) -> PlannedEvent:
    """The event of a run added beside the primary one, queued on `backend`."""
    return PlannedEvent(EventName.CREATED, Status.QUEUED, {"backend": backend.value})


def get_evaluation(
    *, session: SessionLike, eval_id: str, tenant: str | None = None
) -> EvaluationView:
    """The evaluation; NotFound when unknown or (with `tenant`) another tenant's."""
    found = hot.get_evaluation(hot.connection_of(session), eval_id=eval_id)
    if found is None or (tenant is not None and found[0].tenant != tenant):
        raise tenancy.not_found(eval_id)
    return evaluation_view(*found)


def list_evaluations(
    *,
    session: Session,
    status: Status | None = None,
    backend: Backend | None = None,
    limit: int = 50,
    offset: int = 0,
    tenant: str | None = None,
) -> EvaluationPage:
    """Newest first; `status` and `backend` filter on the primary run; `tenant`, when given,
    keeps that tenant's evaluations only."""
    items, total = repository.list_evaluations(
        session, status=status, backend=backend, limit=limit, offset=offset, tenant=tenant
    )
    return EvaluationPage(
        items=[evaluation_view(item, item.runs) for item in items],
        total=total,
        limit=limit,
        offset=offset,
    )


def delete_older_than(*, session: Session, seconds: float) -> Deleted:
    """Delete every evaluation created more than `seconds` ago, whatever its status."""
    if seconds <= 0:
        raise InvalidInput("older_than_seconds", "must be > 0", value=seconds)
    deleted = repository.delete_created_before(
        session, cutoff=utcnow() - timedelta(seconds=seconds)
    )
    session.commit()
    return Deleted(deleted=deleted)


# --- runs ------------------------------------------------------------------------------------------


def add_run(
    *, session: SessionLike, publisher: EventPublisher, eval_id: str, run: RunCreate
) -> RunView:
    """Add a run (the shadow one) beside the primary; 409 if the evaluation has that role already,
    404 if there is no such evaluation.

    The keys are the only checks (the run's primary key, its evaluation's foreign key): looking
    first would cost every shadow two queries to catch what the insert catches anyway.
    """
    connection = hot.connection_of(session)
    now = utcnow()
    created = _run_created(run.backend)
    try:
        row = hot.insert_run(
            connection, eval_id=eval_id, role=run.role, backend=run.backend, now=now
        )
        events = hot.record_events(
            connection,
            eval_id=eval_id,
            role=run.role,
            at=now,
            planned=[created],
            backend=run.backend,
        )
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        _evaluation_or_404(session, eval_id)
        raise Conflict(
            f"evaluation {eval_id} already has a {run.role} run", eval_id=eval_id
        ) from exc
    publisher.publish(events)
    return run_view(row)


def update_run(
    *,
    session: SessionLike,
    publisher: EventPublisher,
    eval_id: str,
    role: Role,
    update: RunUpdate,
    tenant: str | None = None,
) -> RunView:
    """Apply a consumer's report to a run, under the state machine of `transitions.plan_update`.

    Raises NotFound (also for another tenant's evaluation, with `tenant`), IllegalTransition or
    Conflict.
    """
    if tenant is not None:
        tenancy.check_tenant(session, eval_id=eval_id, tenant=tenant)
    return _apply(
        session=session,
        publisher=publisher,
        eval_id=eval_id,
        role=role,
        plan_for=lambda run, now: plan_update(run, update, now=now),
    )


def replay_run(
    *, session: SessionLike, publisher: EventPublisher, eval_id: str, role: Role, max_replays: int
) -> RunView:
    """Send a run that ended `error` back to `queued` (`transitions.plan_replay`), recording and
    publishing an `eval.replayed` event. Raises NotFound, IllegalTransition (not `error`) or
    Conflict (replayed `max_replays` times already)."""
    return _apply(
        session=session,
        publisher=publisher,
        eval_id=eval_id,
        role=role,
        plan_for=lambda run, now: plan_replay(run, max_replays=max_replays, now=now),
    )


def _apply(
    *,
    session: SessionLike,
    publisher: EventPublisher,
    eval_id: str,
    role: Role,
    plan_for: Callable[[RunState, datetime], Plan],
) -> RunView:
    """Plan a change from the run as read, and write it with a compare-and-set on that status.

    When another writer got there first, the run is read again and the change decided anew (it
    may then be idempotent, or illegal). The event that ends the primary run is published with
    the evaluation as this commit leaves it (`Event.evaluation`).
    """
    connection = hot.connection_of(session)
    for _ in range(MAX_CAS_ROUNDS):
        state = hot.get_run_state(connection, eval_id=eval_id, role=role)
        if state is None:
            raise _run_not_found(session, eval_id, role)
        now = utcnow()
        plan = plan_for(state, now)
        if plan.is_noop:  # a repeated report: answer the run as it is
            run = hot.get_run(connection, eval_id=eval_id, role=role)
            if run is not None:
                return run_view(run)
            continue
        updated = hot.compare_and_set_run(
            connection,
            eval_id=eval_id,
            role=role,
            expected_status=plan.expected_status,
            values=plan.values,
            attempts=plan.attempts,
        )
        if updated is None:
            continue
        events = hot.record_events(
            connection,
            eval_id=eval_id,
            role=role,
            at=now,
            planned=plan.events,
            backend=updated._mapping["backend"],
        )
        if hot.ends_primary(role, plan.events):
            events = _with_evaluation(connection, events)
        session.commit()
        if "status" in plan.values:
            metrics.observe_transition(updated._mapping)
        publisher.publish(events)
        return run_view(updated)
    raise Conflict(f"run {role} of {eval_id} kept changing; try again", eval_id=eval_id)


def _with_evaluation(connection: Connection, events: list[Event]) -> list[Event]:
    """`events` with the evaluation, as read in this transaction, on the one that ends it."""
    found = hot.get_evaluation(connection, eval_id=events[0].eval_id)
    if found is None:  # cannot be: the run this transaction updated holds its evaluation
        return events
    evaluation = evaluation_view(*found)
    return [
        event.model_copy(update={"evaluation": evaluation})
        if event.event is EventName.STATUS_CHANGED
        and event.status is not None
        and event.status.is_terminal()
        else event
        for event in events
    ]


def stuck_runs(
    *,
    session: Session,
    queued_before: datetime,
    running_before: datetime,
    backend: Backend | None = None,
    limit: int = 100,
) -> list[StuckRun]:
    """Runs `queued` since before `queued_before` (since their creation or latest replay) or
    `running` since before `running_before`, the longest in that status first.

    Whether one is really stuck (its own timeout, whether its queue still holds it) is the
    reconciler's decision. Raises InvalidInput for a datetime without a time zone.
    """
    for name, value in (("queued_before", queued_before), ("running_before", running_before)):
        if value.tzinfo is None:
            raise InvalidInput(name, "needs a time zone (e.g. ...Z or ...+00:00)")
    runs = repository.stuck_runs(
        session,
        queued_before=queued_before,
        running_before=running_before,
        backend=backend,
        limit=limit,
    )
    return [stuck_run_view(run) for run in runs]


def list_events(*, session: Session, eval_id: str, tenant: str | None = None) -> list[Event]:
    """The evaluation's timeline, oldest first; 404 for an unknown evaluation (or, with
    `tenant`, another tenant's)."""
    tenancy.check_tenant(session, eval_id=eval_id, tenant=tenant)
    return [event_view(record) for record in repository.list_events(session, eval_id=eval_id)]


# --- comparisons -----------------------------------------------------------------------------------


def record_comparison(
    *, session: Session, eval_id: str, record: ComparisonRecord
) -> tuple[ComparisonView, bool]:
    """Record the comparison once. (view, True) when written now; (existing one, False) after."""
    _evaluation_or_404(session, eval_id)
    existing = repository.get_comparison(session, eval_id=eval_id)
    if existing is not None:
        return comparison_view(existing), False
    try:
        comparison = repository.insert_comparison(
            session,
            eval_id=eval_id,
            outcome=record.outcome.value,
            differing_fields=record.differing_fields,
            details=record.details,
            now=utcnow(),
        )
        session.commit()
    except IntegrityError:  # recorded concurrently: the first one stands
        session.rollback()
        winner = repository.get_comparison(session, eval_id=eval_id)
        if winner is None:
            raise
        return comparison_view(winner), False
    return comparison_view(comparison), True


def get_comparison(*, session: Session, eval_id: str, tenant: str | None = None) -> ComparisonView:
    if tenant is not None:
        tenancy.check_tenant(session, eval_id=eval_id, tenant=tenant)
    comparison = repository.get_comparison(session, eval_id=eval_id)
    if comparison is None:
        raise NotFound(f"no comparison recorded for {eval_id}", eval_id=eval_id)
    return comparison_view(comparison)


def pending_comparisons(*, session: Session, limit: int = 100) -> list[EvaluationView]:
    """Evaluations whose comparison may be due: a shadow run, no comparison, the primary ended.

    Those whose shadow ended too come first, so that a comparer taking the first `limit` always
    gets the ready ones even when many shadows are still running; deciding whether a shadow that
    has not ended is overdue is the comparer's business. Oldest first within each group.
    """
    return [
        evaluation_view(evaluation, evaluation.runs)
        for evaluation in repository.pending_comparisons(session, limit=limit)
    ]


def list_comparisons(
    *, session: Session, outcomes: Collection[ComparisonOutcome], limit: int, offset: int
) -> ComparisonPage:
    """Recorded comparisons, of `outcomes` only when given: the ones that did not agree first
    (what an operator looks at), newest first within each group."""
    found, total = repository.list_comparisons(
        session,
        outcomes=[outcome.value for outcome in outcomes],
        agreeing=stats.AGREEING,
        limit=limit,
        offset=offset,
    )
    return ComparisonPage(
        items=[comparison_view(comparison) for comparison in found],
        total=total,
        limit=limit,
        offset=offset,
    )


# --- migration statistics --------------------------------------------------------------------------


def migration_stats(
    *, session: Session, since: datetime, until: datetime | None = None, samples: int = 5
) -> MigrationStats:
    """Runs created and comparisons recorded in [since, until) (`until` defaults to storage's now),
    per path, with up to `samples` of the newest comparisons that did not agree.

    Raises InvalidInput for a datetime without a time zone or a window that ends before it starts.
    """
    until = until or utcnow()
    stats.check_window(since=since, until=until)
    rows = repository.run_rows(session, since=since, until=until)
    disagreeing = repository.newest_comparisons(
        session, since=since, until=until, excluding=stats.AGREEING, limit=samples
    )
    return stats.migration_stats(
        since=since,
        until=until,
        runs=[stats.RunRow._make(row) for row in rows],
        outcome_counts=repository.count_comparisons_by_outcome(session, since=since, until=until),
        samples=[comparison_view(comparison) for comparison in disagreeing],
    )


# --- health ----------------------------------------------------------------------------------------


def health(*, database: Database) -> Health:
    """Ok with the database kind, or Unavailable when the database does not answer."""
    database.ping()
    return Health(status="ok", database=database.dialect)


# --- helpers ---------------------------------------------------------------------------------------


def _evaluation_or_404(session: SessionLike, eval_id: str) -> None:
    if not hot.evaluation_exists(hot.connection_of(session), eval_id=eval_id):
        raise tenancy.not_found(eval_id)


def _run_not_found(session: SessionLike, eval_id: str, role: Role) -> NotFound:
    if hot.evaluation_exists(hot.connection_of(session), eval_id=eval_id):
        return NotFound(f"evaluation {eval_id} has no {role} run", eval_id=eval_id, role=role.value)
    return NotFound(f"evaluation {eval_id} not found", eval_id=eval_id)


def _exists(eval_id: str) -> Conflict:
    return Conflict(f"evaluation {eval_id} already exists", eval_id=eval_id)
