"""Settings of the queue-service and the queue-worker (one code base, one environment)."""

from __future__ import annotations

from pydantic import Field

from crucible_contracts.retry import EXECUTOR_BUSY, RECORD_RESULT, TRANSIENT, RetryPolicy
from crucible_contracts.settings import ServiceSettings, split_urls


class Settings(ServiceSettings):
    """Environment variables of both processes; each reads the part it needs.

    The queue-service uses QUEUE_LEASE_SECONDS, QUEUE_MAX_DEPTH and QUEUE_FINISHED_KEEP; the
    worker the URLs, QUEUE_WORKER_* and the retry policies (QUEUE_TRANSIENT_*, QUEUE_BUSY_*,
    QUEUE_RECORD_*), whose defaults are those of `crucible_contracts.retry`.
    """

    # queue-service
    queue_lease_seconds: float = Field(default=600, gt=0)
    queue_max_depth: int = Field(default=100_000, ge=1)
    queue_finished_keep: int = Field(default=10_000, ge=0)

    # queue-worker
    queue_service_url: str = "http://127.0.0.1:8002"
    storage_service_url: str = "http://127.0.0.1:8082"
    legacy_executor_url: str = "http://127.0.0.1:8083"
    queue_worker_concurrency: int = Field(default=2, ge=1, le=64)
    queue_poll_interval: float = Field(default=0.05, gt=0)
    queue_poll_idle_max: float = Field(default=0.5, gt=0)
    queue_poll_outage_max: float = Field(default=5.0, gt=0)
    queue_max_attempts: int = Field(default=3, ge=1)
    queue_worker_shutdown_grace: float = Field(default=30, ge=0)
    queue_worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    queue_transient_attempts: int = Field(default=TRANSIENT.max_attempts, ge=1)
    queue_transient_base_delay: float = Field(default=TRANSIENT.base_delay, ge=0)
    queue_transient_max_delay: float = Field(default=TRANSIENT.max_delay, ge=0)
    queue_busy_attempts: int = Field(default=EXECUTOR_BUSY.max_attempts, ge=1)
    queue_busy_base_delay: float = Field(default=EXECUTOR_BUSY.base_delay, ge=0)
    queue_busy_max_delay: float = Field(default=EXECUTOR_BUSY.max_delay, ge=0)
    queue_record_attempts: int = Field(default=RECORD_RESULT.max_attempts, ge=1)
    queue_record_base_delay: float = Field(default=RECORD_RESULT.base_delay, ge=0)
    queue_record_max_delay: float = Field(default=RECORD_RESULT.max_delay, ge=0)

    @property
    def executor_urls(self) -> list[str]:
        return split_urls(self.legacy_executor_url)

    @property
    def transient_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.queue_transient_attempts,
            base_delay=self.queue_transient_base_delay,
            max_delay=self.queue_transient_max_delay,
        )

    @property
    def busy_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.queue_busy_attempts,
            base_delay=self.queue_busy_base_delay,
            max_delay=self.queue_busy_max_delay,
        )

    @property
    def record_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.queue_record_attempts,
            base_delay=self.queue_record_base_delay,
            max_delay=self.queue_record_max_delay,
        )
