"""HTTP adapters of the queue-service: each route calls one TaskQueue method."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from crucible_contracts.models import EvalTask
from crucible_queue.legacy_format import TaskId
from crucible_queue.models import (
    Acked,
    Enqueued,
    FailBody,
    Lease,
    QueueStatus,
    RequeueBody,
    TaskView,
)
from crucible_queue.taskqueue import TaskQueue

router = APIRouter()


def _queue(request: Request) -> TaskQueue:
    return request.app.state.queue


Queue = Annotated[TaskQueue, Depends(_queue)]


@router.get("/health")
def health(queue: Queue) -> dict:
    return {"status": "ok", "service": "queue-service", "queued": queue.status().queued}


@router.get("/status")
def queue_status(queue: Queue) -> QueueStatus:
    return queue.status()


@router.post("/tasks", status_code=status.HTTP_201_CREATED)
def enqueue(task: EvalTask, queue: Queue) -> Enqueued:
    return queue.enqueue(task)


# The longest a consumer may wait in one long poll; it asks again afterwards.
MAX_POLL_WAIT_SECONDS = 30.0

PollWait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_POLL_WAIT_SECONDS,
        description="Seconds to wait for a task when the queue is empty (a long poll); 0 answers at once.",
    ),
]


# A long poll waits in slices, looking between them whether its caller is still there.
POLL_SLICE_SECONDS = 0.25


@router.get("/tasks/next", response_model=Lease, responses={204: {"description": "empty"}})
async def next_task(request: Request, queue: Queue, wait: PollWait = 0.0) -> Lease | Response:
    """Lease the next task. A long poll whose caller went away (a worker killed while it
    waited) stops waiting, and a task leased in the meantime goes back to the queue at once,
    instead of staying leased to nobody until its lease runs out."""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left > 0:
            lease = await run_in_threadpool(queue.next, wait=min(left, POLL_SLICE_SECONDS))
        else:
            lease = queue.next()
        gone = await request.is_disconnected()
        if lease is not None and gone:
            queue.requeue(lease.task_id, reason="the long poll's caller went away")
            return Response(status_code=204)
        if lease is not None:
            return lease
        if gone or left <= 0:
            return Response(status_code=204)


@router.get("/tasks/{task_id}")
def get_task(task_id: TaskId, queue: Queue) -> TaskView:
    return queue.get(task_id)


@router.post("/tasks/{task_id}/renew")
def renew(task_id: TaskId, queue: Queue) -> TaskView:
    """The consumer is still working on it: its lease runs QUEUE_LEASE_SECONDS from now."""
    return queue.renew(task_id)


@router.post("/tasks/{task_id}/complete")
def complete(task_id: TaskId, queue: Queue) -> Acked:
    view = queue.complete(task_id)
    return Acked(task_id=view.task_id, state=view.state)


@router.post("/tasks/{task_id}/fail")
def fail(task_id: TaskId, body: FailBody, queue: Queue) -> Acked:
    view = queue.fail(task_id, body.reason)
    return Acked(task_id=view.task_id, state=view.state)


@router.post("/tasks/{task_id}/requeue")
def requeue(task_id: TaskId, queue: Queue, body: RequeueBody | None = None) -> TaskView:
    body = body or RequeueBody()
    return queue.requeue(task_id, reason=body.reason, count_attempt=body.count_attempt)


@router.delete("/tasks/{task_id}")
def cancel(task_id: TaskId, queue: Queue) -> TaskView:
    return queue.cancel(task_id)
