"""One reader of the events stream per gateway process, fanning its entries out to listeners.

The reader (`EventHub.run`) blocks on `XREAD` from the last entry it handed out, so listeners
cost Redis nothing each: a thousand listeners are one connection. Each listener has a bounded
queue; one that falls `capacity` entries behind is dropped from the fan-out at once (its queue
emptied, an `OVERFLOW` left in it), so a slow client never grows the gateway's memory. While
Redis cannot be read the reader retries with back-off, and once it reads again every listener
gets a `RESYNC` (an evaluation's listener then asks storage whether it ended meanwhile).

The range reads a resuming listener needs (`entries_after`, `retention`) go through a second
client, so they never wait behind the blocking read.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cached_property

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from crucible_contracts.errors import Unavailable
from crucible_contracts.names import EVENTS_STREAM, EventName, Role
from crucible_contracts.status import Status
from crucible_gateway.events.positions import StreamId
from crucible_gateway.events.wire import Message

log = logging.getLogger(__name__)

LISTENERS = Gauge(
    "crucible_gateway_event_listeners",
    "Clients following live events on this gateway process, by stream (evaluation, all)",
    ["stream"],
)
LISTENERS_CLOSED = Counter(
    "crucible_gateway_event_listeners_closed_total",
    "Live event listeners the gateway closed itself, by reason (slow_listener)",
    ["reason"],
)
LISTENERS_REFUSED = Counter(
    "crucible_gateway_event_listeners_refused_total",
    "Live event connections refused (503) because the process had EVENTS_MAX_LISTENERS",
)
ENTRIES_READ = Counter(
    "crucible_gateway_event_entries_read_total", "Entries of the events stream read by the hub"
)
READ_FAILURES = Counter(
    "crucible_gateway_event_read_failures_total",
    "Failed reads of the events stream (Redis down or hanging); the hub retries with back-off",
)

# The reader's blocking read: how long one XREAD waits, how many entries it takes at most.
BLOCK_MS = 5_000
READ_BATCH = 500
# Range reads of a resuming listener: entries per page, and how long a command may take.
RANGE_PAGE = 1_000
RANGE_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0
# Back-off of the reader while Redis cannot be read.
RETRY_MIN_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0


@dataclass(frozen=True)
class Entry:
    """One entry of the events stream: its id and the fields storage wrote (`stream_entry`)."""

    id: StreamId
    fields: dict[str, str]

    @classmethod
    def of(cls, entry_id: str, fields: dict[str, str]) -> Entry:
        return cls(StreamId.parse(entry_id), fields)

    @property
    def eval_id(self) -> str:
        return self.fields.get("eval_id", "")

    @property
    def event(self) -> str:
        return self.fields.get("event", "")

    @property
    def data(self) -> str:
        return self.fields.get("data", "")

    @cached_property
    def message(self) -> Message:
        """This entry as an SSE message, made once for every listener it is handed to."""
        return Message(id=str(self.id), event=self.event, data=self.data)

    def ends_primary(self) -> bool:
        """Whether this is the event that ends its evaluation's primary run."""
        return (
            self.event == EventName.STATUS_CHANGED.value
            and self.fields.get("role") == Role.PRIMARY.value
            and self.fields.get("status") in TERMINAL
        )


TERMINAL = frozenset(status.value for status in Status if status.is_terminal())


class Signal(enum.Enum):
    """What the hub tells a listener besides entries."""

    # The listener fell `capacity` entries behind and was dropped from the fan-out.
    OVERFLOW = "overflow"
    # The hub reads again after Redis failed: events may have been lost meanwhile.
    RESYNC = "resync"


class ListenersFull(Unavailable):
    """The process has its EVENTS_MAX_LISTENERS; answered 503 with Retry-After."""

    def __init__(self, message: str, retry_after: float, **details: object) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class Listener:
    """One client's place in the fan-out: the entries it `accepts`, queued up to `capacity`."""

    def __init__(
        self,
        *,
        stream: str,
        accepts: Callable[[Entry], bool],
        capacity: int,
        start: StreamId | None,
    ) -> None:
        self.stream = stream
        self.accepts = accepts
        self.queue: asyncio.Queue[Entry | Signal] = asyncio.Queue(capacity)
        # The hub's position when it was registered: every later entry is in its queue.
        self.start = start

    async def next(self) -> Entry | Signal:
        return await self.queue.get()

    async def batch(self, linger: float = 0) -> list[Entry | Signal]:
        """The next item and, `linger` seconds later, everything queued behind it (one wake-up
        and one write for a burst, instead of one per entry)."""
        first = await self.queue.get()
        if linger > 0:
            await asyncio.sleep(linger)
        return [first, *self.pending()]

    def pending(self) -> list[Entry | Signal]:
        """What is queued now, taken out of the queue (never waits)."""
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


@dataclass(frozen=True)
class Retention:
    """What the stream still holds: whether a listener can resume after an id without a gap."""

    first: StreamId | None
    last: StreamId | None
    trimmed: bool

    def covers(self, after: StreamId) -> bool:
        """True when every entry after `after` is still in the stream."""
        return self.gap_after(after) is None

    def gap_after(self, after: StreamId) -> str | None:
        """Why the stream cannot resume after `after` without a gap, or None when it can:
        "trimmed" when entries were trimmed and `after` lies before the first one kept (or,
        with none kept, before the last); "reset" when the stream does not know `after` at all
        (an id past its last, or no stream: Redis was emptied since that id was handed out)."""
        if self.last is None or after > self.last:
            return "reset"
        if not self.trimmed:
            return None
        # Whatever was trimmed lies before the first entry kept (before the last, when none is).
        kept_from = self.first if self.first is not None else self.last
        return None if after >= kept_from else "trimmed"


