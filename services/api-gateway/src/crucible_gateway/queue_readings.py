"""Depth and oldest-message age of every queue an evaluation can wait in, read live.

- `legacy`: the queue-service's deque, from its `GET /status` (it knows when each task was
  queued);
- `high`, `default`, `low`, `shadow`: the Celery queues, Redis lists on the broker. Kombu pushes
  on the head and workers pop from the tail, so the oldest message is the tail (`LINDEX -1`);
  its age comes from the header the gateway adds when it publishes
  (`celery_client.ENQUEUED_AT_HEADER`). A message without it (published by something else) has
  no known age: the queue's age is then None, never a guess;
- `dead_letter`: the dead-letter queue, aged by its oldest entry's `failed_at`.

One `read()` asks each source once (the broker in one pipeline); a source that cannot be read is
named in `Readings.errors` and its queues are left out. `CachedQueueReader` answers the same
readings for a few seconds, for scrapers that ask often.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from crucible_contracts.errors import CrucibleError
from crucible_contracts.names import QUEUE_ORDER
from crucible_gateway.paths.celery_client import ENQUEUED_AT_HEADER
from crucible_runtime.clients import QueueServiceClient
from crucible_runtime.dead_letters import DeadLetterStore

LEGACY_QUEUE = "legacy"
DEAD_LETTER_QUEUE = "dead_letter"
CELERY_QUEUES = tuple(queue.value for queue in QUEUE_ORDER)
# Every queue name a reading can carry, in the order they are reported.
QUEUES = (LEGACY_QUEUE, *CELERY_QUEUES, DEAD_LETTER_QUEUE)

# The sources a reading asks; each one fails (and is reported) on its own.
SOURCE_QUEUE_SERVICE = "queue_service"
SOURCE_BROKER = "broker"
SOURCE_DEAD_LETTER = "dead_letter"
SOURCES = (SOURCE_QUEUE_SERVICE, SOURCE_BROKER, SOURCE_DEAD_LETTER)

DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True)
class QueueReading:
    """One queue: messages waiting in it (not yet taken by a consumer) and the age in seconds of
    the oldest one: 0.0 when the queue is empty, None when its age cannot be known."""

    queue: str
    depth: int
    oldest_age_seconds: float | None


@dataclass(frozen=True)
class Readings:
    """Every queue that could be read; `legacy_status` is the queue-service's whole report (or
    None), `errors` says, per source that could not be read, why."""

    queues: tuple[QueueReading, ...] = ()
    legacy_status: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, queue: str) -> QueueReading | None:
        return next((reading for reading in self.queues if reading.queue == queue), None)


class QueueReader:
    """Reads every queue live; thread-safe as its clients are."""

    def __init__(
        self,
        *,
        legacy: QueueServiceClient,
        broker: redis.Redis,
        dead_letters: DeadLetterStore,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.legacy = legacy
        self.broker = broker
        self.dead_letters = dead_letters
        self.timeout = timeout
        self._clock = clock

    def read(self) -> Readings:
        queues: list[QueueReading] = []
        errors: dict[str, str] = {}
        legacy_status = None
        try:
            legacy_status = self.legacy.status(timeout=self.timeout)
            queues.append(legacy_reading(legacy_status))
        except CrucibleError as exc:
            errors[SOURCE_QUEUE_SERVICE] = str(exc)
        try:
            queues.extend(self._celery())
        except redis.RedisError as exc:
            errors[SOURCE_BROKER] = f"Celery broker unreachable: {exc!r}"
        try:
            queues.append(self._dead_letter())
        except CrucibleError as exc:
            errors[SOURCE_DEAD_LETTER] = str(exc)
        return Readings(queues=tuple(queues), legacy_status=legacy_status, errors=errors)

    def _celery(self) -> list[QueueReading]:
        pipe = self.broker.pipeline(transaction=False)
        for queue in CELERY_QUEUES:
            pipe.llen(queue)
            pipe.lindex(queue, -1)
        answers = pipe.execute()
        now = self._clock()
        readings = []
        for n, queue in enumerate(CELERY_QUEUES):
            depth, oldest = int(answers[2 * n]), answers[2 * n + 1]
            age = 0.0 if oldest is None else _age(enqueued_at(oldest), now)
            readings.append(QueueReading(queue, depth, age))
        return readings

    def _dead_letter(self) -> QueueReading:
        depth = self.dead_letters.count()
        oldest = self.dead_letters.oldest()
        if oldest is None:
            return QueueReading(DEAD_LETTER_QUEUE, depth, 0.0)
        return QueueReading(
            DEAD_LETTER_QUEUE, depth, _age(oldest.failed_at.timestamp(), self._clock())
        )


class CachedQueueReader:
    """A reader's latest readings, read again once they are older than `ttl` seconds; callers
    that arrive while one reads wait for its answer instead of reading too."""

    def __init__(
        self,
        reader: QueueReader,
        *,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._readings: Readings | None = None
        self._read_at = 0.0

    def read(self) -> Readings:
        with self._lock:
            now = self._clock()
            if self._readings is None or now - self._read_at >= self.ttl:
                self._readings = self.reader.read()
                self._read_at = self._clock()
            return self._readings


def legacy_reading(status: dict[str, Any]) -> QueueReading:
    """The legacy queue's reading from the queue-service's `/status`."""
    age = status.get("oldest_queued_age_s")
    return QueueReading(
        LEGACY_QUEUE, int(status.get("queued", 0)), 0.0 if age is None else float(age)
    )


def enqueued_at(message: bytes | str) -> float | None:
    """When the gateway published this kombu message (its ENQUEUED_AT_HEADER), or None when it
    does not say (or is not a kombu message at all)."""
    try:
        envelope = json.loads(message)
        value = envelope["headers"][ENQUEUED_AT_HEADER]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _age(since: float | None, now: float) -> float | None:
    if since is None:
        return None
    # A publisher's clock ahead of ours would make a negative age: it counts as just queued.
    return round(max(0.0, now - since), 3)
