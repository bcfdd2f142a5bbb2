"""Leader election over a real Redis: one holder at a time, renewal, release and expiry."""

from __future__ import annotations

import uuid

import pytest
import redis

from crucible_gateway.leader import LeaderLease
from crucible_runtime.pytest_plugin import free_port, wait_for
from crucible_runtime.redis_client import fail_fast_redis


@pytest.fixture
def key() -> str:
    return f"test:leader:{uuid.uuid4().hex}"


def test_only_one_of_several_replicas_holds_the_lease(state_redis: redis.Redis, key: str):
    leases = [LeaderLease(state_redis, key=key, ttl_seconds=30) for _ in range(5)]

    holders = [lease for lease in leases if lease.holds()]

    assert len(holders) == 1
    assert state_redis.get(key).decode() == holders[0].identity
    # Asking again renews the holder's lease and still refuses everyone else.
    assert [lease.holds() for lease in leases] == [lease is holders[0] for lease in leases]


def test_a_released_lease_is_taken_by_the_next_replica_at_once(state_redis, key):
    first, second = (LeaderLease(state_redis, key=key, ttl_seconds=30) for _ in range(2))
    assert first.holds() and not second.holds()

    first.release()

    assert second.holds()
    assert not first.holds()


def test_releasing_a_lease_one_does_not_hold_leaves_the_holder_alone(state_redis, key):
    holder, other = (LeaderLease(state_redis, key=key, ttl_seconds=30) for _ in range(2))
    assert holder.holds()

    other.release()

    assert holder.holder() == holder.identity


def test_a_lease_that_is_not_renewed_expires_and_another_replica_takes_over(state_redis, key):
    dead, alive = (LeaderLease(state_redis, key=key, ttl_seconds=0.3) for _ in range(2))
    assert dead.holds()
    assert not alive.holds()

    wait_for(alive.holds, timeout=5, interval=0.05, what="the unrenewed lease to expire")

    assert alive.holder() == alive.identity
    assert not dead.holds()


def test_without_redis_nobody_can_claim_leadership(key):
    unreachable = fail_fast_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    with pytest.raises(redis.RedisError):
        LeaderLease(unreachable, key=key, ttl_seconds=5).holds()