class EventHub:
    """The process's reader of EVENTS_STREAM and its listeners (at most `max_listeners`)."""

    def __init__(
        self,
        redis_url: str,
        *,
        max_listeners: int,
        queue_size: int,
        retry_after: float = 5,
        stream: str = EVENTS_STREAM,
    ) -> None:
        self.stream = stream
        self.max_listeners = max_listeners
        self.queue_size = queue_size
        self.retry_after = retry_after
        self._reader = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT,
            # Longer than the blocking read, so only a hanging Redis times out.
            socket_timeout=BLOCK_MS / 1000 + 5,
        )
        self._ranges = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=RANGE_TIMEOUT,
        )
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        # The last entry handed out: every later entry reaches every listener registered now.
        # None until the reader first reached Redis.
        self.position: StreamId | None = None
        self.reading = False

    # --- listeners ---------------------------------------------------------------------------

    def register(self, *, stream: str, accepts: Callable[[Entry], bool]) -> Listener:
        """A new listener of every entry handed out from now on that `accepts` takes; raises
        ListenersFull at `max_listeners`."""
        if len(self._listeners) >= self.max_listeners:
            LISTENERS_REFUSED.inc()
            raise ListenersFull(
                f"this gateway process has {self.max_listeners} live event listeners already; "
                "try again later",
                retry_after=self.retry_after,
                limit=self.max_listeners,
            )
        listener = Listener(
            stream=stream, accepts=accepts, capacity=self.queue_size, start=self.position
        )
        self._listeners.add(listener)
        LISTENERS.labels(stream=stream).inc()
        return listener

    def unregister(self, listener: Listener) -> None:
        """Free the listener's place (idempotent)."""
        if listener in self._listeners:
            self._listeners.remove(listener)
            LISTENERS.labels(stream=listener.stream).dec()

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def hand_out(self, entry: Entry) -> None:
        """Queue `entry` for every listener that accepts it; drop those whose queue is full."""
        self.position = entry.id
        for listener in list(self._listeners):
            if not listener.accepts(entry):
                continue
            try:
                listener.queue.put_nowait(entry)
            except asyncio.QueueFull:
                self._overflow(listener)

    def _overflow(self, listener: Listener) -> None:
        self.unregister(listener)
        listener.pending()  # what it had not taken: it resumes from its Last-Event-ID instead
        listener.queue.put_nowait(Signal.OVERFLOW)
        LISTENERS_CLOSED.labels(reason="slow_listener").inc()

    def _resync(self) -> None:
        for listener in list(self._listeners):
            try:
                listener.queue.put_nowait(Signal.RESYNC)
            except asyncio.QueueFull:
                self._overflow(listener)

    # --- the reader ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="event-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._reader.aclose()
        await self._ranges.aclose()

    async def run(self) -> None:
        """Read the stream and hand its entries out, until cancelled; Redis failures are waited
        out with back-off (logged once per outage, counted each time)."""
        delay = RETRY_MIN_SECONDS
        failed = False
        while True:
            try:
                if self.position is None:
                    self.position = await self._head()
                answer = await self._reader.xread(
                    {self.stream: str(self.position)}, block=BLOCK_MS, count=READ_BATCH
                )
            except (RedisError, OSError) as exc:
                READ_FAILURES.inc()
                if not failed:
                    log.warning("events stream unreadable (%r); retrying", exc)
                failed, self.reading = True, False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            self.reading = True
            if failed:
                log.info("events stream readable again")
                failed, delay = False, RETRY_MIN_SECONDS
                self._resync()
            for _, entries in answer or ():
                for entry_id, fields in entries:
                    ENTRIES_READ.inc()
                    self.hand_out(Entry.of(entry_id, fields))

    async def _head(self) -> StreamId:
        last = await self._reader.xrevrange(self.stream, count=1)
        return StreamId.parse(last[0][0]) if last else StreamId(0, 0)

    # --- range reads for resuming listeners ------------------------------------------------------

    async def retention(self) -> Retention:
        """What the stream holds now; RedisError when Redis cannot say."""
        try:
            info = await self._ranges.xinfo_stream(self.stream)
        except RedisError as exc:
            if "no such key" in str(exc).lower():
                return Retention(first=None, last=None, trimmed=False)
            raise
        first = info.get("first-entry")
        return Retention(
            first=StreamId.parse(first[0]) if first else None,
            last=StreamId.parse(info["last-generated-id"]),
            trimmed=int(info.get("entries-added", 0)) > int(info.get("length", 0)),
        )

    async def pages_after(self, after: StreamId | None) -> AsyncIterator[list[Entry]]:
        """The entries after `after` (None: from the first kept) up to the last one, in order,
        a page at a time (never the whole stream in memory); RedisError when Redis fails."""
        low = f"({after}" if after is not None else "-"
        while True:
            page = await self._ranges.xrange(self.stream, min=low, max="+", count=RANGE_PAGE)
            if page:
                yield [Entry.of(entry_id, fields) for entry_id, fields in page]
            if len(page) < RANGE_PAGE:
                return
            low = f"({page[-1][0]}"
