"""The two paths as `Path`s: the legacy queue-service client and the Celery dispatcher, one shape."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from crucible_contracts.models import EvalTask
from crucible_contracts.names import Backend, Role, task_id_for
from crucible_gateway.paths.base import Holding
from crucible_gateway.paths.celery_client import EVALUATION_QUEUES, CeleryDispatcher
from crucible_runtime.async_clients import AsyncQueueServiceClient
from crucible_runtime.clients import QueueServiceClient

# States of the queue-service's GET /tasks/{task_id} in which the run is still on its way.
LEGACY_WAITING_STATES = frozenset({"queued", "processing"})


class LegacyPath:
    """The legacy path: the queue-service's deque, over its HTTP API."""

    backend = Backend.LEGACY
    dependency = "queue_service"
    # The queue-service dedupes by task id and a lost task is in no consumer's hands: sending it
    # again cannot make it run twice at once.
    may_redispatch = True

    def __init__(
        self, client: QueueServiceClient, *, async_client: AsyncQueueServiceClient | None = None
    ) -> None:
        self.client = client
        self.async_client = async_client

    def submit(self, task: EvalTask) -> None:
        self.client.submit(task)

    async def submit_async(self, task: EvalTask) -> None:
        """`submit` on the event loop (through the threadpool when made without an async client)."""
        if self.async_client is None:
            await run_in_threadpool(self.client.submit, task)
        else:
            await self.async_client.submit(task)

    def withdraw(self, eval_id: str, role: Role) -> None:
        """Take the task out of the deque (NotFound when not queued, Conflict when processing)."""
        self.client.cancel(task_id_for(eval_id, role))

    def holds(self, eval_id: str, role: Role) -> Holding:
        """Held while the queue-service has the task queued or processing; its deque lives in
        memory, so a restart forgets every task it had."""
        state = self.client.state_of(task_id_for(eval_id, role))
        if state in LEGACY_WAITING_STATES:
            return Holding(True, f"the legacy queue still holds it ({state})")
        if state is None:
            return Holding(False, "the legacy queue no longer holds it (lost in a restart?)")
        return Holding(False, f"the legacy queue let go of it ({state})")

    def works_on(self, eval_id: str, role: Role) -> Holding:
        """A task `processing` is leased to a queue-worker that renews its lease every few
        seconds, or went back to the queue when it stopped: either way it is taken care of."""
        return self.holds(eval_id, role)

    def depth(self, *, timeout: float) -> dict[str, Any]:
        """The queue-service's own `/status` (queued, processing, ...)."""
        return self.client.status(timeout=timeout)

    def ping(self, *, timeout: float) -> None:
        self.client.ping(timeout=timeout)

    def close(self) -> None:
        self.client.close()


class CeleryPath:
    """The Celery path: tasks published by name on the broker."""

    backend = Backend.CELERY
    dependency = "broker"
    # With acks_late a message a worker has taken (a retry waiting out its countdown, say) is in
    # no queue until acknowledged: "no queue holds it" does not prove that nobody will run it.
    # A second copy is still safe: it joins the first one's run at the executor, or collects
    # its result, and storage refuses a second end.
    may_redispatch = True

    def __init__(self, dispatcher: CeleryDispatcher) -> None:
        self.dispatcher = dispatcher

    def submit(self, task: EvalTask) -> None:
        self.dispatcher.submit(task)

    async def submit_async(self, task: EvalTask) -> None:
        """`submit` from the event loop (kombu's publish, in the threadpool)."""
        await self.dispatcher.submit_async(task)

    def withdraw(self, eval_id: str, role: Role) -> None:
        """Revoke the task: a hint to the workers, who also check storage before they start it."""
        self.dispatcher.revoke(task_id_for(eval_id, role))

    def holds(self, eval_id: str, role: Role) -> Holding:
        """Held while any message waits in the evaluation queues: the run may be one of them, and
        a lost message cannot be told from a waiting one without reading whole queues."""
        depths = self.dispatcher.queue_depths()
        waiting = sum(depths[queue.value] for queue in EVALUATION_QUEUES)
        if waiting:
            return Holding(True, f"{waiting} messages still wait in the Celery queues")
        return Holding(False, "no Celery queue holds a message any more")

    def works_on(self, eval_id: str, role: Role) -> Holding:
        """The broker shows no sign of a worker's life per message (an unacknowledged one comes
        back only after the visibility timeout): a run past its lease is taken for lost."""
        return Holding(False, "Celery shows no worker holding it")

    def depth(self, *, timeout: float) -> dict[str, Any]:
        """`{"queues": {queue: waiting}, "total"}`. The broker client's own connect timeout
        (BROKER_CONNECT_TIMEOUT) bounds the call, not `timeout`."""
        depths = self.dispatcher.queue_depths()
        return {"queues": depths, "total": sum(depths.values())}

    def ping(self, *, timeout: float) -> None:
        """Bounded by BROKER_CONNECT_TIMEOUT, as `depth` is."""
        self.dispatcher.ping()

    def close(self) -> None:
        self.dispatcher.close()
