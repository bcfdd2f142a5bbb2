"""The queue-worker process: threads that poll the queue-service and run what they get.

`python -m crucible_queue.worker`. `Worker.run()` blocks until `stop()` (SIGTERM/SIGINT): no new
task is taken, in-flight ones finish within QUEUE_WORKER_SHUTDOWN_GRACE seconds, and the ones
still running then are given back to the queue (their programs go on; the next delivery joins
them at their executor). Exit status 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time

from prometheus_client import Counter, Gauge, start_http_server

from crucible_contracts.errors import Conflict, CrucibleError, NotFound
from crucible_contracts.retry import RetryPolicy
from crucible_queue.client import MalformedLease, QueueClient
from crucible_queue.config import Settings
from crucible_queue.handling import Ack, InFlight, Reply, TaskHandler
from crucible_queue.models import Lease
from crucible_runtime.clients import ExecutorPool, StorageClient
from crucible_runtime.dead_letters import DeadLetterStore
from crucible_runtime.logs import setup_logging
from crucible_runtime.redis_client import fail_fast_redis

log = logging.getLogger(__name__)

# Back-off steps stop growing here: the delay is long capped by then, and 2**n must stay a float.
_MAX_BACKOFF_STEP = 32

TASKS = Counter("crucible_legacy_worker_tasks_total", "Tasks handled by outcome", ["ack"])
THREADS_ALIVE = Gauge(
    "crucible_legacy_worker_threads_alive", "Polling threads running (health: all of them)"
)
THREADS_CONFIGURED = Gauge(
    "crucible_legacy_worker_threads_configured", "Polling threads configured (QUEUE_WORKER_*)"
)
THREAD_RESTARTS = Counter(
    "crucible_legacy_worker_thread_restarts_total", "Polling threads that died and were restarted"
)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        key = settings.internal_api_key
        self.queue = QueueClient(settings.queue_service_url, internal_key=key)
        self.storage = StorageClient(settings.storage_service_url, internal_key=key)
        self.executors = ExecutorPool(
            settings.executor_urls, internal_key=key, busy_wait=settings.executor_busy_wait_seconds
        )
        self.stopping = threading.Event()
        self.handler = TaskHandler(
            storage=self.storage,
            executors=self.executors,
            budgets=settings.budgets(),
            stopping=self.stopping,
            dead_letters=_dead_letters(settings),
        )
        self._lock = threading.Lock()
        self._inflight: dict[str, InFlight] = {}
        self._outage_since: float | None = None
        self._failed_polls = 0
        # Threads inside a (long) poll at the queue-service right now (see `_take`).
        self._polling = 0
        self._threads: list[threading.Thread] = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.settings.queue_worker_concurrency):
            self._threads.append(self._thread(n))
        THREADS_CONFIGURED.set(self.settings.queue_worker_concurrency)
        THREADS_ALIVE.set(self.threads_alive)
        log.info(
            "polling %s with %d threads; executors %s",
            self.settings.queue_service_url,
            len(self._threads),
            ", ".join(self.settings.executor_urls),
        )

    def stop(self) -> None:
        """Stop taking tasks; `run()` then finishes or gives back what is in flight."""
        if not self.stopping.is_set():
            log.info("stopping: no new tasks; finishing %d in flight", len(self._inflight))
        self.stopping.set()

    def run(self) -> int:
        """Poll until stopped; returns the process exit status."""
        self.start()
        while not self.stopping.wait(0.5):
            self._restart_dead_threads()
            self._renew_leases()
        deadline = time.monotonic() + self.settings.queue_worker_shutdown_grace
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            # A task given back now would be handed to a long poll still waiting, whose thread
            # is about to end with the process: let every poll come back first (it gives back
            # what it got once stopping).
            wait_for_polls = time.monotonic() + self.settings.queue_poll_wait_seconds + 2
            while self._polling and time.monotonic() < wait_for_polls:
                time.sleep(0.05)
            # Their threads are daemons still blocked in HTTP calls: leave the clients open.
            self._abandon_inflight()
        else:
            for client in (self.queue, self.storage, self.executors):
                client.close()
        log.info("stopped")
        return 0

    @property
    def threads_alive(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)

    def _thread(self, n: int) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name=f"queue-worker-{n}", daemon=True)
        thread.start()
        return thread

    def _restart_dead_threads(self) -> None:
        """A polling thread that died anyway (a bug) is started again, and said so; until then
        the health probe reports fewer threads than configured (unhealthy)."""
        for n, thread in enumerate(self._threads):
            if not thread.is_alive() and not self.stopping.is_set():
                log.error("polling thread %s died; starting it again", thread.name)
                THREAD_RESTARTS.inc()
                self._threads[n] = self._thread(n)
        THREADS_ALIVE.set(self.threads_alive)

    def _renew_leases(self) -> None:
        """Renew each in-flight lease once a third of it has passed: while this process lives,
        the queue-service keeps its tasks; once it dies they go back to the queue within one
        QUEUE_LEASE_SECONDS, and the next delivery collects the run from its executor."""
        now = time.monotonic()
        with self._lock:
            due = [f for f in self._inflight.values() if f.renew_at <= now and not f.done]
        for in_flight in due:
            lease = in_flight.lease
            try:
                self.queue.renew(lease.task_id)
            except (Conflict, NotFound) as exc:
                # Lost already (this process stalled past its lease): the next delivery joins
                # or collects this run at its executor, and storage records one result.
                log.warning("lease of task %s lost: %s", lease.task_id, exc)
                in_flight.renew_at = float("inf")
                continue
            except CrucibleError as exc:
                log.warning("could not renew the lease of task %s: %s", lease.task_id, exc)
            in_flight.renew_at = now + lease.lease_seconds / 3

    # --- one thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        idle_policy = RetryPolicy(
            base_delay=self.settings.queue_poll_interval,
            max_delay=self.settings.queue_poll_idle_max,
        )
        empty_polls = 0
        while not self.stopping.is_set():
            polled_at = time.monotonic()
            try:
                lease = self._take()
                if lease is not None:
                    empty_polls = 0
                    self._run(lease)
                    continue
            except Exception:
                # Nothing a task or an answer holds may end this thread; the handler already ends
                # each run it cannot handle `error`, so this is a bug: say so, and go on.
                log.exception("polling thread: unexpected error; going on")
            # An empty long poll has waited already; one answered at once (no wait asked, or
            # too many waiting) backs off as an idle poll does.
            empty_polls = min(empty_polls + 1, _MAX_BACKOFF_STEP)
            waited = time.monotonic() - polled_at
            self.stopping.wait(max(0.0, idle_policy.delay(empty_polls) - waited))

    def _take(self) -> Lease | None:
        """The next task to run: polled, unless a stop came meanwhile (what a long poll was
        handed after the stop is given back). Counted in `_polling` until then."""
        with self._lock:
            self._polling += 1
        try:
            lease = self._poll()
            if lease is not None and self.stopping.is_set():
                self._give_back_unstarted(lease)
                return None
            return lease
        finally:
            with self._lock:
                self._polling -= 1

    def _poll(self) -> Lease | None:
        """The next task, or None when there is none, the queue-service cannot be reached, or
        it leased a malformed task (failed at the queue-service and dead-lettered)."""
        try:
            lease = self.queue.next_task(wait=self.settings.queue_poll_wait_seconds)
        except MalformedLease as exc:
            self._refuse(exc)
            return None
        except CrucibleError as exc:
            self._outage(exc)
            return None
        with self._lock:
            if self._outage_since is not None:
                log.info(
                    "queue-service reachable again after %.1fs",
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
        return lease

    def _refuse(self, exc: MalformedLease) -> None:
        """A task that does not validate is never run: it names no run that can be trusted. It
        is failed at the queue-service and parked with its raw content (eval_id None)."""
        log.error("refusing task %s: %s", exc.task_id, exc.reason)
        self.handler.park_malformed(task_id=exc.task_id, reason=exc.reason, body=exc.body)
        if exc.task_id is not None:
            self._ack(exc.task_id, Reply(Ack.FAIL, exc.reason))

    def _outage(self, exc: CrucibleError) -> None:
        """Log once per outage, then back off (capped, jittered) until the queue answers again."""
        with self._lock:
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                self._failed_polls = 0
                log.warning("queue-service unavailable, polling with back-off: %s", exc)
            self._failed_polls = min(self._failed_polls + 1, _MAX_BACKOFF_STEP)
            failed = self._failed_polls
        policy = RetryPolicy(base_delay=0.1, max_delay=self.settings.queue_poll_outage_max)
        self.stopping.wait(policy.delay(failed))

    def _run(self, lease: Lease) -> None:
        in_flight = InFlight(lease)
        with self._lock:
            self._inflight[lease.task_id] = in_flight
        try:
            reply = self.handler.handle(in_flight)
            log.info(
                "task %s (delivery %d): %s%s",
                lease.task_id,
                lease.attempts,
                reply.ack,
                f" ({reply.reason})" if reply.reason else "",
            )
            self._ack(lease.task_id, reply)
        finally:
            with self._lock:
                self._inflight.pop(lease.task_id, None)

    def _ack(self, task_id: str, reply: Reply) -> None:
        """Tell the queue-service; retried while it is down. Lost acks end in a lease expiry,
        whose re-delivery storage then refuses as already ended."""
        TASKS.labels(reply.ack.value).inc()
        policy = self.settings.budgets().transient
        began = time.monotonic()
        for attempt in range(1, policy.max_attempts + 1):
            try:
                if reply.ack is Ack.COMPLETE:
                    self.queue.complete(task_id)
                elif reply.ack is Ack.FAIL:
                    self.queue.fail(task_id, reply.reason or "failed")
                elif reply.ack is Ack.REQUEUE:
                    self.queue.requeue(
                        task_id,
                        reason=reply.reason or "given back",
                        count_attempt=reply.count_attempt,
                    )
                return
            except (NotFound, Conflict) as exc:
                log.warning("ack %s of %s not applied: %s", reply.ack, task_id, exc)
                return
            except CrucibleError as exc:
                if policy.exhausted(attempt, elapsed=time.monotonic() - began):
                    log.error("ack %s of %s lost: %s", reply.ack, task_id, exc)
                    return
                time.sleep(policy.delay(attempt))

    def _give_back_unstarted(self, lease: Lease) -> None:
        log.info("stopping: giving back task %s, not started", lease.task_id)
        with contextlib.suppress(CrucibleError):
            self.queue.requeue(lease.task_id, reason="worker stopping; not started")

    def _abandon_inflight(self) -> None:
        """Grace is over: give back what still runs, unless its result is in. Its program is
        left running: the next delivery joins it at its executor (or collects its result), so
        nothing runs twice and nothing is thrown away."""
        with self._lock:
            in_flights = list(self._inflight.values())
        for in_flight in in_flights:
            with in_flight.lock:
                if in_flight.done:
                    continue
                in_flight.abandoned = True
            lease = in_flight.lease
            log.warning(
                "task %s still running after the shutdown grace; giving it back", lease.task_id
            )
            with contextlib.suppress(CrucibleError):
                self.queue.requeue(
                    lease.task_id, reason="worker shut down before the program finished"
                )


def _dead_letters(settings: Settings) -> DeadLetterStore | None:
    if settings.dead_letter_redis_url is None:
        log.warning("DEAD_LETTER_REDIS_URL is not set: given-up runs leave no dead-letter entry")
        return None
    client = fail_fast_redis(settings.dead_letter_redis_url, timeout=2.0)
    return DeadLetterStore(client, max_entries=settings.dead_letter_max)


def main() -> int:
    settings = Settings()
    setup_logging("queue-worker", settings.log_level)
    if settings.queue_worker_metrics_port:
        start_http_server(settings.queue_worker_metrics_port)
    worker = Worker(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
