"""HTTP routes of storage: the API crucible_runtime.clients.StorageClient calls. Thin adapters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from crucible_contracts.ids import EvalId
from crucible_contracts.limits import MAX_AGE_SECONDS, MAX_OFFSET, MAX_PAGE
from crucible_contracts.models import (
    AuditEntry,
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
    QueryTimestamp,
    RunCreate,
    RunUpdate,
    RunView,
    StuckRun,
)
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_contracts.tenancy import TENANT_HEADER, TENANT_PATTERN
from crucible_storage import audit, service
from crucible_storage.deps import (
    DatabaseDep,
    PublisherDep,
    ReadSession,
    SettingsDep,
    WriteSession,
    in_connection,
    json_response,
)
from crucible_storage.schemas import Health

MAX_SAMPLES = 100

router = APIRouter()

# The caller's tenant, set by the gateway for its clients: reads and cancels then see that
# tenant's evaluations only (another's answers 404 like an unknown one). Absent: no scoping, for
# internal consumers and operators.
TenantScope = Annotated[
    str | None, Header(alias=TENANT_HEADER, pattern=TENANT_PATTERN, max_length=64)
]


@router.get("/health")
def health(database: DatabaseDep) -> Health:
    return service.health(database=database)


# The four routes every evaluation calls are coroutines that answer a ready Response: see
# `deps.in_connection` and `deps.json_response`. Their OpenAPI is the same as with sync routes.


@router.post("/evaluations", status_code=status.HTTP_201_CREATED, response_model=EvaluationView)
async def create_evaluation(
    body: EvaluationCreate, database: DatabaseDep, publisher: PublisherDep
) -> Response:
    view = await in_connection(
        database,
        lambda connection: service.create_evaluation(
            session=connection, publisher=publisher, create=body
        ),
        write=True,
    )
    return json_response(view, status.HTTP_201_CREATED)


@router.get("/evaluations")
def list_evaluations(
    session: ReadSession,
    tenant: TenantScope = None,
    status: Status | None = None,
    backend: Backend | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> EvaluationPage:
    return service.list_evaluations(
        session=session, status=status, backend=backend, limit=limit, offset=offset, tenant=tenant
    )


@router.delete("/evaluations")
def delete_evaluations(
    session: WriteSession,
    older_than_seconds: Annotated[float, Query(gt=0, le=MAX_AGE_SECONDS, allow_inf_nan=False)],
) -> Deleted:
    return service.delete_older_than(session=session, seconds=older_than_seconds)


@router.get("/evaluations/{eval_id}", response_model=EvaluationView)
async def get_evaluation(
    eval_id: EvalId, database: DatabaseDep, tenant: TenantScope = None
) -> Response:
    view = await in_connection(
        database,
        lambda connection: service.get_evaluation(
            session=connection, eval_id=eval_id, tenant=tenant
        ),
        write=False,
    )
    return json_response(view)


@router.post(
    "/evaluations/{eval_id}/runs", status_code=status.HTTP_201_CREATED, response_model=RunView
)
async def add_run(
    eval_id: EvalId, body: RunCreate, database: DatabaseDep, publisher: PublisherDep
) -> Response:
    view = await in_connection(
        database,
        lambda connection: service.add_run(
            session=connection, publisher=publisher, eval_id=eval_id, run=body
        ),
        write=True,
    )
    return json_response(view, status.HTTP_201_CREATED)


@router.patch("/evaluations/{eval_id}/runs/{role}", response_model=RunView)
async def update_run(
    eval_id: EvalId,
    role: Role,
    body: RunUpdate,
    database: DatabaseDep,
    publisher: PublisherDep,
    tenant: TenantScope = None,
) -> Response:
    view = await in_connection(
        database,
        lambda connection: service.update_run(
            session=connection,
            publisher=publisher,
            eval_id=eval_id,
            role=role,
            update=body,
            tenant=tenant,
        ),
        write=True,
    )
    return json_response(view)


@router.post("/evaluations/{eval_id}/runs/{role}/replay")
def replay_run(
    eval_id: EvalId,
    role: Role,
    session: WriteSession,
    publisher: PublisherDep,
    settings: SettingsDep,
) -> RunView:
    return service.replay_run(
        session=session,
        publisher=publisher,
        eval_id=eval_id,
        role=role,
        max_replays=settings.max_replays,
    )


@router.get("/runs/stuck")
def stuck_runs(
    session: ReadSession,
    queued_before: QueryTimestamp,
    running_before: QueryTimestamp,
    backend: Backend | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[StuckRun]:
    return service.stuck_runs(
        session=session,
        queued_before=queued_before,
        running_before=running_before,
        backend=backend,
        limit=limit,
    )


@router.get("/evaluations/{eval_id}/events")
def list_events(eval_id: EvalId, session: ReadSession, tenant: TenantScope = None) -> list[Event]:
    return service.list_events(session=session, eval_id=eval_id, tenant=tenant)


@router.put(
    "/evaluations/{eval_id}/comparison",
    responses={201: {"model": ComparisonView, "description": "recorded now"}},
)
def record_comparison(
    eval_id: EvalId, body: ComparisonRecord, session: WriteSession, response: Response
) -> ComparisonView:
    view, created = service.record_comparison(session=session, eval_id=eval_id, record=body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return view


@router.get("/evaluations/{eval_id}/comparison")
def get_comparison(
    eval_id: EvalId, session: ReadSession, tenant: TenantScope = None
) -> ComparisonView:
    return service.get_comparison(session=session, eval_id=eval_id, tenant=tenant)


@router.get("/comparisons/pending")
def pending_comparisons(
    session: ReadSession, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100
) -> list[EvaluationView]:
    return service.pending_comparisons(session=session, limit=limit)


@router.get("/comparisons")
def list_comparisons(
    session: ReadSession,
    outcome: Annotated[list[ComparisonOutcome] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ComparisonPage:
    """Recorded comparisons (of the `outcome`s given, repeatable), those that did not agree
    first, newest first within each."""
    return service.list_comparisons(
        session=session, outcomes=outcome or [], limit=limit, offset=offset
    )


@router.get("/stats")
def migration_stats(
    session: ReadSession,
    since: QueryTimestamp,
    until: QueryTimestamp | None = None,
    samples: Annotated[int, Query(ge=0, le=MAX_SAMPLES)] = 5,
) -> MigrationStats:
    return service.migration_stats(session=session, since=since, until=until, samples=samples)


@router.post("/audit", responses={201: {"model": AuditEntry, "description": "recorded now"}})
def record_audit(body: AuditEntry, session: WriteSession, response: Response) -> AuditEntry:
    """Record one audit entry: 201 when recorded now, 200 with the first one when its audit_id
    was recorded already."""
    entry, created = audit.record(session=session, entry=body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return entry


@router.get("/audit")
def list_audit(
    session: ReadSession,
    document: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[AuditEntry]:
    """Audit entries newest first, of one settings `document` or of all."""
    return audit.page(session=session, document=document, limit=limit, offset=offset)
