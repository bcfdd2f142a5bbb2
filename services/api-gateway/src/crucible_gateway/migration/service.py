"""Migration control use cases: read, change (compare-and-set) and audit the shared settings document.

Every change goes through `AuditLog.change` (one versioned write whose audit entry storage keeps;
refused with 503 when storage cannot take it) and is put in force in this replica at once; the
other replicas follow on their next refresh.
"""

from __future__ import annotations

from typing import Any

from crucible_contracts.models import AuditEntry
from crucible_gateway.migration.audit import AuditLog
from crucible_gateway.migration.models import (
    GuardReport,
    MigrationDocument,
    MigrationMode,
    MigrationUpdate,
    Promote,
    StartRamp,
    VersionedWrite,
)
from crucible_gateway.migration.source import RedisMigrationSource
from crucible_gateway.migration.store import MigrationStore


def document_in_force(*, source: RedisMigrationSource) -> MigrationDocument:
    """The document in force in this replica (at most one refresh interval old)."""
    return source.document()


def guard_report(*, store: MigrationStore, limit: int) -> GuardReport:
    """The leader's latest guard decision (None when no leader evaluated lately), the breach
    streak, and the newest `limit` stored decisions."""
    return GuardReport(
        latest=store.guard_status(),
        streak=store.guard_streak(),
        decisions=store.guard_decisions(limit=limit),
    )


def update(
    *,
    body: MigrationUpdate,
    actor: str,
    audit: AuditLog,
    source: RedisMigrationSource,
) -> MigrationDocument:
    """Apply the fields given in `body`; Conflict on a stale version, InvalidInput on bad values."""
    return _write(body, body.changes(), "update", actor=actor, audit=audit, source=source)


def promote(
    *, body: Promote, actor: str, audit: AuditLog, source: RedisMigrationSource
) -> MigrationDocument:
    changes = {
        "celery_enabled": True,
        "celery_percentage": body.celery_percentage,
        "mode": MigrationMode.SPLIT,
        "force_legacy": False,
    }
    return _write(body, changes, "promote", actor=actor, audit=audit, source=source)


def pause(
    *, body: VersionedWrite, actor: str, audit: AuditLog, source: RedisMigrationSource
) -> MigrationDocument:
    """Everything to legacy at once, keeping the share, so that `promote` can resume it."""
    return _write(body, {"force_legacy": True}, "pause", actor=actor, audit=audit, source=source)


def abort(
    *, body: VersionedWrite, actor: str, audit: AuditLog, source: RedisMigrationSource
) -> MigrationDocument:
    """Back out of the migration: legacy forced, Celery disabled, shares zeroed, split mode.

    Unlike pause, nothing of the old share survives: clearing force_legacy alone sends nothing to
    Celery; a new `promote` with a chosen share is needed.
    """
    changes = {
        "force_legacy": True,
        "celery_enabled": False,
        "celery_percentage": 0.0,
        "shadow_percentage": 0.0,
        "mode": MigrationMode.SPLIT,
    }
    return _write(body, changes, "abort", actor=actor, audit=audit, source=source)


def start_ramp(
    *, body: StartRamp, actor: str, audit: AuditLog, source: RedisMigrationSource
) -> MigrationDocument:
    """Turn the ramp on: Celery enabled, legacy not forced, the share raised to the first step.

    From then on the leader replica promotes one step each time the step has been held long
    enough and the guard passes; a guard breach rolls back and stops the ramp.
    """
    ramp: dict[str, Any] = {"active": True}
    if body.steps is not None:
        ramp["steps"] = body.steps
    if body.hold_seconds is not None:
        ramp["hold_seconds"] = body.hold_seconds
    current = source.document()
    first_step = (body.steps or current.ramp.steps)[0]
    changes = {
        "celery_enabled": True,
        "force_legacy": False,
        "celery_percentage": max(current.celery_percentage, first_step),
        "ramp": ramp,
    }
    return _write(body, changes, "ramp_start", actor=actor, audit=audit, source=source)


def audit_log(*, audit: AuditLog, limit: int, offset: int) -> list[AuditEntry]:
    """The document's audit log from storage, newest first; Unavailable while storage is down."""
    return audit.entries(limit=limit, offset=offset)


def _write(
    body: VersionedWrite,
    changes: dict[str, Any],
    action: str,
    *,
    actor: str,
    audit: AuditLog,
    source: RedisMigrationSource,
) -> MigrationDocument:
    document = audit.change(
        expected_version=body.expected_version,
        changes=changes,
        actor=actor,
        reason=body.reason,
        action=action,
    )
    source.accept(document)
    return document
