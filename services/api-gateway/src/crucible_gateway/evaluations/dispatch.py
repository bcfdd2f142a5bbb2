"""Handing an accepted evaluation to a path: the chosen one, else the fallback; and its shadow run.

The evaluation is already recorded in storage (status queued) when it gets here, so every outcome is
recorded too: the path that took it (with `fallback_from` when it fell back), `error` when no path
took it; a shadow run its path did not take stays `queued` for the reconciler.
"""

from __future__ import annotations

import logging
from typing import Any

from crucible_contracts.errors import CrucibleError, NoPathAvailable
from crucible_contracts.models import Accepted, EvalTask, EvaluationView, RunUpdate
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_gateway import metrics
from crucible_gateway.migration.models import MigrationSettings
from crucible_gateway.paths import Path, Paths
from crucible_gateway.paths.routing import fallback_for
from crucible_runtime.async_clients import AsyncStorageClient

log = logging.getLogger(__name__)


class NotDispatched(NoPathAvailable):
    """NoPathAvailable that also carries the entry a batch answers for the item (status error)."""

    def __init__(self, message: str, *, entry: Accepted, **details: Any) -> None:
        super().__init__(message, **details)
        self.entry = entry


async def dispatch(
    *,
    task: EvalTask,
    storage: AsyncStorageClient,
    paths: Paths,
    migration: MigrationSettings,
    view: EvaluationView,
    shadow: Backend | None = None,
) -> Backend:
    """Hand `task` to its chosen path, else to the fallback; returns the path that took it.

    `shadow` is the path of the evaluation's shadow run, recorded queued with it (None: none).
    A fallback is recorded on the run before it is tried, and moves the shadow run to the path
    the primary left (the shadow is always on the other path). Raises NotDispatched (a
    NoPathAvailable, 503) when no path took it, after recording the run as `error`, and the
    shadow run too: neither path could take the program.
    """
    chosen = task.backend
    first = await _try_path(paths[chosen], task)
    if first is None:
        return chosen
    errors = {chosen.value: str(first)}
    other = fallback_for(chosen, migration=migration)
    if other is not None:
        await _record_fallback(storage, task.eval_id, chosen=chosen, other=other, reason=str(first))
        if shadow is not None:
            await _move_shadow(storage, task.eval_id, to=chosen, reason=str(first))
        second = await _try_path(paths[other], task.model_copy(update={"backend": other}))
        if second is None:
            metrics.FALLBACKS.labels(chosen.value, other.value).inc()
            return other
        errors[other.value] = str(second)
    reason = "no path could take the evaluation: " + "; ".join(
        f"{name}: {error}" for name, error in errors.items()
    )
    await _record_error(storage, task.eval_id, reason=reason)
    if shadow is not None:
        await _record_error(storage, task.eval_id, reason=reason, role=Role.SHADOW)
    metrics.NO_PATH.inc()
    entry = Accepted(
        eval_id=task.eval_id,
        status=Status.ERROR,
        backend=other or chosen,
        fallback_from=chosen if other else None,
        created_at=view.created_at,
    )
    raise NotDispatched(reason, entry=entry, eval_id=task.eval_id, errors=errors)


async def _try_path(path: Path, task: EvalTask) -> CrucibleError | None:
    """None when `path` took `task`, else the error it failed with (counted, logged)."""
    try:
        await path.submit_async(task)
    except CrucibleError as exc:
        metrics.DISPATCH_FAILURES.labels(path.backend.value).inc()
        log.warning("eval %s: %s path did not take it: %s", task.eval_id, path.backend, exc)
        return exc
    return None


async def _record_fallback(
    storage: AsyncStorageClient, eval_id: str, *, chosen: Backend, other: Backend, reason: str
) -> None:
    update = RunUpdate(backend=other, detail={"fallback_from": chosen.value, "reason": reason})
    try:
        await storage.update_run(eval_id, Role.PRIMARY, update)
    except CrucibleError as exc:
        # Still dispatch: a run recorded under the wrong backend beats one that never runs.
        log.error("eval %s: could not record fallback %s -> %s: %s", eval_id, chosen, other, exc)


async def _move_shadow(
    storage: AsyncStorageClient, eval_id: str, *, to: Backend, reason: str
) -> None:
    update = RunUpdate(backend=to, detail={"primary_fell_back": True, "reason": reason})
    try:
        await storage.update_run(eval_id, Role.SHADOW, update)
    except CrucibleError as exc:
        # The shadow is then dispatched to `to` while storage names the other path; the
        # comparison still compares the two runs, and the mislabelled run is logged here.
        log.error("eval %s: could not move the shadow run to %s: %s", eval_id, to, exc)


async def _record_error(
    storage: AsyncStorageClient, eval_id: str, *, reason: str, role: Role = Role.PRIMARY
) -> None:
    try:
        await storage.update_run(eval_id, role, RunUpdate(status=Status.ERROR, reason=reason))
    except CrucibleError as exc:
        log.error("eval %s: could not record that no path took its %s run: %s", eval_id, role, exc)


# --- shadow runs ---------------------------------------------------------------------------------


async def dispatch_shadow(
    *, primary: EvalTask, backend: Backend, storage: AsyncStorageClient, paths: Paths
) -> None:
    """Dispatch the shadow run of an accepted evaluation (after the client's answer); storage
    recorded it queued with the evaluation.

    The shadow run has the primary's eval_id and program, runs on `backend` (the path the primary
    did not take), never with priority, and never falls back: a shadow that its path cannot take
    now stays `queued` until the leader's reconciler sends it again (a path down for a moment
    must not turn into a mismatch). Nothing here can fail the client's request: the primary run
    is already on its way.
    """
    eval_id = primary.eval_id
    task = primary.model_copy(update={"role": Role.SHADOW, "backend": backend, "priority": False})
    error = await _try_path(paths[backend], task)
    if error is None:
        metrics.SHADOWS.labels(backend.value, "ok").inc()
        return
    # Left queued: the leader's reconciler sends it again once its path is back (a run queued
    # past RECONCILE_*QUEUED_AFTER_SECONDS that its path does not hold), and ends it `error`
    # only after its re-dispatch budget.
    metrics.SHADOWS.labels(backend.value, "refused").inc()
    log.warning(
        "eval %s: the %s path did not take the shadow run (%s); left queued for the reconciler",
        eval_id,
        backend,
        error,
    )
