"""The public evaluations API: thin adapters from requests to one service function each.

Submitting and reading one evaluation are `async def` on the event loop (the hot path: no hop to
the threadpool); the other routes are plain `def` and use the sync clients from the threadpool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.responses import Response

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
    PathsDep,
    PrincipalDep,
    StorageDep,
)
from crucible_gateway.evaluations import cancellation, service
from crucible_gateway.evaluations.deps import (
    CancelTargetDep,
    EvaluationJsonDep,
    SubmittingDep,
)

router = APIRouter(prefix="/api")


@router.post("/eval", status_code=202)
async def submit_eval(
    body: EvalRequest,
    background: BackgroundTasks,
    submitting: SubmittingDep,
) -> Accepted:
    """Accepted for the caller's tenant; 429 with Retry-After at the tenant's in-flight cap."""
    return await service.submit(
        request=body,
        storage=submitting.storage,
        paths=submitting.paths,
        migration=submitting.migration,
        limits=submitting.limits,
        languages=submitting.languages,
        quota=submitting.quota,
        defer=background.add_task,
    )


@router.post("/eval-batch", status_code=202)
async def submit_batch(
    body: BatchRequest,
    background: BackgroundTasks,
    submitting: SubmittingDep,
) -> BatchAccepted:
    """At most the tenant's batch limit (else 422); 429 when its in-flight cap is reached."""
    return await service.submit_batch(
        batch=body,
        storage=submitting.storage,
        paths=submitting.paths,
        migration=submitting.migration,
        limits=submitting.limits,
        languages=submitting.languages,
        quota=submitting.quota,
        defer=background.add_task,
    )


@router.get("/eval/{eval_id}", response_model=EvaluationView)
async def get_eval(evaluation: EvaluationJsonDep) -> Response:
    """Storage's `EvaluationView` passed on as it came: no parse, no second serialisation."""
    return Response(evaluation, media_type="application/json")


@router.post("/eval/{eval_id}/cancel")
def cancel_eval(
    target: CancelTargetDep, storage: StorageDep, paths: PathsDep, executors: ExecutorsDep
) -> EvaluationView:
    """Queued: withdrawn and `cancelled`. Running: 409 unless `terminate=true`, which also kills
    its program. Already ended: 409."""
    return cancellation.cancel(
        evaluation=target.evaluation,
        terminate=target.terminate,
        tenant=target.tenant,
        storage=storage,
        paths=paths,
        executors=executors,
    )


@router.get("/evaluations")
def list_evaluations(
    storage: StorageDep,
    principal: PrincipalDep,
    status: Status | None = None,
    backend: Backend | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> EvaluationPage:
    """The caller's tenant's evaluations (every tenant's for an operator), newest first."""
    return service.list_evaluations(
        storage=storage,
        status=status,
        backend=backend,
        limit=limit,
        offset=offset,
        tenant=principal.read_scope,
    )
