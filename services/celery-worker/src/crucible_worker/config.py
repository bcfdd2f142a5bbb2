"""The Celery worker's settings: broker, downstream services, retry policies and housekeeping."""

from __future__ import annotations

from pydantic import Field

from crucible_contracts.limits import Limits, celery_time_limits
from crucible_contracts.settings import RetrySettings, ServiceSettings, split_urls
from crucible_runtime.dead_letters import DEFAULT_MAX_ENTRIES
from crucible_worker.reconcile import Rules

SECONDS_PER_DAY = 86_400


class Settings(ServiceSettings, RetrySettings):
    """Read from the environment (CELERY_BROKER_URL, EXECUTOR_SERVICE_URL, ...), once, in main.py."""

    celery_broker_url: str = "redis://127.0.0.1:6380/0"
    # Results go to storage; a result backend is only for operators and tests that want one.
    celery_result_backend: str | None = None
    storage_service_url: str = "http://127.0.0.1:8082"
    # executor-2 and executor-3; executor-1 serves the legacy path.
    executor_service_url: str = "http://127.0.0.1:8084,http://127.0.0.1:8085"
    # The legacy path, which the reconciler checks and re-dispatches to, and whose executors it
    # asks to stop a stuck legacy run's program.
    queue_service_url: str = "http://127.0.0.1:8002"
    legacy_executor_url: str = "http://127.0.0.1:8083"
    celery_concurrency: int = 2
    max_timeout: float = Limits().max_timeout

    # A worker process that dies mid-task (OOM, kill) sends it again after this delay (after
    # MAX_WORKER_LOSSES losses the run ends `error` instead, as on the legacy path).
    worker_lost_retry_delay: float = 1.0
    # How long an executor that could not be reached is skipped by a worker process.
    executor_down_cooldown: float = 5.0

    # Entries kept in the dead-letter queue (in the broker's Redis); the oldest go first.
    dead_letter_max: int = DEFAULT_MAX_ENTRIES

    retention_days: float = 30
    purge_interval_seconds: float = 3600
    # The reconciler of runs stuck in queued or running (reconcile.py), sent by beat.
    reconcile_interval_seconds: float = Field(default=60, gt=0)
    # A legacy run queued this long is looked up in the queue-service (whose deque a restart loses).
    reconcile_queued_after_seconds: float = Field(default=60, ge=0)
    # A Celery run queued this long whose message no queue holds any more is ended `error`.
    reconcile_celery_queued_after_seconds: float = Field(default=900, ge=0)
    # Beyond its timeout and the Celery hard-limit margin: how long a run may show no sign of
    # life while `running` before its consumer is taken for gone.
    reconcile_running_grace_seconds: float = Field(default=120, ge=0)
    # Times a run lost by the legacy queue is enqueued again before it ends `error`.
    reconcile_max_redispatches: int = Field(default=3, ge=0)
    # Stuck runs looked at per backend and round (the oldest first).
    reconcile_batch: int = Field(default=100, ge=1, le=500)
    result_expires_seconds: int = SECONDS_PER_DAY
    beat_schedule_filename: str = "celerybeat-schedule"

    def executor_urls(self) -> list[str]:
        return split_urls(self.executor_service_url)

    def every_executor_url(self) -> list[str]:
        """The executors of both paths: a stuck run's program may be on any of them."""
        return list(dict.fromkeys(self.executor_urls() + split_urls(self.legacy_executor_url)))

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

    def retention_seconds(self) -> float:
        return self.retention_days * SECONDS_PER_DAY

    def reconcile_rules(self) -> Rules:
        return Rules(
            legacy_queued_after=self.reconcile_queued_after_seconds,
            celery_queued_after=self.reconcile_celery_queued_after_seconds,
            running_grace=self.reconcile_running_grace_seconds,
            max_redispatches=self.reconcile_max_redispatches,
        )
