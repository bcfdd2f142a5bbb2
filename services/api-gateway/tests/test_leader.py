"""Leader election over a real Redis: one holder at a time, renewal, release and expiry; and the
leader's loop: each job on its own interval, only on the lease holder, outliving a failing round."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
import redis

from crucible_gateway.leader import Job, LeaderLease, LeaderLoop
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


# --- the leader's loop -----------------------------------------------------------------------


class Calls:
    """A job's `run`: notes when it was called, raises when told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.at: list[datetime] = []
        self.fail = fail

    def __call__(self, now: datetime) -> None:
        self.at.append(now)
        if self.fail:
            raise RuntimeError("a bug in this round")


def test_a_round_runs_on_the_lease_holder_once_per_interval(state_redis, key):
    leader, other = (LeaderLoop(LeaderLease(state_redis, key=key, ttl_seconds=30)) for _ in "ab")
    hourly = Job("purge", 3600, Calls())
    leader.add(hourly)

    ran = [leader.run_due(hourly), leader.run_due(hourly), other.run_due(hourly)]

    assert ran == [True, False, False]
    assert len(hourly.run.at) == 1
    assert (leader.is_leader, other.is_leader) == (True, False)


def test_a_new_leader_goes_on_from_the_last_round_instead_of_running_at_once(state_redis, key):
    first, second = (LeaderLoop(LeaderLease(state_redis, key=key, ttl_seconds=30)) for _ in "ab")
    hourly = Job("purge", 3600, Calls())
    assert first.run_due(hourly)

    first.stop()  # gives the lease up

    assert not second.run_due(hourly)
    assert second.is_leader
    assert len(hourly.run.at) == 1


def test_each_job_runs_on_its_own_interval(state_redis, key):
    loop = LeaderLoop(LeaderLease(state_redis, key=key, ttl_seconds=30), poll=0.05)
    fast, slow = Job("fast", 0.05, Calls()), Job("slow", 3600, Calls())
    loop.add(fast)
    loop.add(slow)

    loop.start()
    try:
        wait_for(lambda: len(fast.run.at) >= 5, timeout=10, what="five rounds of the fast job")
    finally:
        loop.stop()

    assert len(slow.run.at) == 1


def test_the_loop_outlives_a_round_that_raises(state_redis, key):
    loop = LeaderLoop(LeaderLease(state_redis, key=key, ttl_seconds=30), poll=0.05)
    broken = Job("broken", 0.05, Calls(fail=True))
    loop.add(broken)

    loop.start()
    try:
        wait_for(lambda: len(broken.run.at) >= 3, timeout=10, what="rounds after a failure")
    finally:
        loop.stop()

    assert not loop.is_leader
    assert LeaderLease(state_redis, key=key, ttl_seconds=30).holds()  # released at stop


def test_two_jobs_cannot_share_a_name(state_redis, key):
    loop = LeaderLoop(LeaderLease(state_redis, key=key, ttl_seconds=30))
    loop.add(Job("purge", 1, Calls()))

    with pytest.raises(ValueError, match="purge"):
        loop.add(Job("purge", 2, Calls()))


def test_without_redis_no_round_runs(key):
    unreachable = fail_fast_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    loop = LeaderLoop(LeaderLease(unreachable, key=key, ttl_seconds=5))
    job = Job("purge", 1, Calls())

    assert not loop.run_due(job)
    assert not loop.still_leader()
    assert job.run.at == []
