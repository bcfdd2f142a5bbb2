"""Cancelling an evaluation on either path: the stored status is the flag, the rest is prompt stopping.

The run is moved to `cancelled` in storage first. That write is what makes the cancel stick: both
consumers mark a run `running` through storage before they start it and record results through
storage after, and a cancelled run refuses both (409), so no late result ever overwrites it.
Then the run is withdrawn from where it waits (the legacy deque; a Celery revoke, which workers
only hold in memory) and every executor is asked to kill the program in case it already started.
"""

from __future__ import annotations

import logging

from crucible_contracts.errors import Conflict, CrucibleError, NotFound
from crucible_contracts.models import EvaluationView, RunUpdate, RunView
from crucible_contracts.names import Role
from crucible_contracts.status import Status
from crucible_gateway.paths import Paths
from crucible_runtime.clients import ExecutorPool, StorageClient

log = logging.getLogger(__name__)

CANCEL_REASON = "cancelled by request"


def cancel(
    *,
    evaluation: EvaluationView,
    terminate: bool,
    storage: StorageClient,
    paths: Paths,
    executors: ExecutorPool | None,
    tenant: str | None = None,
) -> EvaluationView:
    """End `evaluation` (as just read from storage) `cancelled`, its shadow run too. Conflict (409)
    when it has already ended, or when it is running and `terminate` is false (its program would
    have to be killed). `tenant` scopes the writes at storage too (another tenant's: 404)."""
    view, eval_id = evaluation, evaluation.eval_id
    if view.status.is_terminal():
        raise _already_ended(view)
    if view.status is Status.RUNNING and not terminate:
        raise Conflict(
            f"evaluation {eval_id} is running; cancel with ?terminate=true to stop its program",
            eval_id=eval_id,
            status=view.status.value,
        )
    for run in sorted(view.runs, key=lambda run: run.role is not Role.PRIMARY):
        if run.status.is_terminal():
            continue
        try:
            storage.update_run(
                eval_id,
                run.role,
                RunUpdate(status=Status.CANCELLED, reason=CANCEL_REASON),
                tenant=tenant,
            )
        except Conflict:
            # It ended between our read and our write: that end stands.
            if run.role is Role.PRIMARY:
                raise _already_ended(storage.get_evaluation(eval_id)) from None
            continue
        _withdraw(eval_id, run, paths)
    if executors is not None:
        # Also when it was queued when read: it may have started since.
        executors.kill(eval_id)
    return storage.get_evaluation(eval_id)


def _withdraw(eval_id: str, run: RunView, paths: Paths) -> None:
    """Best effort: a run left behind is skipped by its consumer (storage says cancelled)."""
    try:
        paths[run.backend].withdraw(eval_id, run.role)
    except (NotFound, Conflict):
        pass  # not queued there (any more): already taken, or lost; storage has the final word
    except CrucibleError as exc:
        log.warning(
            "eval %s: could not withdraw the %s run from %s: %s",
            eval_id,
            run.role,
            run.backend,
            exc,
        )


def _already_ended(view: EvaluationView) -> Conflict:
    return Conflict(
        f"evaluation {view.eval_id} has already ended ({view.status})",
        eval_id=view.eval_id,
        status=view.status.value,
    )
