"""The operations HTTP API: thin adapters for queue depths, gateway status, Celery views and the DLQ.

Queue depths in detail, Celery's workers and tasks and the dead-letter queue (under /api/admin/dlq)
need the operator scope (an operator token, or a key with that scope); see `auth.required_scope`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from crucible_contracts.limits import MAX_OFFSET
from crucible_contracts.models import DeadLetter
from crucible_contracts.tenancy import Scope
from crucible_gateway.deps import (
    CeleryDep,
    DeadLettersDep,
    LanguagesDep,
    LeaderDep,
    LimitsDep,
    MigrationSourceDep,
    OperatorDep,
    PathsDep,
    PrincipalDep,
    QueueReaderDep,
    StorageDep,
)
from crucible_gateway.operations import dead_letters, service
from crucible_gateway.operations.models import DeadLetterPage, Purged, Replayed

router = APIRouter(prefix="/api")


@router.get("/queue-status")
def queue_status(
    paths: PathsDep, reader: QueueReaderDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Depths and oldest ages per path and per Celery queue, and the dead-letter queue's, for
    operators; how many evaluations wait on each path for everyone else."""
    return service.queue_status(paths=paths, reader=reader, details=principal.can(Scope.OPERATOR))


@router.get("/status")
def gateway_status(
    storage: StorageDep,
    paths: PathsDep,
    source: MigrationSourceDep,
    limits: LimitsDep,
    languages: LanguagesDep,
    leader: LeaderDep,
) -> dict[str, Any]:
    return service.gateway_status(
        storage=storage,
        paths=paths,
        migration=source.current(),
        migration_source=source.status(),
        limits=limits,
        languages=languages,
        leader=leader.is_leader,
    )


@router.get("/celery/workers")
def celery_workers(celery: CeleryDep) -> dict[str, Any]:
    """Workers that answered within a second: pid, uptime, pool, task counts, queues."""
    return service.celery_workers(celery=celery)


@router.get("/celery/tasks")
def celery_tasks(celery: CeleryDep) -> dict[str, Any]:
    """Per worker: active, reserved and scheduled (retry countdown) tasks."""
    return service.celery_tasks(celery=celery)


@router.get("/admin/dlq")
def list_dead_letters(
    _: OperatorDep,
    store: DeadLettersDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DeadLetterPage:
    return dead_letters.list_entries(store=store, limit=limit, offset=offset)


@router.get("/admin/dlq/{entry_id}")
def get_dead_letter(entry_id: str, _: OperatorDep, store: DeadLettersDep) -> DeadLetter:
    return dead_letters.get_entry(entry_id=entry_id, store=store)


@router.post("/admin/dlq/{entry_id}/replay")
def replay_dead_letter(
    entry_id: str, actor: OperatorDep, store: DeadLettersDep, storage: StorageDep, paths: PathsDep
) -> Replayed:
    return dead_letters.replay(
        entry_id=entry_id, actor=actor, store=store, storage=storage, paths=paths
    )


@router.delete("/admin/dlq/{entry_id}")
def delete_dead_letter(entry_id: str, _: OperatorDep, store: DeadLettersDep) -> DeadLetter:
    return dead_letters.remove_entry(entry_id=entry_id, store=store)


@router.delete("/admin/dlq")
def purge_dead_letters(_: OperatorDep, store: DeadLettersDep) -> Purged:
    return dead_letters.purge(store=store)
