"""The one plain procedure both consumers (legacy queue-worker, Celery task) follow for a run.

start_run → executors.execute → record_result. Busy and Unavailable from the executors propagate
so that each consumer can retry with its own mechanism; nothing here sleeps except the bounded
retry around recording a result, because running a finished program again is worse than waiting.
"""

from __future__ import annotations

import contextlib
import logging
import time

from crucible_contracts.errors import Conflict, Unavailable
from crucible_contracts.models import EvalTask, ExecuteResult, RunUpdate
from crucible_contracts.retry import RECORD_RESULT, RetryPolicy
from crucible_contracts.status import Status
from crucible_runtime.clients import ExecutorPool, StorageClient, execute_request_for

log = logging.getLogger(__name__)


def start_run(task: EvalTask, *, storage: StorageClient, attempt: int) -> bool:
    """Mark the run `running`. False when it has already ended (cancelled, finished): skip it."""
    try:
        storage.update_run(
            task.eval_id, task.role, RunUpdate(status=Status.RUNNING, attempts=attempt)
        )
    except Conflict:
        log.info("eval %s %s already ended; not running it", task.eval_id, task.role)
        return False
    return True


def record_result(
    task: EvalTask,
    result: ExecuteResult,
    *,
    storage: StorageClient,
    policy: RetryPolicy = RECORD_RESULT,
) -> None:
    """Store the executor's result, retrying while storage is unreachable.

    A Conflict means the run ended meanwhile (e.g. cancelled): that end stands and the result is
    dropped. Raises Unavailable once the policy is exhausted.
    """
    update = RunUpdate(
        status=result.status,
        executor_id=result.executor_id,
        exit_code=result.exit_code,
        output=result.output,
        error=result.error,
        output_truncated=result.output_truncated,
        error_truncated=result.error_truncated,
        runtime_ms=result.runtime_ms,
        reason=result.reason,
    )
    for attempt in range(1, policy.max_attempts + 1):
        try:
            storage.update_run(task.eval_id, task.role, update)
            return
        except Conflict:
            log.info("eval %s %s ended before its result arrived", task.eval_id, task.role)
            return
        except Unavailable:
            if policy.exhausted(attempt):
                raise
            time.sleep(policy.delay(attempt))


def end_with_error(task: EvalTask, reason: str, *, storage: StorageClient, attempts: int) -> None:
    """End the run `error` (the platform could not run it); a run that already ended stays as is."""
    with contextlib.suppress(Conflict):
        storage.update_run(
            task.eval_id,
            task.role,
            RunUpdate(status=Status.ERROR, reason=reason, attempts=attempts),
        )


def process(
    task: EvalTask,
    *,
    storage: StorageClient,
    executors: ExecutorPool,
    attempt: int,
    record: RetryPolicy = RECORD_RESULT,
) -> ExecuteResult | None:
    """Run one task to its recorded end; None when the run had already ended and was skipped.

    Busy and other CrucibleErrors of the executors propagate: `retry.next_step` decides.
    """
    if not start_run(task, storage=storage, attempt=attempt):
        return None
    result = executors.execute(execute_request_for(task))
    record_result(task, result, storage=storage, policy=record)
    return result
