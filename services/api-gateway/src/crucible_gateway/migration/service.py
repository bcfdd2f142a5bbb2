"""Migration control use cases: read, change (compare-and-set) and audit the shared settings document.

Every change goes through `MigrationStore.update` (one versioned write plus one audit entry) and is
put in force in this replica at once; the other replicas follow on their next refresh.
"""

from __future__ import annotations

from typing import Any

from crucible_gateway.migration.models import (
    AuditEntry,
    GuardStatus,
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


def guard_status(*, store: MigrationStore) -> GuardStatus | None:
    """The leader's latest guard evaluation; None when no leader evaluated lately."""
    return store.guard_status()


def update(
    *,
    body: MigrationUpdate,
    actor: str,
    store: MigrationStore,
    source: RedisMigrationSource,
) -> MigrationDocument:
    """Apply the fields given in `body`; Conflict on a stale version, InvalidInput on bad values."""
    return _write(body, body.changes(), "update", actor=actor, store=store, source=source)


def promote(
    *, body: Promote, actor: str, store: MigrationStore, source: RedisMigrationSource
) -> MigrationDocument:
    changes = {
        "celery_enabled": True,
        "celery_percentage": body.celery_percentage,
        "mode": MigrationMode.SPLIT,
        "force_legacy": False,
    }
    return _write(body, changes, "promote", actor=actor, store=store, source=source)


def pause(
    *, body: VersionedWrite, actor: str, store: MigrationStore, source: RedisMigrationSource
) -> MigrationDocument:
    """Everything to legacy at once, keeping the share, so that `promote` can resume it."""
    return _write(body, {"force_legacy": True}, "pause", actor=actor, store=store, source=source)


def abort(
    *, body: VersionedWrite, actor: str, store: MigrationStore, source: RedisMigrationSource
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
    return _write(body, changes, "abort", actor=actor, store=store, source=source)


def start_ramp(
    *, body: StartRamp, actor: str, store: MigrationStore, source: RedisMigrationSource
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
    return _write(body, changes, "ramp_start", actor=actor, store=store, source=source)


def audit(*, store: MigrationStore, limit: int) -> list[AuditEntry]:
    return store.audit(limit=limit)


def _write(
    body: VersionedWrite,
    changes: dict[str, Any],
    action: str,
    *,
    actor: str,
    store: MigrationStore,
    source: RedisMigrationSource,
) -> MigrationDocument:
    document = store.update(
        expected_version=body.expected_version,
        changes=changes,
        actor=actor,
        reason=body.reason,
        action=action,
    )
    source.accept(document)
    return document
