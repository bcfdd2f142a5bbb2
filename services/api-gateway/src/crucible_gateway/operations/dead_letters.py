"""Operators' handling of the dead-letter queue: list, inspect, replay, purge.

A replay sends the given-up run again as a fresh attempt, on the path the run belongs to: storage
reopens the run (`error` → `queued`, the one explicit way out of a terminal status, capped per
run), the task is handed to that path again, and the entry leaves the queue. Should the run fail
again, its consumer files a new entry.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from crucible_contracts.errors import Conflict, CrucibleError
from crucible_contracts.models import DeadLetter, EvalTask, RunUpdate
from crucible_contracts.names import Backend
from crucible_contracts.status import Status
from crucible_gateway.operations.models import DeadLetterPage, Purged, Replayed
from crucible_gateway.paths import Paths
from crucible_runtime.clients import StorageClient
from crucible_runtime.dead_letters import DeadLetterStore

log = logging.getLogger(__name__)


def list_entries(*, store: DeadLetterStore, limit: int, offset: int) -> DeadLetterPage:
    return DeadLetterPage(
        items=store.list(limit=limit, offset=offset),
        total=store.count(),
        limit=limit,
        offset=offset,
    )


def get_entry(*, entry_id: str, store: DeadLetterStore) -> DeadLetter:
    """One entry; NotFound when there is none with that id."""
    return store.get(entry_id)


def remove_entry(*, entry_id: str, store: DeadLetterStore) -> DeadLetter:
    """Take one entry out of the queue without replaying it; returns it. NotFound when absent."""
    return store.remove(entry_id)


def purge(*, store: DeadLetterStore) -> Purged:
    """Empty the dead-letter queue; says how many entries were removed."""
    return Purged(purged=store.purge())


def replay(
    *, entry_id: str, actor: str, store: DeadLetterStore, storage: StorageClient, paths: Paths
) -> Replayed:
    """Send the entry's run again. Conflict when the entry cannot say which run it was, when
    the run is no longer `error`, or when it was replayed too often (storage's cap)."""
    entry = store.get(entry_id)
    task = _task_of(entry)
    run = storage.replay_run(task.eval_id, task.role)
    try:
        paths[task.backend].submit(task)
    except CrucibleError as exc:
        # Reopened but not sent: close it again rather than leave it queued with no message.
        reason = f"replay by {actor} could not be sent: {exc}"
        storage.update_run(task.eval_id, task.role, RunUpdate(status=Status.ERROR, reason=reason))
        raise
    store.remove(entry_id)
    log.warning(
        "dead letter %s (eval %s %s) replayed on the %s path by %s",
        entry_id,
        task.eval_id,
        task.role,
        task.backend,
        actor,
    )
    return Replayed(entry=entry, run=run)


def _task_of(entry: DeadLetter) -> EvalTask:
    """The entry's task, bound for the path its run belongs to: the entry's `backend`, else the
    task's own, else Celery (entries written before the legacy path had dead letters)."""
    raw = entry.kwargs.get("task")
    fields = raw if isinstance(raw, dict) else {}
    backend = entry.backend or fields.get("backend") or Backend.CELERY
    try:
        return EvalTask.model_validate({**fields, "backend": backend})
    except ValidationError as exc:
        raise Conflict(
            f"dead letter {entry.id} holds a malformed task; it cannot be replayed, only purged",
            id=entry.id,
        ) from exc
