"""The migration HTTP API: admin control (operator token), the report, one evaluation's comparison."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from crucible_contracts.limits import MAX_OFFSET
from crucible_contracts.models import AuditEntry
from crucible_gateway.deps import (
    AuditLogDep,
    MigrationSourceDep,
    MigrationStoreDep,
    OperatorDep,
    StorageDep,
)
from crucible_gateway.evaluations.deps import EvaluationDep
from crucible_gateway.migration import report, service
from crucible_gateway.migration.models import (
    GuardReport,
    MigrationDocument,
    MigrationReport,
    MigrationUpdate,
    Promote,
    StartRamp,
    VersionedWrite,
)
from crucible_gateway.migration.side_by_side import SideBySide

router = APIRouter(prefix="/api")


# --- /api/admin/migration: operator token required ----------------------------------------------


@router.get("/admin/migration")
def get_migration(_: OperatorDep, source: MigrationSourceDep) -> MigrationDocument:
    """The document in force in this replica (at most one refresh interval old)."""
    return service.document_in_force(source=source)


@router.put("/admin/migration")
def put_migration(
    body: MigrationUpdate, actor: OperatorDep, audit: AuditLogDep, source: MigrationSourceDep
) -> MigrationDocument:
    return service.update(body=body, actor=actor, audit=audit, source=source)


@router.post("/admin/migration/promote")
def promote(
    body: Promote, actor: OperatorDep, audit: AuditLogDep, source: MigrationSourceDep
) -> MigrationDocument:
    return service.promote(body=body, actor=actor, audit=audit, source=source)


@router.post("/admin/migration/pause")
def pause(
    body: VersionedWrite, actor: OperatorDep, audit: AuditLogDep, source: MigrationSourceDep
) -> MigrationDocument:
    return service.pause(body=body, actor=actor, audit=audit, source=source)


@router.post("/admin/migration/abort")
def abort(
    body: VersionedWrite, actor: OperatorDep, audit: AuditLogDep, source: MigrationSourceDep
) -> MigrationDocument:
    return service.abort(body=body, actor=actor, audit=audit, source=source)


@router.post("/admin/migration/ramp")
def start_ramp(
    body: StartRamp, actor: OperatorDep, audit: AuditLogDep, source: MigrationSourceDep
) -> MigrationDocument:
    return service.start_ramp(body=body, actor=actor, audit=audit, source=source)


@router.get("/admin/migration/guard")
def get_guard(
    _: OperatorDep,
    store: MigrationStoreDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> GuardReport:
    """The leader's latest guard decision (null when none in the last 30 s), the current streak
    of consecutive breaches, and the newest `limit` decisions with their numbers."""
    return service.guard_report(store=store, limit=limit)


@router.get("/admin/migration/audit")
def get_audit(
    _: OperatorDep,
    audit: AuditLogDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[AuditEntry]:
    """The audit log of the settings, newest first, from storage (503 while it is down)."""
    return service.audit_log(audit=audit, limit=limit, offset=offset)


# --- what every client may read ------------------------------------------------------------------


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


@router.get("/eval/{eval_id}/comparison")
def get_comparison(
    evaluation: EvaluationDep, storage: StorageDep, source: MigrationSourceDep
) -> SideBySide:
    """Both runs side by side, the recorded outcome ("pending" until both ended), and a diff."""
    return report.comparison_of(
        evaluation=evaluation, storage=storage, rules=source.document().comparison
    )
