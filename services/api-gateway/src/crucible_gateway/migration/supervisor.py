"""The migration supervisor: what the leader replica does every interval.

1. Comparison sweep: every evaluation whose primary run has ended and whose shadow run has ended
   too (or is overdue) gets its one comparison recorded. Storage keeps the first record of an
   evaluation and ignores later ones, so a sweep that repeats itself, or two leaders for a moment,
   can never record a comparison twice.
2. Rollback guard: the runs since the settings last changed (within the guard's window) are judged;
   a breached check is confirmed on the most recent runs, and a breach that held for
   `guard.breach_after` evaluations in a row (`migration.hysteresis`) sets the Celery share back
   through the same versioned write an operator makes. Every decision is stored with its numbers
   and the streak after it (`MigrationStore.record_guard_decision`).
3. Ramp: while a ramp is active and the guard passes, the share is promoted one step per hold.

The functions are plain and take `now`; `Supervisor.tick` is the round the leader's loop
(`crucible_gateway.leader.LeaderLoop`) runs every SUPERVISOR_INTERVAL while it holds the lease.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

from crucible_contracts.errors import Conflict, CrucibleError
from crucible_gateway import metrics
from crucible_gateway.migration.audit import AuditLog
from crucible_gateway.migration.comparison import due_comparison
from crucible_gateway.migration.guard import Decision, evaluate, ramp_due, rollback_target
from crucible_gateway.migration.hysteresis import breach_is_due, confirm_recent, next_streak
from crucible_gateway.migration.models import GuardStatus, MigrationDocument
from crucible_gateway.migration.normalisation import ComparisonRules
from crucible_gateway.migration.source import RedisMigrationSource
from crucible_gateway.migration.store import MigrationStore
from crucible_runtime.clients import StorageClient

log = logging.getLogger(__name__)

SWEEP_BATCH = 200
GUARD_ACTOR = "guard"
RAMP_ACTOR = "ramp"


def sweep_comparisons(
    *, storage: StorageClient, rules: ComparisonRules, now: datetime, limit: int = SWEEP_BATCH
) -> int:
    """Record the comparison of every evaluation that is due; returns how many were recorded now."""
    recorded = 0
    for evaluation in storage.pending_comparisons(limit=limit):
        record = due_comparison(evaluation, rules, now)
        if record is None:
            continue
        _, created = storage.record_comparison(evaluation.eval_id, record)
        if created:
            recorded += 1
            metrics.COMPARISONS.labels(record.outcome.value).inc()
    return recorded


def guard_since(document: MigrationDocument, now: datetime) -> datetime:
    """The start of the guard's window: never before the settings in force were written.

    Runs made under earlier settings (a share since rolled back, say) say nothing about the
    current ones; after every change the guard holds until enough new samples arrive.
    """
    return max(now - timedelta(seconds=document.guard.window_seconds), document.updated_at)


def supervise_guard(
    *,
    storage: StorageClient,
    store: MigrationStore,
    audit: AuditLog,
    document: MigrationDocument,
    now: datetime,
    leader: str,
    ttl_seconds: float = 30.0,
) -> GuardStatus:
    """Judge the current settings, act on the verdict, store the decision and say what was
    found and done. The latest decision expires after `ttl_seconds`; the history does not."""
    status = _judge(storage=storage, document=document, now=now, leader=leader)
    decision: Decision | None = status.verdict.decision if status.verdict else None
    streak = next_streak(
        store.guard_streak(), decision=decision, document_version=document.version, at=now
    )
    status = status.model_copy(
        update={"streak": streak.breaches, "breach_after": document.guard.breach_after}
    )
    if decision == "breach" and breach_is_due(streak, document.guard):
        status = _roll_back(audit=audit, document=document, status=status)
    elif decision is not None:
        step = ramp_due(
            current=document.celery_percentage,
            ramp=document.ramp,
            verdict=status.verdict,
            step_started_at=document.updated_at,
            now=now,
        )
        if step is not None:
            status = _promote(audit=audit, document=document, status=status, step=step)
    store.record_guard_decision(status, streak, ttl_seconds=ttl_seconds)
    return status


def _judge(
    *,
    storage: StorageClient,
    document: MigrationDocument,
    now: datetime,
    leader: str,
) -> GuardStatus:
    """The guard's verdict on the current settings (none when disabled or Celery is idle)."""
    status = GuardStatus(
        evaluated_at=now, leader=leader, document_version=document.version, state="evaluated"
    )
    if not document.guard.enabled:
        return status.model_copy(update={"state": "disabled"})
    settings = document.settings()
    if not settings.celery_enabled or settings.force_legacy:
        return status.model_copy(update={"state": "idle"})
    since = guard_since(document, now)
    stats = storage.stats(since=since, until=now)
    verdict = evaluate(stats, document.guard, shadow=settings.shadowing)
    recent_since = None
    if verdict.decision == "breach":
        recent_since = max(now - timedelta(seconds=document.guard.recent_seconds), since)
        recent = storage.stats(since=recent_since, until=now)
        verdict = confirm_recent(verdict, window=stats, recent=recent)
    metrics.GUARD_DECISIONS.labels(verdict.decision, metrics.deciding_check(verdict)).inc()
    return status.model_copy(
        update={"since": since, "recent_since": recent_since, "verdict": verdict}
    )


