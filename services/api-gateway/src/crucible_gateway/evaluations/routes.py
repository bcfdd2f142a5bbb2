"""The public HTTP API: thin adapters from requests to one service function each."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request

from crucible_contracts.models import (
    Accepted,
    BatchAccepted,
    BatchRequest,
    EvalRequest,
    EvaluationPage,
    EvaluationView,
)
from crucible_contracts.names import Backend
from crucible_contracts.status import Status
from crucible_gateway.deps import (
    DeadLettersDep,
    ExecutorsDep,
    LanguagesDep,
    LimitsDep,
    MigrationDep,
    MigrationSourceDep,
    MigrationStoreDep,
    PathsDep,
    StorageDep,
)
from crucible_gateway.evaluations import cancellation, service
from crucible_gateway.migration import report
from crucible_gateway.migration.comparison import SideBySide
from crucible_gateway.migration.report import MigrationReport

router = APIRouter(prefix="/api")


@router.post("/eval", status_code=202)
def submit_eval(
    body: EvalRequest,
    background: BackgroundTasks,
    storage: StorageDep,
    paths: PathsDep,
    migration: MigrationDep,
    limits: LimitsDep,
    languages: LanguagesDep,
) -> Accepted:
    return service.submit(
        request=body,
        storage=storage,
        paths=paths,
        migration=migration,
        limits=limits,
        languages=languages,
        defer=background.add_task,
    )


@router.post("/eval-batch", status_code=202)
def submit_batch(
    body: BatchRequest,
    background: BackgroundTasks,
    storage: StorageDep,
    paths: PathsDep,
    migration: MigrationDep,
    limits: LimitsDep,
    languages: LanguagesDep,
) -> BatchAccepted:
    return service.submit_batch(
        batch=body,
        storage=storage,
        paths=paths,
        migration=migration,
        limits=limits,
        languages=languages,
        defer=background.add_task,
    )


@router.get("/eval/{eval_id}")
def get_eval(eval_id: str, storage: StorageDep) -> EvaluationView:
    return service.get_evaluation(eval_id=eval_id, storage=storage)


@router.post("/eval/{eval_id}/cancel")
def cancel_eval(
    eval_id: str,
    storage: StorageDep,
    paths: PathsDep,
    executors: ExecutorsDep,
    terminate: bool = False,
) -> EvaluationView:
    """Queued: withdrawn and `cancelled`. Running: 409 unless `terminate=true`, which also kills
    its program. Already ended: 409."""
    return cancellation.cancel(
        eval_id=eval_id, terminate=terminate, storage=storage, paths=paths, executors=executors
    )


@router.get("/eval/{eval_id}/comparison")
def get_comparison(eval_id: str, storage: StorageDep, source: MigrationSourceDep) -> SideBySide:
    """Both runs side by side, the recorded outcome ("pending" until both ended), and a diff."""
    return report.comparison_of(
        eval_id=eval_id, storage=storage, rules=source.document().comparison
    )


@router.get("/migration/report")
def migration_report(
    storage: StorageDep,
    store: MigrationStoreDep,
    source: MigrationSourceDep,
    window: str = "1h",
    samples: Annotated[int, Query(ge=0, le=50)] = 5,
) -> MigrationReport:
    """Per path: volume, success and error rates, latencies; comparison outcomes; the guard."""
    return report.migration_report(
        storage=storage,
        store=store,
        document=source.document(),
        window=window,
        samples=samples,
    )


@router.get("/evaluations")
def list_evaluations(
    storage: StorageDep,
    status: Status | None = None,
    backend: Backend | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> EvaluationPage:
    return service.list_evaluations(
        storage=storage, status=status, backend=backend, limit=limit, offset=offset
    )


@router.get("/queue-status")
def queue_status(paths: PathsDep, dead_letters: DeadLettersDep) -> dict[str, Any]:
    return service.queue_status(paths=paths, dead_letters=dead_letters)


@router.get("/status")
def gateway_status(
    request: Request,
    storage: StorageDep,
    paths: PathsDep,
    source: MigrationSourceDep,
    limits: LimitsDep,
    languages: LanguagesDep,
) -> dict[str, Any]:
    return service.gateway_status(
        storage=storage,
        paths=paths,
        migration=source.current(),
        migration_source=source.status(),
        limits=limits,
        languages=languages,
        leader=request.app.state.supervisor.is_leader,
    )
