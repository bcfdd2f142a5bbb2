"""Appending committed events to the Redis Stream EVENTS_STREAM: best effort, because the
database is the truth."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from queue import Empty, SimpleQueue

import redis
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from crucible_contracts.models import Event
from crucible_contracts.names import EVENTS_STREAM

log = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter(
    "crucible_storage_events_published_total", "Events published on Redis after commit"
)
EVENT_PUBLISH_FAILURES = Counter(
    "crucible_storage_event_publish_failures_total",
    "Committed events that could not be published because Redis failed (or too many waited)",
)

# Commits whose events may wait for Redis at once; past that a commit's events are dropped and
# counted as failures (a Redis that hangs must not make storage hold events without bound).
MAX_PENDING_COMMITS = 10_000
# Entries the stream keeps (about: trimmed with `MAXLEN ~`, by whole nodes, which is cheap).
DEFAULT_STREAM_MAXLEN = 20_000

# One event as a stream entry: the fields of crucible_contracts.names.EVENT_ENTRY_FIELDS.
Entry = dict[str, str]


def stream_entry(event: Event) -> Entry:
    """The stream entry of `event`: its JSON, and the fields readers filter on ("" when unset)."""
    return {
        "eval_id": event.eval_id,
        "event": event.event.value,
        "role": event.role.value if event.role is not None else "",
        "status": event.status.value if event.status is not None else "",
        "backend": event.backend.value if event.backend is not None else "",
        "data": event.model_dump_json(),
    }


class EventPublisher:
    """Appends each event to EVENTS_STREAM (`stream_entry`), capped at about `maxlen` entries;
    without a Redis URL it publishes nothing.

    A Redis failure is logged and counted, never raised: the write it follows has committed.
    While Redis answers, `publish` sends the events of one commit itself, in one pipeline (one
    round trip). Once a send fails, later commits only hand their events to a publishing thread,
    which sends everything queued since its last send in one pipeline; when one of its sends
    succeeds with nothing left queued, commits send directly again. So a dead or hanging Redis
    costs a writer (and the event loop) at most one timeout per outage, and the order of the
    commits is kept across the switches.
    """

    def __init__(
        self,
        redis_url: str | None,
        *,
        timeout: float = 0.5,
        max_pending: int = MAX_PENDING_COMMITS,
        maxlen: int = DEFAULT_STREAM_MAXLEN,
    ) -> None:
        self._client: redis.Redis | None = None
        self._maxlen = maxlen
        self._pending: SimpleQueue[list[Entry] | threading.Event | None] = SimpleQueue()
        self._max_pending = max_pending
        self._thread: threading.Thread | None = None
        # Guards `_direct` and every hand-over to the thread, so that no commit is queued
        # between the thread's "nothing left" and its switch back to direct sends.
        self._lock = threading.Lock()
        self._direct = True
        if redis_url:
            self._client = redis.Redis.from_url(
                redis_url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                # One try: a dead Redis costs one timeout per batch, not several.
                retry=Retry(NoBackoff(), 0),
            )
            self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def publish(self, events: Iterable[Event]) -> None:
        """Publish the events of one commit, in order. Call after the commit; never raises."""
        if self._client is None:
            return
        payloads = [stream_entry(event) for event in events]
        if not payloads:
            return
        with self._lock:
            direct = self._direct
            if not direct:
                self._hand_over(payloads)
        if direct and not self._send(payloads):
            with self._lock:
                self._direct = False

    def _hand_over(self, payloads: list[Entry]) -> None:
        if self._pending.qsize() >= self._max_pending:
            EVENT_PUBLISH_FAILURES.inc(len(payloads))
            log.warning(
                "%d event(s) dropped: %d commits wait for Redis", len(payloads), self._max_pending
            )
            return
        self._pending.put(payloads)

    def flush(self, timeout: float = 5) -> bool:
        """Wait until everything queued before this call was sent (or failed); False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._pending.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 5) -> None:
        """Send what is queued (within `timeout`), then stop the thread and close the client."""
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join(timeout)
        if self._client is not None:
            self._client.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[Entry] = []
            item = self._pending.get()
            while True:
                if item is None:
                    stopping = True
                elif isinstance(item, threading.Event):
                    self._send(batch)  # everything before the marker goes out first
                    batch = []
                    item.set()
                else:
                    batch.extend(item)
                try:
                    item = self._pending.get_nowait()
                except Empty:
                    break
            if batch and self._send(batch):
                with self._lock:
                    if self._pending.empty():
                        self._direct = True

    def _send(self, payloads: list[Entry]) -> bool:
        """Append `payloads` in one pipeline; False (counted and logged) when Redis failed."""
        if not payloads or self._client is None:
            return True
        pipeline = self._client.pipeline(transaction=False)
        for payload in payloads:
            pipeline.xadd(EVENTS_STREAM, payload, maxlen=self._maxlen, approximate=True)
        try:
            pipeline.execute()
        except redis.RedisError as exc:
            EVENT_PUBLISH_FAILURES.inc(len(payloads))
            log.warning("could not publish %d event(s): %r", len(payloads), exc)
            return False
        EVENTS_PUBLISHED.inc(len(payloads))
        return True
