"""The gateway's use cases: accept evaluations (validate, record, dispatch with fallback) and report.

One function per route, keyword-only arguments, contract models in and out. An evaluation is
created in storage before it is dispatched, so that no path ever runs work storage does not know.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from crucible_contracts.clients import StorageClient
from crucible_contracts.dlq import DeadLetterStore
from crucible_contracts.errors import CrucibleError, NoPathAvailable, NotFound, Unavailable
from crucible_contracts.ids import is_eval_id, new_eval_id
from crucible_contracts.limits import Limits
from crucible_contracts.models import (
    Accepted,
    BatchAccepted,
    BatchRequest,
    EvalRequest,
    EvalTask,
    EvaluationCreate,
    EvaluationPage,
    EvaluationView,
    RunCreate,
    RunUpdate,
)
from crucible_contracts.names import Backend, Role
from crucible_contracts.status import Status
from crucible_gateway import metrics
from crucible_gateway.evaluations.validation import validate_batch, validate_eval
from crucible_gateway.paths.celery_client import CeleryDispatcher
from crucible_gateway.paths.legacy_client import LegacyQueueClient
from crucible_gateway.paths.routing import (
    MigrationSettings,
    choose_backend,
    fallback_for,
    shadow_backend,
)

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0

# Runs a job: at once, or after the HTTP answer has gone out (FastAPI's BackgroundTasks.add_task).
Defer = Callable[[Callable[[], None]], None]


def run_now(job: Callable[[], None]) -> None:
    job()


@dataclass(frozen=True)
class Paths:
    """The two ways to hand over an evaluation, behind one call."""

    legacy: LegacyQueueClient
    celery: CeleryDispatcher

    def submit(self, backend: Backend, task: EvalTask) -> None:
        """Raises a CrucibleError (Unavailable, Busy, ...) when `backend` did not take `task`."""
        if backend is Backend.CELERY:
            self.celery.submit(task)
        else:
            self.legacy.submit(task)


class NotDispatched(NoPathAvailable):
    """NoPathAvailable that also carries the entry a batch answers for the item (status error)."""

    def __init__(self, message: str, *, entry: Accepted, **details: Any) -> None:
        super().__init__(message, **details)
        self.entry = entry


# --- submitting ---------------------------------------------------------------------------------


def submit(
    *,
    request: EvalRequest,
    storage: StorageClient,
    paths: Paths,
    migration: MigrationSettings,
    limits: Limits,
    languages: Sequence[str],
    defer: Defer = run_now,
) -> Accepted:
    """Validate, record (status queued) and dispatch one evaluation.

    Raises InvalidInput (nothing recorded), Unavailable when storage cannot record it (nothing
    dispatched), NoPathAvailable when neither path took it (recorded as `error`). A shadow run,
    when the settings ask for one, is handed to `defer` (the route runs it after answering).
    """
    valid = validate_eval(request, limits=limits, languages=languages)
    return _accept(valid, storage=storage, paths=paths, migration=migration, defer=defer)


def submit_batch(
    *,
    batch: BatchRequest,
    storage: StorageClient,
    paths: Paths,
    migration: MigrationSettings,
    limits: Limits,
    languages: Sequence[str],
    defer: Defer = run_now,
) -> BatchAccepted:
    """Validate every item first, then accept each in order; one entry per item.

    An item neither path could take is answered with status `error` (and recorded so) instead of
    failing the items around it. If storage becomes unreachable mid-batch, Unavailable carries the
    eval_ids already accepted, so that the client can tell which items exist.
    """
    items = validate_batch(batch, limits=limits, languages=languages)
    accepted: list[Accepted] = []
    for item in items:
        try:
            accepted.append(
                _accept(item, storage=storage, paths=paths, migration=migration, defer=defer)
            )
        except NotDispatched as exc:
            accepted.append(exc.entry)
        except Unavailable as exc:
            raise Unavailable(exc.message, accepted=[entry.eval_id for entry in accepted]) from exc
    return BatchAccepted(evaluations=accepted)


def _accept(
    request: EvalRequest,
    *,
    storage: StorageClient,
    paths: Paths,
    migration: MigrationSettings,
    defer: Defer,
) -> Accepted:
    eval_id = new_eval_id()
    chosen = choose_backend(eval_id=eval_id, routing_key=request.routing_key, migration=migration)
    view = storage.create_evaluation(
        EvaluationCreate(
            eval_id=eval_id,
            code=request.code,
            language=request.language,
            timeout=request.timeout,
            stdin=request.stdin,
            priority=request.priority,
            backend=chosen,
            routing_key=request.routing_key,
        )
    )
    task = EvalTask(
        eval_id=eval_id,
        backend=chosen,
        code=request.code,
        language=request.language,
        timeout=request.timeout,
        stdin=request.stdin,
        priority=request.priority,
    )
    backend = _dispatch(task, storage=storage, paths=paths, migration=migration, view=view)
    metrics.SUBMITTED.labels(backend.value).inc()
    shadow = shadow_backend(
        eval_id=eval_id, primary=backend, routing_key=request.routing_key, migration=migration
    )
    if shadow is not None:
        primary = task.model_copy(update={"backend": backend})
        defer(
            partial(dispatch_shadow, primary=primary, backend=shadow, storage=storage, paths=paths)
        )
    return Accepted(
        eval_id=eval_id,
        status=Status.QUEUED,
        backend=backend,
        shadow_backend=shadow,
        fallback_from=None if backend is chosen else chosen,
        created_at=view.created_at,
    )


def _dispatch(
    task: EvalTask,
    *,
    storage: StorageClient,
    paths: Paths,
    migration: MigrationSettings,
    view: EvaluationView,
) -> Backend:
    """Hand `task` to its chosen path, else to the fallback; returns the path that took it."""
    chosen = task.backend
    first = _try_path(paths, chosen, task)
    if first is None:
        return chosen
    errors = {chosen.value: str(first)}
    other = fallback_for(chosen, migration=migration)
    if other is not None:
        _record_fallback(storage, task.eval_id, chosen=chosen, other=other, reason=str(first))
        second = _try_path(paths, other, task.model_copy(update={"backend": other}))
        if second is None:
            metrics.FALLBACKS.labels(chosen.value, other.value).inc()
            return other
        errors[other.value] = str(second)
    reason = "no path could take the evaluation: " + "; ".join(
        f"{name}: {error}" for name, error in errors.items()
    )
    _record_error(storage, task.eval_id, reason=reason)
    metrics.NO_PATH.inc()
    entry = Accepted(
        eval_id=task.eval_id,
        status=Status.ERROR,
        backend=other or chosen,
        fallback_from=chosen if other else None,
        created_at=view.created_at,
    )
    raise NotDispatched(reason, entry=entry, eval_id=task.eval_id, errors=errors)


def _try_path(paths: Paths, backend: Backend, task: EvalTask) -> CrucibleError | None:
    """None when `backend` took `task`, else the error it failed with (counted, logged)."""
    try:
        paths.submit(backend, task)
    except CrucibleError as exc:
        metrics.DISPATCH_FAILURES.labels(backend.value).inc()
        log.warning("eval %s: %s path did not take it: %s", task.eval_id, backend, exc)
        return exc
    return None


def _record_fallback(
    storage: StorageClient, eval_id: str, *, chosen: Backend, other: Backend, reason: str
) -> None:
    update = RunUpdate(backend=other, detail={"fallback_from": chosen.value, "reason": reason})
    try:
        storage.update_run(eval_id, Role.PRIMARY, update)
    except CrucibleError as exc:
        # Still dispatch: a run recorded under the wrong backend beats one that never runs.
        log.error("eval %s: could not record fallback %s -> %s: %s", eval_id, chosen, other, exc)


def _record_error(storage: StorageClient, eval_id: str, *, reason: str) -> None:
    try:
        storage.update_run(eval_id, Role.PRIMARY, RunUpdate(status=Status.ERROR, reason=reason))
    except CrucibleError as exc:
        log.error("eval %s: could not record that no path took it: %s", eval_id, exc)


# --- shadow runs ---------------------------------------------------------------------------------


def dispatch_shadow(
    *, primary: EvalTask, backend: Backend, storage: StorageClient, paths: Paths
) -> None:
    """Record and dispatch the shadow run of an accepted evaluation (after the client's answer).

    The shadow run has the primary's eval_id and program, runs on `backend` (the path the primary
    did not take), never with priority, and never falls back: a shadow that its path cannot take
    ends `error` with the reason, which the comparison then reports. Nothing here can fail the
    client's request: the primary run is already on its way.
    """
    eval_id = primary.eval_id
    try:
        storage.add_run(eval_id, RunCreate(role=Role.SHADOW, backend=backend))
    except CrucibleError as exc:
        metrics.SHADOWS.labels(backend.value, "error").inc()
        log.error("eval %s: shadow run not recorded, so not dispatched: %s", eval_id, exc)
        return
    task = primary.model_copy(update={"role": Role.SHADOW, "backend": backend, "priority": False})
    error = _try_path(paths, backend, task)
    if error is None:
        metrics.SHADOWS.labels(backend.value, "ok").inc()
        return
    metrics.SHADOWS.labels(backend.value, "error").inc()
    update = RunUpdate(
        status=Status.ERROR, reason=f"the {backend} path did not take the shadow run: {error}"
    )
    try:
        storage.update_run(eval_id, Role.SHADOW, update)
    except CrucibleError as exc:
        log.error("eval %s: could not record that the shadow run was not taken: %s", eval_id, exc)


# --- reading ------------------------------------------------------------------------------------


def get_evaluation(*, eval_id: str, storage: StorageClient) -> EvaluationView:
    """The evaluation as storage has it; NotFound for unknown and for malformed ids."""
    if not is_eval_id(eval_id):
        raise NotFound(f"no evaluation {eval_id!r}", eval_id=eval_id)
    return storage.get_evaluation(eval_id)


def list_evaluations(
    *,
    storage: StorageClient,
    status: Status | None,
    backend: Backend | None,
    limit: int,
    offset: int,
) -> EvaluationPage:
    return storage.list_evaluations(status=status, backend=backend, limit=limit, offset=offset)


def queue_status(*, paths: Paths, dead_letters: DeadLetterStore) -> dict[str, Any]:
    """Depth of each path and each Celery queue, and the dead-letter queue's; a part that cannot
    be asked reports {"error": ...} instead."""
    report: dict[str, Any] = {}
    try:
        report["legacy"] = paths.legacy.queue_status(timeout=HEALTH_TIMEOUT)
    except CrucibleError as exc:
        report["legacy"] = {"error": str(exc)}
    try:
        depths = paths.celery.queue_depths()
        report["celery"] = {"queues": depths, "total": sum(depths.values())}
    except CrucibleError as exc:
        report["celery"] = {"error": str(exc)}
    try:
        report["dead_letter"] = {"entries": dead_letters.count()}
    except CrucibleError as exc:
        report["dead_letter"] = {"error": str(exc)}
    return report


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
    checks = {
        "storage": lambda: storage.request("GET", "/health", timeout=HEALTH_TIMEOUT),
        "queue_service": lambda: paths.legacy.ping(timeout=HEALTH_TIMEOUT),
        "broker": paths.celery.ping,
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
