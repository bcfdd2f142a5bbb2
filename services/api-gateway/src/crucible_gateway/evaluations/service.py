"""The evaluations use cases: submit (validate, record, dispatch), submit a batch, read and list.

One function per route, keyword-only arguments, contract models in and out. An evaluation is
created in storage before it is dispatched (`dispatch`), so that no path ever runs work storage
does not know. Submitting and reading one run on the event loop (`AsyncStorageClient`); the
rest uses the sync clients from the threadpool. Cancelling is in `cancellation`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from crucible_contracts.errors import Busy, Complete, NotFound, Unavailable
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
    Program,
)
from crucible_contracts.names import Backend
from crucible_contracts.status import Status
from crucible_contracts.tenancy import DEFAULT_TENANT
from crucible_gateway import metrics
from crucible_gateway.evaluations.dispatch import NotDispatched, dispatch, dispatch_shadow
from crucible_gateway.evaluations.validation import validate_batch, validate_eval
from crucible_gateway.migration.models import MigrationSettings
from crucible_gateway.paths import Paths
from crucible_gateway.paths.routing import choose_backend, shadow_backend
from crucible_runtime.async_clients import AsyncStorageClient
from crucible_runtime.clients import StorageClient

# Hands a job (a coroutine function) on to run after the HTTP answer has gone out (FastAPI's
# BackgroundTasks.add_task).
Defer = Callable[[Callable[[], Awaitable[None]]], None]


@dataclass(frozen=True)
class Quota:
    """Whose evaluations these are, and how many of them may be queued or running at once
    (None: no cap); storage holds the cap in the transaction that creates each one."""

    tenant: str = DEFAULT_TENANT
    max_in_flight: int | None = None


NO_QUOTA = Quota()


# --- submitting ---------------------------------------------------------------------------------


async def submit(
    *,
    request: EvalRequest,
    storage: AsyncStorageClient,
    paths: Paths,
    migration: MigrationSettings,
    limits: Limits,
    languages: Sequence[str],
    defer: Defer,
    quota: Quota = NO_QUOTA,
) -> Accepted:
    """Validate, record (status queued) and dispatch one evaluation of `quota.tenant`.

    Raises InvalidInput (nothing recorded), Busy when the tenant is at its in-flight cap
    (storage counts it atomically; nothing recorded), Unavailable when storage cannot record it
    (nothing dispatched), NoPathAvailable when neither path took it (recorded as `error`). A
    shadow run, when the settings ask for one, is handed to `defer` (the route runs it after
    answering).
    """
    valid = validate_eval(request, limits=limits, languages=languages)
    return await _accept(
        valid, storage=storage, paths=paths, migration=migration, quota=quota, defer=defer
    )


async def submit_batch(
    *,
    batch: BatchRequest,
    storage: AsyncStorageClient,
    paths: Paths,
    migration: MigrationSettings,
    limits: Limits,
    languages: Sequence[str],
    defer: Defer,
    quota: Quota = NO_QUOTA,
) -> BatchAccepted:
    """Validate every item first (at most `limits.max_batch`: the tenant's own batch limit),
    then accept each in order; one entry per item.

    An item neither path could take is answered with status `error` (and recorded so) instead of
    failing the items around it. If storage becomes unreachable mid-batch, or the tenant reaches
    its in-flight cap mid-batch (Busy), the error carries the eval_ids already accepted, so that
    the client can tell which items exist.
    """
    items = validate_batch(batch, limits=limits, languages=languages)
    accepted: list[Accepted] = []
    for item in items:
        try:
            accepted.append(
                await _accept(
                    item,
                    storage=storage,
                    paths=paths,
                    migration=migration,
                    quota=quota,
                    defer=defer,
                )
            )
        except NotDispatched as exc:
            accepted.append(exc.entry)
        except Busy as exc:
            details = {key: value for key, value in exc.details.items() if key != "retry_after"}
            raise Busy(
                exc.message,
                retry_after=exc.retry_after,
                **details,
                accepted=Complete(entry.eval_id for entry in accepted),
            ) from exc
        except Unavailable as exc:
            accepted_ids = Complete(entry.eval_id for entry in accepted)
            raise Unavailable(exc.message, accepted=accepted_ids) from exc
    return BatchAccepted(evaluations=accepted)


async def _accept(
    request: EvalRequest,
    *,
    storage: AsyncStorageClient,
    paths: Paths,
    migration: MigrationSettings,
    quota: Quota,
    defer: Defer,
) -> Accepted:
    eval_id = new_eval_id()
    chosen = choose_backend(eval_id=eval_id, routing_key=request.routing_key, migration=migration)
    # The shadow run (always on the other path) is recorded with the evaluation, in one call.
    shadow = shadow_backend(
        eval_id=eval_id, primary=chosen, routing_key=request.routing_key, migration=migration
    )
    program = Program.of(request)
    view = await storage.create_evaluation(
        EvaluationCreate(
            eval_id=eval_id,
            program=program,
            priority=request.priority,
            backend=chosen,
            routing_key=request.routing_key,
            tenant=quota.tenant,
            max_in_flight=quota.max_in_flight,
            shadow_backend=shadow,
        )
    )
    task = EvalTask(eval_id=eval_id, backend=chosen, program=program, priority=request.priority)
    backend = await dispatch(
        task=task, storage=storage, paths=paths, migration=migration, view=view, shadow=shadow
    )
    metrics.SUBMITTED.labels(backend.value).inc()
    if shadow is not None:
        shadow = backend.other  # the primary may have fallen back to the shadow's path
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


# --- reading ------------------------------------------------------------------------------------


async def evaluation_json(
    *, eval_id: str, storage: AsyncStorageClient, tenant: str | None = None
) -> bytes:
    """`get_evaluation` as storage's JSON of the `EvaluationView`, passed on without a parse and
    a new serialisation (the read a client polls with); the same NotFound answers."""
    if not is_eval_id(eval_id):
        raise NotFound(f"no evaluation {eval_id!r}", eval_id=eval_id)
    return await storage.evaluation_json(eval_id, tenant=tenant)


def get_evaluation(
    *, eval_id: str, storage: StorageClient, tenant: str | None = None
) -> EvaluationView:
    """The evaluation as storage has it; NotFound for unknown and for malformed ids, and (with
    `tenant`) for another tenant's, with the same answer as for an unknown one."""
    if not is_eval_id(eval_id):
        raise NotFound(f"no evaluation {eval_id!r}", eval_id=eval_id)
    return storage.get_evaluation(eval_id, tenant=tenant)


def list_evaluations(
    *,
    storage: StorageClient,
    status: Status | None,
    backend: Backend | None,
    limit: int,
    offset: int,
    tenant: str | None = None,
) -> EvaluationPage:
    """One page, newest first; `tenant`, when given, keeps that tenant's evaluations only."""
    return storage.list_evaluations(
        status=status, backend=backend, limit=limit, offset=offset, tenant=tenant
    )
