"""A given-up Celery task as a dead-letter entry (what it leaves behind is shared with the legacy
path: `crucible_runtime.dead_letters.record_give_up`).

No Celery here: the task_failure handler (failures.py) turns Celery's report into the arguments
of `dead_letter_for` and calls `record_give_up` in a pool process.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from crucible_contracts.errors import CrucibleError
from crucible_contracts.ids import is_eval_id
from crucible_contracts.models import DeadLetter, EvalTask
from crucible_contracts.names import Backend, Role
from crucible_runtime.clients import StorageClient
from crucible_runtime.lifecycle import GivenUp

log = logging.getLogger(__name__)


def unexpected_failure_reason(exc: BaseException) -> str:
    return f"unexpected {type(exc).__name__} in the worker (a bug): {exc}"


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def dead_letter_for(
    *,
    task_name: str,
    task_id: str | None,
    kwargs: dict[str, Any],
    exception: BaseException | None,
    traceback: str | None,
    reason: str,
    attempts: int,
    failed_at: datetime,
) -> DeadLetter:
    """The entry of one failure as Celery reported it.

    For a GivenUp the exception named is its cause (e.g. the Unavailable that exhausted the
    retries), which is what an operator needs; the traceback shows the whole chain.
    """
    cause = exception
    if isinstance(exception, GivenUp) and exception.__cause__ is not None:
        cause = exception.__cause__
    first_seen_at = parse_time(kwargs.get("first_seen_at"))
    if isinstance(exception, GivenUp):
        attempts = exception.attempts or attempts
        first_seen_at = exception.first_seen_at or first_seen_at
    return DeadLetter(
        **_run_fields(kwargs.get("task")),
        task_name=task_name,
        task_id=task_id,
        kwargs=kwargs,
        reason=reason,
        exception_type=_qualified_name(cause) if cause is not None else None,
        exception=str(cause) if cause is not None else None,
        traceback=traceback,
        attempts=attempts,
        failed_at=failed_at,
        first_seen_at=first_seen_at,
    )


def attempts_recorded(task: EvalTask, *, storage: StorageClient) -> int:
    """The attempts storage has for the run (for a failure reported without the task's context);
    0 when storage cannot say, which must not keep the entry out of the dead-letter queue."""
    try:
        view = storage.get_evaluation(task.eval_id)
    except CrucibleError as exc:
        log.warning("could not read the attempts of eval %s: %s", task.eval_id, exc)
        return 0
    return next((run.attempts for run in view.runs if run.role == task.role), 0)


def _run_fields(task: Any) -> dict[str, Any]:
    """eval_id, role and backend as far as the task argument gives them, valid or not.

    An eval_id that is not one (see crucible_contracts.ids) names no run: the entry's eval_id is
    then None, and what was sent stays in its kwargs.
    """
    if not isinstance(task, dict):
        return {}
    eval_id = task.get("eval_id")
    return {
        "eval_id": eval_id if is_eval_id(eval_id) else None,
        "role": _member(Role, task.get("role", Role.PRIMARY.value)),
        "backend": _member(Backend, task.get("backend")),
    }


def _member(enum: type[Role] | type[Backend], value: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        return None


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
