"""The leader's housekeeping rounds, each a `leader.Job` on its own interval: the reconciler of
stuck runs (`repair`) and the purge of old evaluations.

A round whose storage cannot be reached is skipped, logged and counted; the next one tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from crucible_contracts.errors import CrucibleError
from crucible_gateway import metrics
from crucible_gateway.housekeeping.repair import Reconciler, Report
from crucible_gateway.leader import Job
from crucible_runtime.clients import StorageClient

log = logging.getLogger(__name__)

RECONCILE = "reconcile"
PURGE = "purge"


def purge_old_evaluations(*, storage: StorageClient, older_than_seconds: float) -> int:
    """Delete the evaluations created more than `older_than_seconds` ago (runs, events and
    comparison with them); returns how many. Raises when storage cannot be reached."""
    deleted = storage.delete_older_than(older_than_seconds)
    metrics.HOUSEKEEPING_PURGED.inc(deleted)
    log.info("purged %d evaluations older than %gs", deleted, older_than_seconds)
    return deleted


@dataclass
class Housekeeping:
    """The reconciler and the purge as the leader's jobs. `still_leader` is asked between the
    reconciler's runs, so that a round stops as soon as this replica loses the lead."""

    reconciler: Reconciler
    storage: StorageClient
    retention_seconds: float
    reconcile_interval: float
    purge_interval: float
    still_leader: Callable[[], bool]

    def jobs(self) -> list[Job]:
        return [
            Job(RECONCILE, self.reconcile_interval, self.reconcile),
            Job(PURGE, self.purge_interval, self.purge),
        ]

    def reconcile(self, now: datetime) -> Report | None:
        """One reconciler round; None when it was skipped (storage down)."""
        try:
            report = self.reconciler.run(now, proceed=self.still_leader)
        except CrucibleError as exc:
            return _skipped(RECONCILE, exc)
        metrics.HOUSEKEEPING_ROUNDS.labels(RECONCILE, "stopped" if report.stopped else "done").inc()
        if report.stopped:
            log.warning("reconcile round stopped: this replica is no longer the leader")
        if report.counts:
            log.info("reconcile round: %s", dict(report.counts))
        return report

    def purge(self, now: datetime) -> int | None:
        """One purge round; how many evaluations it deleted, None when it was skipped."""
        try:
            deleted = purge_old_evaluations(
                storage=self.storage, older_than_seconds=self.retention_seconds
            )
        except CrucibleError as exc:
            return _skipped(PURGE, exc)
        metrics.HOUSEKEEPING_ROUNDS.labels(PURGE, "done").inc()
        return deleted


def _skipped(job: str, exc: CrucibleError) -> None:
    metrics.HOUSEKEEPING_ROUNDS.labels(job, "skipped").inc()
    log.warning("%s round skipped: %s", job, exc)
