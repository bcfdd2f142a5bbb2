"""Following evaluations to their end without polling: storage's events on the Redis stream.

Storage appends every committed status change to `EVENTS_STREAM` (the state Redis). The bench
reads it there, as the gateway's live event streams do. The event that ends the primary run
carries the finished evaluation (`Event.evaluation`): its arrival is the moment the client has
seen the result, with no read. Only an end event without it (an older storage) is followed by one
read through the gateway. Polling every evaluation at a short interval instead would load the
gateway and storage with the driver's own traffic and still add half an interval to every
visibility figure.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from crucible_contracts.names import EVENTS_STREAM, Role
from crucible_contracts.status import Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ended:
    """An end event as the driver received it: the finished evaluation when it carried one."""

    evaluation: dict[str, Any] | None
    received_at: float


def ended_event(message: bytes | str) -> tuple[str, dict[str, Any] | None] | None:
    """(eval_id, the finished evaluation or None) of a status event that ends an evaluation's
    primary run, else None.

    Shadow runs do not count: the client sees the primary run. Malformed messages are ignored
    (the driver falls back to polling for an evaluation whose event never comes).
    """
    try:
        event = json.loads(message)
        status = Status(event["status"])
    except (ValueError, KeyError, TypeError):
        return None
    if event.get("role") not in (None, Role.PRIMARY.value) or not status.is_terminal():
        return None
    eval_id = event.get("eval_id")
    if not isinstance(eval_id, str):
        return None
    evaluation = event.get("evaluation")
    return eval_id, evaluation if isinstance(evaluation, dict) else None


def ended_eval_id(message: bytes | str) -> str | None:
    """The eval_id of a status event that ends an evaluation's primary run, else None."""
    ended = ended_event(message)
    return ended[0] if ended is not None else None


class Completions:
    """Which evaluations have ended, learnt from the events stream; threads wait on one of them.

    An event may arrive before the submitting thread knows its eval_id (the 202 is still on its
    way), so ended ids are remembered until `forget`.
    """

    def __init__(self, redis_url: str) -> None:
        self._redis = redis.Redis.from_url(redis_url)
        self._lock = threading.Lock()
        self._ended: dict[str, Ended] = {}
        self._waiters: dict[str, threading.Event] = {}
        self._stop = threading.Event()
        self._reading = threading.Event()
        self._thread: threading.Thread | None = None
        self.events_seen = 0

    def start(self, timeout: float = 10) -> None:
        """Read the stream in a daemon thread, from its last entry now; returns once that is known."""
        self._thread = threading.Thread(target=self._listen, name="completions", daemon=True)
        self._thread.start()
        if not self._reading.wait(timeout):
            raise RuntimeError(f"could not read {EVENTS_STREAM} within {timeout}s")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._redis.close()

    def wait(self, eval_id: str, timeout: float) -> bool:
        """True once `eval_id`'s end has been published, False after `timeout` seconds."""
        with self._lock:
            if eval_id in self._ended:
                return True
            waiter = self._waiters.setdefault(eval_id, threading.Event())
        return waiter.wait(timeout)

    def has_ended(self, eval_id: str) -> bool:
        with self._lock:
            return eval_id in self._ended

    def ended(self, eval_id: str) -> Ended | None:
        """How `eval_id`'s end was announced (None while it has not been)."""
        with self._lock:
            return self._ended.get(eval_id)

    def forget(self, eval_id: str) -> None:
        with self._lock:
            self._ended.pop(eval_id, None)
            self._waiters.pop(eval_id, None)

    def mark_ended(self, eval_id: str, evaluation: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._ended[eval_id] = Ended(evaluation=evaluation, received_at=time.time())
            waiter = self._waiters.get(eval_id)
        if waiter is not None:
            waiter.set()

    def _listen(self) -> None:
        try:
            last = self._redis.xrevrange(EVENTS_STREAM, count=1)
            # From here on no event is missed: the stream is read from this entry on.
            position = last[0][0] if last else b"0-0"
            self._reading.set()
            while not self._stop.is_set():
                answer = self._redis.xread({EVENTS_STREAM: position}, block=500, count=500)
                for _, entries in answer:
                    for entry_id, fields in entries:
                        position = entry_id
                        self.events_seen += 1
                        ended = ended_event(fields.get(b"data", b""))
                        if ended is not None:
                            self.mark_ended(*ended)
        except redis.RedisError as exc:
            log.warning("events stream lost (%s); the driver falls back to polling", exc)
