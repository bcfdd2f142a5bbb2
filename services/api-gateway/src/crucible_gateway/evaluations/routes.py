"""The public evaluations API: thin adapters from requests to one service function each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query

from crucible_contracts.limits import MAX_OFFSET
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
    ExecutorsDep,
    LanguagesDep,
    LimitsDep,
    MigrationDep,
    PathsDep,
    StorageDep,
)
from crucible_gateway.evaluations import cancellation, service
from crucible_gateway.evaluations.deps import CancelTargetDep, EvaluationDep

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
def get_eval(evaluation: EvaluationDep) -> EvaluationView:
    return evaluation


@router.post("/eval/{eval_id}/cancel")
def cancel_eval(
    target: CancelTargetDep, storage: StorageDep, paths: PathsDep, executors: ExecutorsDep
) -> EvaluationView:
    """Queued: withdrawn and `cancelled`. Running: 409 unless `terminate=true`, which also kills
    its program. Already ended: 409."""
    return cancellation.cancel(
        evaluation=target.evaluation,
        terminate=target.terminate,
        storage=storage,
        paths=paths,
        executors=executors,
    )


@router.get("/evaluations")
def list_evaluations(
    storage: StorageDep,
    status: Status | None = None,
    backend: Backend | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> EvaluationPage:
    return service.list_evaluations(
        storage=storage, status=status, backend=backend, limit=limit, offset=offset
    )
