"""Leader election among gateway replicas: one short lease in the state Redis, renewed while alive.

Only the holder of the lease runs the migration supervisor (comparison sweep, rollback guard, ramp),
so that those act once however many replicas serve traffic. A replica that dies stops renewing and
another takes over when the lease expires. Correctness never rests on the lease alone: every write
the leader makes is a compare-and-set (the settings' version, storage's insert-once comparison).
"""

from __future__ import annotations

import uuid

import redis

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

    def holds(self) -> bool:
        """Acquire the lease if free, renew it if ours; False when another replica holds it.

        Raises redis.RedisError: without Redis nobody can prove leadership, so nobody acts.
        """
        return bool(self._acquire(keys=[self.key], args=[self.identity, self._ttl_ms]))

    def holder(self) -> str | None:
        raw = self._redis.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def release(self) -> None:
        """Give the lease up at shutdown so that another replica need not wait for it to expire."""
        self._release(keys=[self.key], args=[self.identity])
