"""Settings of the queue-service and the queue-worker (one code base, one environment)."""

from __future__ import annotations

from pydantic import Field

from crucible_contracts.settings import RetrySettings, ServiceSettings, split_urls
from crucible_runtime.dead_letters import DEFAULT_MAX_ENTRIES


class Settings(ServiceSettings, RetrySettings):
    """Environment variables of both processes; each reads the part it needs.

    The queue-service uses QUEUE_LEASE_SECONDS, QUEUE_MAX_DEPTH and QUEUE_FINISHED_KEEP; the
    worker the URLs, QUEUE_WORKER_* and the retry budgets (BUSY_RETRY_*, TRANSIENT_RETRY_*,
    RECORD_RETRY_*: the same names as on the Celery path, see crucible_contracts.settings).
    """

    # queue-service
    queue_lease_seconds: float = Field(default=15, gt=0)
    queue_max_depth: int = Field(default=100_000, ge=1)
    queue_finished_keep: int = Field(default=10_000, ge=0)

    # queue-worker
    queue_service_url: str = "http://127.0.0.1:8002"
    storage_service_url: str = "http://127.0.0.1:8082"
    legacy_executor_url: str = "http://127.0.0.1:8083"
    queue_worker_concurrency: int = Field(default=2, ge=1, le=64)
    # How long a run that finds every executor slot taken waits for one in place (the worker may
    # hold more runs than the executors have slots) before a busy retry.
    executor_busy_wait_seconds: float = Field(default=2.0, ge=0, le=60)
    # Each poll waits up to this long at the queue-service for a task (a long poll: the task is
    # handed over the moment it is queued); 0 polls without waiting, backing off while idle.
    queue_poll_wait_seconds: float = Field(default=1.0, ge=0, le=30)
    queue_poll_interval: float = Field(default=0.05, gt=0)
    queue_poll_idle_max: float = Field(default=0.5, gt=0)
    queue_poll_outage_max: float = Field(default=5.0, gt=0)
    queue_worker_shutdown_grace: float = Field(default=30, ge=0)
    queue_worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    # The dead-letter queue, in the Redis the Celery path keeps it in (its broker): a run the
    # worker gives up is parked there too. Unset, it still ends `error` with its reason, but an
    # operator finds no entry to inspect or replay.
    dead_letter_redis_url: str | None = None
    dead_letter_max: int = Field(default=DEFAULT_MAX_ENTRIES, ge=1)

    @property
    def executor_urls(self) -> list[str]:
        return split_urls(self.legacy_executor_url)
