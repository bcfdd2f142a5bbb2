"""The legacy FIFO: a `collections.deque` of legacy records, its processing leases and its counts.

One instance, in memory, guarded by one lock; a restart loses it (that is the legacy system).
A delivered task is leased: when neither complete nor fail arrives within `lease_seconds`, the
next call that looks at the queue puts it back at the tail (a visibility timeout), its delivery
counted. Every public method is thread-safe.

A consumer may wait for a task (`next(wait=...)`, a long poll): it is woken the moment one is
queued, instead of asking again every few tens of milliseconds. At most `max_waiting` callers wait
at once (each holds a server thread); any more are answered at once, as without a wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from crucible_contracts.errors import Busy, Conflict, NotFound
from crucible_contracts.models import EvalTask
from crucible_queue import legacy_format as fmt
from crucible_queue.models import Enqueued, Lease, QueueStatus, TaskState, TaskView

log = logging.getLogger(__name__)


class TaskQueue:
    def __init__(
        self,
        *,
        lease_seconds: float = 600,
        max_depth: int = 100_000,
        finished_keep: int = 10_000,
        clock: Callable[[], float] = time.time,
        max_waiting: int = 16,
    ) -> None:
        self.lease_seconds = lease_seconds
        self.max_waiting = max_waiting
        self.max_depth = max_depth
        self.finished_keep = finished_keep
        self._clock = clock
        self._lock = threading.Lock()
        # Notified (lock held) whenever a record is pushed: enqueue, requeue, an expired lease.
        self._available = threading.Condition(self._lock)
        self._waiting = 0
        self._deque: deque[fmt.LegacyRecord] = deque()
        self._queued: dict[str, fmt.LegacyRecord] = {}
        self._processing: dict[str, tuple[fmt.LegacyRecord, float]] = {}
        self._finished: OrderedDict[str, TaskView] = OrderedDict()
        self.counts: Counter[str] = Counter()

    # --- producer side ---------------------------------------------------------------------

    def enqueue(self, task: EvalTask) -> Enqueued:
        """Append `task`; Conflict while the same run is queued or processing, Busy when full."""
        with self._lock:
            now = self._clock()
            self._reap(now)
            task_id = fmt.task_id_of(task)
            state = self._live_state(task_id)
            if state is not None:
                raise Conflict(f"task {task_id} is already {state}", task_id=task_id, state=state)
            if len(self._deque) >= self.max_depth:
                raise Busy(f"the legacy queue is full ({self.max_depth} tasks)", retry_after=5)
            self._push(fmt.encode(task, now=now))
            self._finished.pop(task_id, None)
            self.counts["enqueued"] += 1
            return Enqueued(task_id=task_id, position=len(self._deque) - 1, queued=len(self._deque))

    def cancel(self, task_id: str) -> TaskView:
        """Remove a still-queued task. NotFound when it is not queued, Conflict when processing."""
        with self._lock:
            now = self._clock()
            self._reap(now)
            if task_id in self._processing:
                raise Conflict(f"task {task_id} is being processed", task_id=task_id)
            if task_id not in self._queued:
                raise NotFound(f"task {task_id} is not queued", task_id=task_id)
            record = self._unqueue(task_id)
            return self._record_finished(record, TaskState.CANCELLED, now, "cancelled while queued")

    # --- consumer side ---------------------------------------------------------------------

    def next(self, *, wait: float = 0.0) -> Lease | None:
        """Lease the head of the queue to the caller; None when the queue is empty, after
        waiting up to `wait` seconds for a task (unless `max_waiting` callers wait already)."""
        with self._lock:
            now = self._clock()
            self._reap(now)
            if not self._deque and wait > 0 and self._waiting < self.max_waiting:
                self._wait_for_a_task(wait)
                now = self._clock()
            if not self._deque:
                return None
            record = self._deque.popleft()
            task_id = fmt.record_id(record)
            del self._queued[task_id]
            attempt = fmt.add_attempts(record, 1)
            self._processing[task_id] = (record, now + self.lease_seconds)
            return Lease(
                task_id=task_id,
                task=fmt.decode(record),
                attempts=attempt,
                lease_seconds=self.lease_seconds,
            )

    def renew(self, task_id: str) -> TaskView:
        """Extend the lease of a processing task by `lease_seconds` from now: its consumer is
        alive. Conflict when the task is no longer leased (the lease ran out and it went back to
        the queue, or it ended): that consumer's copy is stale. NotFound when unknown."""
        with self._lock:
            now = self._clock()
            self._reap(now)
            if task_id not in self._processing:
                state = self._live_state(task_id)
                if state is not None:
                    raise Conflict(f"task {task_id} is {state}, not leased", task_id=task_id)
                self._raise_not_live(task_id)
            record, _ = self._processing[task_id]
            self._processing[task_id] = (record, now + self.lease_seconds)
            return self._live_view(record, TaskState.PROCESSING)

    def complete(self, task_id: str) -> TaskView:
        return self._finish(task_id, TaskState.COMPLETED, None)

    def fail(self, task_id: str, reason: str) -> TaskView:
        return self._finish(task_id, TaskState.FAILED, reason)

    def requeue(self, task_id: str, *, reason: str, count_attempt: bool = False) -> TaskView:
        """Put a processing task back at the tail; a task already queued again stays as it is."""
        with self._lock:
            now = self._clock()
            self._reap(now)
            if task_id in self._processing:
                record, _ = self._processing.pop(task_id)
                if not count_attempt:
                    fmt.add_attempts(record, -1)
                self._push(record)
                self.counts["requeued"] += 1
                log.info("task %s given back: %s", task_id, reason)
            elif task_id not in self._queued:
                self._raise_not_live(task_id)
            return self._view(task_id)

    # --- observation -----------------------------------------------------------------------

    def get(self, task_id: str) -> TaskView:
        with self._lock:
            self._reap(self._clock())
            return self._view(task_id)

    def status(self) -> QueueStatus:
        with self._lock:
            now = self._clock()
            self._reap(now)
            oldest = min((fmt.enqueued_at(r) for r in self._deque), default=None)
            return QueueStatus(
                queued=len(self._deque),
                processing=len(self._processing),
                completed=self.counts["completed"],
                failed=self.counts["failed"],
                cancelled=self.counts["cancelled"],
                enqueued_total=self.counts["enqueued"],
                requeued_total=self.counts["requeued"],
                lease_expired_total=self.counts["lease_expired"],
                oldest_queued_age_s=None if oldest is None else round(max(0.0, now - oldest), 3),
                lease_seconds=self.lease_seconds,
                waiting_consumers=self._waiting,
            )

    # --- internals (lock held) -------------------------------------------------------------

    def _wait_for_a_task(self, wait: float) -> None:
        """Wait until a record is queued or `wait` seconds have passed. Leases that run out
        meanwhile are looked at every second (they push no notification until looked at)."""
        deadline = time.monotonic() + wait
        self._waiting += 1
        try:
            while not self._deque:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._available.wait(min(left, 1.0))
                self._reap(self._clock())
        finally:
            self._waiting -= 1

    def _finish(self, task_id: str, state: TaskState, reason: str | None) -> TaskView:
        """End a task. Acks are idempotent; a late ack of a task whose lease expired still counts."""
        with self._lock:
            now = self._clock()
            self._reap(now)
            if task_id in self._processing:
                record, _ = self._processing.pop(task_id)
            elif task_id in self._queued:
                record = self._unqueue(task_id)
            elif task_id in self._finished:
                done = self._finished[task_id]
                if done.state is state:
                    return done
                raise Conflict(f"task {task_id} already {done.state}", task_id=task_id)
            else:
                raise NotFound(f"no task {task_id} in the queue", task_id=task_id)
            return self._record_finished(record, state, now, reason)

    def _record_finished(
        self, record: fmt.LegacyRecord, state: TaskState, now: float, reason: str | None
    ) -> TaskView:
        task_id = fmt.record_id(record)
        view = TaskView(
            task_id=task_id,
            state=state,
            attempts=fmt.attempts(record),
            enqueued_at=fmt.enqueued_at(record),
            finished_at=now,
            reason=reason,
        )
        self.counts[state.value] += 1
        if self.finished_keep:
            self._finished[task_id] = view
            self._finished.move_to_end(task_id)
            while len(self._finished) > self.finished_keep:
                self._finished.popitem(last=False)
        return view

    def _reap(self, now: float) -> None:
        expired = [tid for tid, (_, until) in self._processing.items() if until <= now]
        for task_id in expired:
            record, _ = self._processing.pop(task_id)
            self._push(record)
            self.counts["lease_expired"] += 1
            log.warning(
                "task %s: no ack within %ss, back in the queue (delivered %d times)",
                task_id,
                self.lease_seconds,
                fmt.attempts(record),
            )

    def _push(self, record: fmt.LegacyRecord) -> None:
        self._deque.append(record)
        self._queued[fmt.record_id(record)] = record
        self._available.notify()

    def _unqueue(self, task_id: str) -> fmt.LegacyRecord:
        record = self._queued.pop(task_id)
        self._deque.remove(record)
        return record

    def _live_state(self, task_id: str) -> TaskState | None:
        if task_id in self._queued:
            return TaskState.QUEUED
        if task_id in self._processing:
            return TaskState.PROCESSING
        return None

    def _raise_not_live(self, task_id: str) -> None:
        if task_id in self._finished:
            state = self._finished[task_id].state
            raise Conflict(f"task {task_id} already {state}", task_id=task_id)
        raise NotFound(f"no task {task_id} in the queue", task_id=task_id)

    def _view(self, task_id: str) -> TaskView:
        if task_id in self._queued:
            record = self._queued[task_id]
            position = next(i for i, r in enumerate(self._deque) if r is record)
            return self._live_view(record, TaskState.QUEUED, position=position)
        if task_id in self._processing:
            return self._live_view(self._processing[task_id][0], TaskState.PROCESSING)
        if task_id in self._finished:
            return self._finished[task_id]
        raise NotFound(f"no task {task_id} in the queue", task_id=task_id)

    @staticmethod
    def _live_view(
        record: fmt.LegacyRecord, state: TaskState, position: int | None = None
    ) -> TaskView:
        return TaskView(
            task_id=fmt.record_id(record),
            state=state,
            attempts=fmt.attempts(record),
            position=position,
            enqueued_at=fmt.enqueued_at(record),
        )
