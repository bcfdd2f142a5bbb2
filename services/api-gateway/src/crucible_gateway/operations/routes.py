"""Operators' view of the Celery path: workers and tasks (public, read-only) and the dead-letter
queue under /api/admin/dlq (operator token). Thin adapters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from crucible_contracts.dlq import DeadLetter
from crucible_gateway.deps import DeadLettersDep, OperatorDep, PathsDep, StorageDep
from crucible_gateway.operations import dead_letters
from crucible_gateway.operations.dead_letters import DeadLetterPage, Purged, Replayed

router = APIRouter()

INSPECT_TIMEOUT = 1.0


@router.get("/api/celery/workers")
def celery_workers(paths: PathsDep) -> dict[str, Any]:
    """Workers that answered within a second: pid, uptime, pool, task counts, queues."""
    workers = paths.celery.workers(timeout=INSPECT_TIMEOUT)
    return {"workers": workers, "count": len(workers)}


@router.get("/api/celery/tasks")
def celery_tasks(paths: PathsDep) -> dict[str, Any]:
    """Per worker: active, reserved and scheduled (retry countdown) tasks."""
    return paths.celery.tasks(timeout=INSPECT_TIMEOUT)


@router.get("/api/admin/dlq")
def list_dead_letters(
    _: OperatorDep,
    store: DeadLettersDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DeadLetterPage:
    return dead_letters.list_entries(store=store, limit=limit, offset=offset)


@router.get("/api/admin/dlq/{entry_id}")
def get_dead_letter(entry_id: str, _: OperatorDep, store: DeadLettersDep) -> DeadLetter:
    return store.get(entry_id)


@router.post("/api/admin/dlq/{entry_id}/replay")
def replay_dead_letter(
    entry_id: str, actor: OperatorDep, store: DeadLettersDep, storage: StorageDep, paths: PathsDep
) -> Replayed:
    return dead_letters.replay(
        entry_id=entry_id, actor=actor, store=store, storage=storage, paths=paths
    )


@router.delete("/api/admin/dlq/{entry_id}")
def delete_dead_letter(entry_id: str, _: OperatorDep, store: DeadLettersDep) -> DeadLetter:
    return store.remove(entry_id)


@router.delete("/api/admin/dlq")
def purge_dead_letters(_: OperatorDep, store: DeadLettersDep) -> Purged:
    return Purged(purged=store.purge())
