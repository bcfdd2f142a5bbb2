"""The console's overview: throughput and latency per path over recent minutes, queue depths,
executors with their slots and Celery's workers, gathered in one answer.

Every part is asked live with a short timeout; a part that does not answer is reported as
`{"error": ...}` beside the others, never raised, so that one dead dependency leaves the rest of
the page readable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from crucible_contracts.errors import CrucibleError, InvalidInput
from crucible_contracts.models import PathStats
from crucible_gateway.migration.models import MigrationSettings
from crucible_gateway.migration.report import parse_window
from crucible_gateway.operations import service as operations
from crucible_gateway.paths import Paths
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_gateway.queue_readings import QueueReader
from crucible_runtime.clients import ExecutorPool, StorageClient

MAX_BUCKETS = 60
MAX_OVERVIEW_WINDOW_SECONDS = 6 * 3600.0
EXECUTOR_TIMEOUT = 1.0
# A broadcast waits this long for every worker's answer, twice (stats, queues); a shorter wait
# loses the slower second answer (the queues) under load.
WORKERS_TIMEOUT = 1.0


class PathBucket(BaseModel):
    """One path's runs created in one bucket: how many, how they ended, how long they took."""

    total: int
    terminal: int
    completed: int
    errors: int
    p50_ms: float | None = Field(description="end to end (created -> completed), median")
    p95_ms: float | None


class Bucket(BaseModel):
    since: datetime
    until: datetime
    paths: dict[str, PathBucket]


class Overview(BaseModel):
    """`GET /api/admin/overview`: what the console's overview page draws."""

    generated_at: datetime
    window_seconds: float
    bucket_seconds: float
    migration: MigrationSettings
    series: list[Bucket] | dict[str, str] = Field(
        description="oldest bucket first; {error} when storage does not answer"
    )
    queues: dict[str, Any]
    executors: list[dict[str, Any]]
    workers: dict[str, Any]


def _path_bucket(stats: PathStats) -> PathBucket:
    return PathBucket(
        total=stats.total,
        terminal=stats.terminal,
        completed=stats.by_status.get("completed", 0),
        errors=stats.by_status.get("error", 0),
        p50_ms=stats.end_to_end.p50_ms,
        p95_ms=stats.end_to_end.p95_ms,
    )


def series(
    *, storage: StorageClient, window_seconds: float, buckets: int, now: datetime
) -> list[Bucket]:
    """`buckets` equal slices of the last `window_seconds`, oldest first, each with every path's
    runs created in it (one statistics query to storage per bucket, no samples)."""
    width = timedelta(seconds=window_seconds / buckets)
    start = now - width * buckets
    found = []
    for n in range(buckets):
        since, until = start + width * n, start + width * (n + 1)
        stats = storage.stats(since=since, until=until, samples=0)
        found.append(
            Bucket(
                since=since,
                until=until,
                paths={backend: _path_bucket(path) for backend, path in stats.paths.items()},
            )
        )
    return found


def executors(pool: ExecutorPool | None) -> list[dict[str, Any]]:
    """Each executor the gateway knows: its id, slots, busy and free slots, or why it did not
    answer (`ok: false`)."""
    if pool is None:
        return []
    found = []
    for client in pool.clients:
        try:
            health = client.request("GET", "/health", timeout=EXECUTOR_TIMEOUT).json()
        except CrucibleError as exc:
            found.append({"url": client.base_url, "ok": False, "error": str(exc)})
            continue
        found.append(
            {
                "url": client.base_url,
                "ok": True,
                "executor_id": health.get("executor_id"),
                "status": health.get("status"),
                "slots": health.get("slots"),
                "busy": health.get("busy"),
                "free": health.get("free"),
            }
        )
    return found


def workers(celery: CeleryDispatcher) -> dict[str, Any]:
    """Celery's workers that answer within a second, or `{error}` when the broker does not."""
    try:
        found = celery.workers(timeout=WORKERS_TIMEOUT)
    except CrucibleError as exc:
        return {"error": str(exc), "workers": {}, "count": 0}
    return {"workers": found, "count": len(found)}


def check_buckets(window_seconds: float, buckets: int) -> None:
    """InvalidInput naming the field when the window or the bucket count is out of bounds."""
    if window_seconds > MAX_OVERVIEW_WINDOW_SECONDS:
        raise InvalidInput(
            "window",
            f"must be at most {MAX_OVERVIEW_WINDOW_SECONDS / 3600:g}h for the overview",
            maximum=MAX_OVERVIEW_WINDOW_SECONDS,
        )
    if not 1 <= buckets <= MAX_BUCKETS:
        raise InvalidInput(
            "buckets", f"must be between 1 and {MAX_BUCKETS}", minimum=1, maximum=MAX_BUCKETS
        )


def overview(
    *,
    storage: StorageClient,
    paths: Paths,
    celery: CeleryDispatcher,
    pool: ExecutorPool | None,
    queues: QueueReader,
    migration: MigrationSettings,
    window: str,
    buckets: int,
    now: datetime | None = None,
) -> Overview:
    """The whole overview; InvalidInput for a bad `window` (as the report's, at most 6h) or
    `buckets` (1..60). Parts that do not answer are reported, not raised."""
    window_seconds = parse_window(window)
    check_buckets(window_seconds, buckets)
    now = now or datetime.now(UTC)
    try:
        drawn: list[Bucket] | dict[str, str] = series(
            storage=storage, window_seconds=window_seconds, buckets=buckets, now=now
        )
    except CrucibleError as exc:
        drawn = {"error": str(exc)}
    return Overview(
        generated_at=now,
        window_seconds=window_seconds,
        bucket_seconds=window_seconds / buckets,
        migration=migration,
        series=drawn,
        queues=operations.queue_status(paths=paths, reader=queues),
        executors=executors(pool),
        workers=workers(celery),
    )