def _roll_back(*, audit: AuditLog, document: MigrationDocument, status: GuardStatus) -> GuardStatus:
    target = rollback_target(document.celery_percentage, document.guard, document.ramp)
    if target >= document.celery_percentage and not document.ramp.active:
        # Nothing left to take back (e.g. shadow mode at 0 %): report, do not write.
        return status
    summary = status.verdict.summary() if status.verdict else ""
    reason = (
        f"guard breached {status.streak} evaluations in a row: {summary}; Celery share "
        f"{document.celery_percentage:.0%} -> {target:.0%}"
        + ("; ramp stopped" if document.ramp.active else "")
    )
    changes = {"celery_percentage": target, "ramp": {"active": False}}
    written = _write(
        audit, document, changes, actor=GUARD_ACTOR, action="guard_rollback", reason=reason
    )
    if written:
        metrics.GUARD_ACTIONS.labels("guard_rollback").inc()
        log.error("guard rolled back the Celery share: %s", reason)
        return status.model_copy(update={"action": "guard_rollback", "action_detail": reason})
    return status


def _promote(
    *, audit: AuditLog, document: MigrationDocument, status: GuardStatus, step: float
) -> GuardStatus:
    last = step >= document.ramp.steps[-1]
    summary = status.verdict.summary() if status.verdict else ""
    reason = (
        f"ramp: held {document.celery_percentage:.0%} for {document.ramp.hold_seconds:g}s and "
        f"the guard passed ({summary}); Celery share -> {step:.0%}"
        + ("; ramp complete" if last else "")
    )
    changes: dict[str, object] = {"celery_percentage": step}
    if last:
        changes["ramp"] = {"active": False}
    written = _write(
        audit, document, changes, actor=RAMP_ACTOR, action="ramp_promote", reason=reason
    )
    if written:
        metrics.GUARD_ACTIONS.labels("ramp_promote").inc()
        log.warning("%s", reason)
        return status.model_copy(update={"action": "ramp_promote", "action_detail": reason})
    return status


def _write(
    audit: AuditLog,
    document: MigrationDocument,
    changes: dict[str, object],
    *,
    actor: str,
    action: str,
    reason: str,
) -> bool:
    """A versioned, audited write based on `document`; False when someone changed the settings
    meanwhile (the next tick judges the new settings instead). Unavailable when storage cannot
    take the audit entry: then nothing changed, and the next tick tries again."""
    try:
        audit.change(
            expected_version=document.version,
            changes=changes,
            actor=actor,
            reason=reason,
            action=action,
        )
    except Conflict:
        log.info("%s skipped: the settings changed since version %s", action, document.version)
        return False
    return True


@dataclass
class Supervisor:
    """The migration round of the leader: comparison sweep, guard and ramp, on the freshest
    settings. `leader` is this replica's lease identity, recorded in the guard status."""

    storage: StorageClient
    store: MigrationStore
    audit: AuditLog
    source: RedisMigrationSource
    leader: str
    interval: float = 1.0

    def tick(self, now: datetime) -> GuardStatus | None:
        """One round; None when the settings could not be read (the next round tries again)."""
        # Audit entries a change could not hand to storage at once: deliver them now.
        self.audit.deliver()
        try:
            # The freshest document, not the cached one: the guard's writes name its version.
            document = self.store.load()
            if document is None:
                return None
            self.source.accept(document)
            sweep_comparisons(storage=self.storage, rules=document.comparison, now=now)
            return supervise_guard(
                storage=self.storage,
                store=self.store,
                audit=self.audit,
                document=document,
                now=now,
                leader=self.leader,
                ttl_seconds=max(30.0, 10 * self.interval),
            )
        except (CrucibleError, redis.RedisError) as exc:
            # Storage or Redis down: nobody can judge now; the next tick tries again.
            log.warning("supervisor tick skipped: %s", exc)
            return None
