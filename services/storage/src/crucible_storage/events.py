"""Publishing committed events on Redis pub/sub: best effort, because the database is the truth."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from crucible_contracts.models import Event
from crucible_contracts.names import EVENTS_CHANNEL

log = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter(
    "crucible_storage_events_published_total", "Events published on Redis after commit"
)
EVENT_PUBLISH_FAILURES = Counter(
    "crucible_storage_event_publish_failures_total",
    "Committed events that could not be published because Redis failed",
)


class EventPublisher:
    """Publishes Event JSON on EVENTS_CHANNEL; without a Redis URL it publishes nothing.

    A Redis failure is logged and counted, never raised: the write it follows has committed.
    """

    def __init__(self, redis_url: str | None, *, timeout: float = 0.5) -> None:
        self._client: redis.Redis | None = None
        if redis_url:
            self._client = redis.Redis.from_url(
                redis_url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                # One try: a dead Redis must not hold up the answer to a committed write.
                retry=Retry(NoBackoff(), 0),
            )

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def publish(self, events: Iterable[Event]) -> None:
        if self._client is None:
            return
        pending = list(events)
        for index, event in enumerate(pending):
            try:
                self._client.publish(EVENTS_CHANNEL, event.model_dump_json())
            except redis.RedisError as exc:
                # The rest of this batch would fail the same way; count them all as lost.
                lost = len(pending) - index
                EVENT_PUBLISH_FAILURES.inc(lost)
                log.warning("could not publish %d event(s) of %s: %r", lost, event.eval_id, exc)
                return
            EVENTS_PUBLISHED.inc()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
