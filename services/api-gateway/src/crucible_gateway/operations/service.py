"""Operators' view of the running system: queue depths, gateway status, Celery workers and tasks.

The operator's queue report (depth and oldest age of every queue) comes from `queue_readings`;
the clients' summary and reachability are asked of every path alike (`Path.depth`, `Path.ping`);
only the views about Celery itself (workers, tasks) talk to the Celery dispatcher. Every function
asks live systems with a short timeout; a part that does not answer is reported, not raised,
except for the Celery views, where an unreachable broker is a 503.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from crucible_contracts.errors import CrucibleError
from crucible_contracts.limits import Limits
from crucible_gateway.migration.models import MigrationSettings
from crucible_gateway.paths import Paths
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_gateway.queue_readings import (
    CELERY_QUEUES,
    DEAD_LETTER_QUEUE,
    LEGACY_QUEUE,
    SOURCE_BROKER,
    SOURCE_DEAD_LETTER,
    SOURCE_QUEUE_SERVICE,
    QueueReader,
)
from crucible_runtime.clients import StorageClient

HEALTH_TIMEOUT = 2.0
# How long a broadcast to the Celery workers waits for their answers.
INSPECT_TIMEOUT = 1.0


def queue_status(*, paths: Paths, reader: QueueReader, details: bool = True) -> dict[str, Any]:
    """Depth and oldest age (`oldest_age_seconds`) of each path's queues and of the dead-letter
    queue (`queue_readings`); a part that cannot be read reports {"error": ...} instead. Without
    `details` (a client without the operator scope): only how many evaluations wait on each path.

    `legacy` is the queue-service's own report with `oldest_age_seconds` added; `celery` has
    `queues` (depth by queue), `total` and `oldest_age_seconds` by queue (None: unknown);
    `dead_letter` has `entries` and `oldest_age_seconds`.
    """
    if not details:
        return _queue_summary(paths)
    readings = reader.read()
    report: dict[str, Any] = {}
    legacy = readings.get(LEGACY_QUEUE)
    if readings.legacy_status is None or legacy is None:
        report["legacy"] = {"error": readings.errors.get(SOURCE_QUEUE_SERVICE, "not read")}
    else:
        report["legacy"] = {
            **readings.legacy_status,
            "oldest_age_seconds": legacy.oldest_age_seconds,
        }
    celery = [reading for reading in readings.queues if reading.queue in CELERY_QUEUES]
    if SOURCE_BROKER in readings.errors:
        report["celery"] = {"error": readings.errors[SOURCE_BROKER]}
    else:
        report["celery"] = {
            "queues": {reading.queue: reading.depth for reading in celery},
            "total": sum(reading.depth for reading in celery),
            "oldest_age_seconds": {reading.queue: reading.oldest_age_seconds for reading in celery},
        }
    dead = readings.get(DEAD_LETTER_QUEUE)
    if dead is None:
        report["dead_letter"] = {"error": readings.errors.get(SOURCE_DEAD_LETTER, "not read")}
    else:
        report["dead_letter"] = {
            "entries": dead.depth,
            "oldest_age_seconds": dead.oldest_age_seconds,
        }
    return report


def _queue_summary(paths: Paths) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for path in paths:
        try:
            depth = path.depth(timeout=HEALTH_TIMEOUT)
            summary[path.backend.value] = {"waiting": depth.get("total", depth.get("queued"))}
        except CrucibleError:
            summary[path.backend.value] = {"waiting": None}
    return summary


def gateway_status(
    *,
    storage: StorageClient,
    paths: Paths,
    migration: MigrationSettings,
    migration_source: dict[str, Any],
    limits: Limits,
    languages: Sequence[str],
    leader: bool = False,
) -> dict[str, Any]:
    """The configuration in force and whether each dependency answers right now.

    `migration_source` says which version of the shared settings is in force and whether it is
    stale (the state Redis could not be read since `stale_since`).
    """
    checks: dict[str, Callable[[], object]] = {
        "storage": partial(storage.request, "GET", "/health", timeout=HEALTH_TIMEOUT),
        **{path.dependency: partial(path.ping, timeout=HEALTH_TIMEOUT) for path in paths},
    }
    dependencies: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        try:
            check()
            dependencies[name] = {"ok": True}
        except CrucibleError as exc:
            dependencies[name] = {"ok": False, "error": str(exc)}
    return {
        **migration.model_dump(mode="json"),
        "migration_source": migration_source,
        "leader": leader,
        "languages": list(languages),
        "limits": limits.model_dump(mode="json"),
        "dependencies": dependencies,
        "healthy": all(dep["ok"] for dep in dependencies.values()),
    }


def celery_workers(*, celery: CeleryDispatcher) -> dict[str, Any]:
    """Workers that answered within INSPECT_TIMEOUT: pid, uptime, pool, task counts, queues."""
    workers = celery.workers(timeout=INSPECT_TIMEOUT)
    return {"workers": workers, "count": len(workers)}


def celery_tasks(*, celery: CeleryDispatcher) -> dict[str, Any]:
    """Per worker: active, reserved and scheduled (retry countdown) tasks."""
    return celery.tasks(timeout=INSPECT_TIMEOUT)
