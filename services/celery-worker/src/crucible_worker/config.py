"""The Celery worker's settings: broker, downstream services and retry policies."""

from __future__ import annotations

from crucible_contracts.limits import Limits, celery_time_limits
from crucible_contracts.settings import RetrySettings, ServiceSettings, split_urls
from crucible_runtime.dead_letters import DEFAULT_MAX_ENTRIES

SECONDS_PER_DAY = 86_400


class Settings(ServiceSettings, RetrySettings):
    """Read from the environment (CELERY_BROKER_URL, EXECUTOR_SERVICE_URL, ...), once, in main.py."""

    celery_broker_url: str = "redis://127.0.0.1:6380/0"
    # Results go to storage; a result backend is only for operators and tests that want one.
    celery_result_backend: str | None = None
    storage_service_url: str = "http://127.0.0.1:8082"
    # executor-2 and executor-3; executor-1 serves the legacy path.
    executor_service_url: str = "http://127.0.0.1:8084,http://127.0.0.1:8085"
    celery_concurrency: int = 2
    max_timeout: float = Limits().max_timeout

    # A worker process that dies mid-task (OOM, kill) sends it again after this delay (after
    # MAX_WORKER_LOSSES losses the run ends `error` instead, as on the legacy path).
    worker_lost_retry_delay: float = 1.0
    # How long an executor that could not be reached is skipped by a worker process.
    executor_down_cooldown: float = 5.0
    # How long a run that finds every executor slot taken waits for one in place (the worker may
    # run more programs at once than the executors have slots) before a busy retry.
    executor_busy_wait_seconds: float = 2.0

    # Entries kept in the dead-letter queue (in the broker's Redis); the oldest go first.
    dead_letter_max: int = DEFAULT_MAX_ENTRIES

    result_expires_seconds: int = SECONDS_PER_DAY

    # Celery's task events (received, started, succeeded, ...), which Flower's task views are
    # made of. Each costs the worker a publish and Flower its processing: about 3 ms of CPU per
    # evaluation between them (docs/benchmarks.md). Off, Flower still shows workers and queues.
    celery_task_events: bool = True

    def executor_urls(self) -> list[str]:
        return split_urls(self.executor_service_url)

    def default_time_limits(self) -> tuple[float, float]:
        """(soft, hard) limits for a task sent without its own: those of the longest program."""
        return celery_time_limits(self.max_timeout)

    def visibility_timeout(self) -> int:
        """Seconds Redis waits before redelivering an unacknowledged task.

        With acks_late a task stays unacknowledged while it waits out a retry countdown and then
        runs up to its hard limit; a shorter visibility timeout would hand it to a second worker
        while the first is still on it.
        """
        longest_delay = max(self.busy_retry_max_delay, self.transient_retry_max_delay)
        return int(self.default_time_limits()[1] + longest_delay + 60)
