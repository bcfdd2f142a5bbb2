"""Leader election among gateway replicas, and the loop of rounds only the leader runs.

One short lease in the state Redis, renewed while alive: only its holder runs the leader's jobs
(the migration supervisor's comparison sweep, guard and ramp; housekeeping's reconciler and
purge), so that those act once however many replicas serve traffic. A replica that dies stops
renewing and another takes over when the lease expires. Correctness never rests on the lease
alone: the leader's writes are compare-and-set (the settings' version, storage's insert-once
comparison, a run's status), and each job's round is claimed in Redis before it runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

log = logging.getLogger(__name__)

# Renew only our own lease; take a free one. One round trip, atomic on the server.
_ACQUIRE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""

# Claim a job's round: due when no round was claimed within ARGV[1] ms (by Redis' clock, the same
# for every replica); the claim lives ARGV[2] ms, so a long-dead schedule does not linger.
_CLAIM_ROUND = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local last = redis.call('GET', KEYS[1])
if last and now_ms - tonumber(last) < tonumber(ARGV[1]) then
    return 0
end
redis.call('SET', KEYS[1], now_ms, 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLease:
    """This replica's claim on `key`; `holds()` answers and extends it in one call."""

    def __init__(self, client: redis.Redis, *, key: str, ttl_seconds: float) -> None:
        self._redis = client
        self.key = key
        self.identity = uuid.uuid4().hex
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._acquire = client.register_script(_ACQUIRE_OR_RENEW)
        self._release = client.register_script(_RELEASE)
        self._claim = client.register_script(_CLAIM_ROUND)

    def holds(self) -> bool:
        """Acquire the lease if free, renew it if ours; False when another replica holds it.

        Raises redis.RedisError: without Redis nobody can prove leadership, so nobody acts.
        """
        return bool(self._acquire(keys=[self.key], args=[self.identity, self._ttl_ms]))

    def still_holds(self) -> bool:
        """`holds()`, with a Redis that cannot be reached taken as "no": for a round that checks
        its leadership between steps and stops when it is gone."""
        try:
            return self.holds()
        except redis.RedisError as exc:
            log.warning("leadership unknown (%r): stopping", exc)
            return False

    def claim_round(self, job: str, *, interval: float, slack: float = 0.0) -> bool:
        """Claim the next round of `job`: True when none was claimed in the last `interval`
        seconds (less `slack`, the jitter of the caller's wake-ups), recorded beside the lease.

        Kept in Redis so that a leader that restarts, or another that takes over, goes on from
        the last round instead of starting every interval again. Raises redis.RedisError.
        """
        key = f"{self.key}:round:{job}"
        gap_ms = max(0, int((interval - slack) * 1000))
        ttl_ms = max(1, int(2 * interval * 1000))
        return bool(self._claim(keys=[key], args=[gap_ms, ttl_ms]))

    def holder(self) -> str | None:
        raw = self._redis.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def release(self) -> None:
        """Give the lease up at shutdown so that another replica need not wait for it to expire."""
        self._release(keys=[self.key], args=[self.identity])


@dataclass(frozen=True)
class Job:
    """One of the leader's rounds: `run(now)` every `interval` seconds. `run` handles the failures
    it expects itself (a dependency down: the round is skipped); anything else is logged."""

    name: str
    interval: float
    run: Callable[[datetime], object]


class LeaderLoop:
    """Runs each job in a daemon thread of its own, every `job.interval` seconds, while this
    replica holds the lease: a slow round of one job never delays another, nor the renewal.

    Each thread wakes every `min(interval, poll)` seconds, renews (or takes) the lease and, when
    its job is due, claims the round in Redis (`LeaderLease.claim_round`) and runs it.
    """

    def __init__(self, lease: LeaderLease, *, poll: float = 1.0) -> None:
        self.lease = lease
        self.poll = poll
        self.jobs: list[Job] = []
        self.is_leader = False
        self._redis_down = False  # said once, not once per thread and poll
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, job: Job) -> None:
        """Run `job` too, from `start` on."""
        if any(known.name == job.name for known in self.jobs):
            raise ValueError(f"a leader job named {job.name!r} exists already")
        self.jobs.append(job)

    def still_leader(self) -> bool:
        """For a long round to check between its steps: False once this replica lost the lease
        (or cannot tell), or is stopping; otherwise the lease is renewed."""
        return not self._stop.is_set() and self.lease.still_holds()

    def run_due(self, job: Job, now: datetime | None = None) -> bool:
        """Run `job` once if this replica holds the lease and the job's round is due; True when
        it ran. A Redis that cannot be reached makes nobody the leader: nothing runs."""
        try:
            self.is_leader = self.lease.holds()
            if self._redis_down:
                log.info("the state Redis answers again")
                self._redis_down = False
            if not self.is_leader:
                return False
            slack = min(job.interval, self.poll) / 2
            if not self.lease.claim_round(job.name, interval=job.interval, slack=slack):
                return False
        except redis.RedisError as exc:
            self.is_leader = False
            if not self._redis_down:
                log.warning("no leader rounds while the state Redis cannot be reached: %r", exc)
            self._redis_down = True
            return False
        job.run(now or datetime.now(UTC))
        return True

    def start(self) -> None:
        for job in self.jobs:
            thread = threading.Thread(
                target=self._loop, args=(job,), name=f"leader-{job.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop every thread (each finishes the round it is in) and give the lease up."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.is_leader:
            with contextlib.suppress(redis.RedisError):
                self.lease.release()
        self.is_leader = False

    def _loop(self, job: Job) -> None:
        while not self._stop.wait(min(job.interval, self.poll)):
            try:
                self.run_due(job)
            except Exception:  # the loop must outlive a bug in one round
                log.exception("leader round %s failed", job.name)
