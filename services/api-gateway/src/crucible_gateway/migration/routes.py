"""The operators' HTTP API for migration control: thin adapters over `control`, operator token required."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from crucible_gateway.deps import MigrationSourceDep, MigrationStoreDep, OperatorDep
from crucible_gateway.migration import service as control
from crucible_gateway.migration.service import MigrationUpdate, Promote, StartRamp, VersionedWrite
from crucible_gateway.migration.store import AuditEntry, GuardStatus, MigrationDocument

router = APIRouter(prefix="/api/admin/migration")


@router.get("")
def get_migration(_: OperatorDep, source: MigrationSourceDep) -> MigrationDocument:
    """The document in force in this replica (at most one refresh interval old)."""
    return source.document()


@router.put("")
def put_migration(
    body: MigrationUpdate, actor: OperatorDep, store: MigrationStoreDep, source: MigrationSourceDep
) -> MigrationDocument:
    return control.update(body=body, actor=actor, store=store, source=source)


@router.post("/promote")
def promote(
    body: Promote, actor: OperatorDep, store: MigrationStoreDep, source: MigrationSourceDep
) -> MigrationDocument:
    return control.promote(body=body, actor=actor, store=store, source=source)


@router.post("/pause")
def pause(
    body: VersionedWrite, actor: OperatorDep, store: MigrationStoreDep, source: MigrationSourceDep
) -> MigrationDocument:
    return control.pause(body=body, actor=actor, store=store, source=source)


@router.post("/abort")
def abort(
    body: VersionedWrite, actor: OperatorDep, store: MigrationStoreDep, source: MigrationSourceDep
) -> MigrationDocument:
    return control.abort(body=body, actor=actor, store=store, source=source)


@router.post("/ramp")
def start_ramp(
    body: StartRamp, actor: OperatorDep, store: MigrationStoreDep, source: MigrationSourceDep
) -> MigrationDocument:
    return control.start_ramp(body=body, actor=actor, store=store, source=source)


@router.get("/guard")
def get_guard(_: OperatorDep, store: MigrationStoreDep) -> GuardStatus | None:
    """The leader's latest guard evaluation (null when no leader evaluated in the last 30 s)."""
    return store.guard_status()


@router.get("/audit")
def get_audit(
    _: OperatorDep,
    store: MigrationStoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[AuditEntry]:
    return control.audit(store=store, limit=limit)
