"""The console's HTTP side: the static pages at /console, and the admin aggregates they read
(overview, the list of comparisons, one evaluation's events). Thin adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query
from fastapi.staticfiles import StaticFiles

from crucible_contracts.ids import EvalId
from crucible_contracts.limits import MAX_OFFSET
from crucible_contracts.models import ComparisonOutcome, ComparisonPage, Event
from crucible_gateway.console.overview import MAX_BUCKETS, Overview, overview
from crucible_gateway.deps import (
    CeleryDep,
    ExecutorsDep,
    MigrationSourceDep,
    OperatorDep,
    PathsDep,
    QueueReaderDep,
    StorageDep,
)

STATIC = Path(__file__).parent / "static"

router = APIRouter(prefix="/api/admin")


@router.get("/overview")
def get_overview(
    _: OperatorDep,
    storage: StorageDep,
    paths: PathsDep,
    celery: CeleryDep,
    executors: ExecutorsDep,
    queues: QueueReaderDep,
    source: MigrationSourceDep,
    window: str = "10m",
    buckets: Annotated[int, Query(ge=1, le=MAX_BUCKETS)] = 20,
) -> Overview:
    """Per path, runs and end-to-end latency in `buckets` slices of the last `window` (at most
    6h); queue depths; executors and their slots; Celery's workers; the split in force."""
    return overview(
        storage=storage,
        paths=paths,
        celery=celery,
        pool=executors,
        queues=queues,
        migration=source.current(),
        window=window,
        buckets=buckets,
    )


@router.get("/comparisons")
def list_comparisons(
    _: OperatorDep,
    storage: StorageDep,
    outcome: Annotated[list[ComparisonOutcome] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ComparisonPage:
    """Recorded comparisons of every tenant (of the `outcome`s given, repeatable), those that
    did not agree first, newest first within each."""
    return storage.comparisons(
        outcomes=[item.value for item in outcome or []], limit=limit, offset=offset
    )


@router.get("/evaluations/{eval_id}/events")
def list_events(eval_id: EvalId, _: OperatorDep, storage: StorageDep) -> list[Event]:
    """One evaluation's timeline, oldest first, whatever its tenant; 404 for an unknown one."""
    return storage.events(eval_id)


def install_console(app: FastAPI) -> None:
    """The console's pages at /console/ (static files, no build step) and its admin routes."""
    app.include_router(router)
    app.mount("/console", StaticFiles(directory=STATIC, html=True), name="console")
