"""The executor pool's order per run: every attempt of one run asks the same instance first."""

from __future__ import annotations

import uuid
from collections import Counter

from crucible_contracts.names import Role
from crucible_runtime.clients import ExecutorPool

URLS = [f"http://executor-{n}:8083" for n in range(4)]


def first_choice(pool: ExecutorPool, eval_id: str, role: Role = Role.PRIMARY) -> str:
    return pool.preference(eval_id, role)[0].base_url


def test_every_attempt_of_a_run_asks_the_same_instance_first_whatever_pool_asks():
    # Two pools stand for two consumers (a restarted worker, the reconciler's redispatch).
    one, other = ExecutorPool(URLS), ExecutorPool(list(reversed(URLS)))
    for _ in range(50):
        eval_id = uuid.uuid4().hex
        assert first_choice(one, eval_id) == first_choice(other, eval_id)
        assert [c.base_url for c in one.preference(eval_id, Role.SHADOW)] == [
            c.base_url for c in other.preference(eval_id, Role.SHADOW)
        ]


def test_runs_spread_over_every_instance():
    pool = ExecutorPool(URLS)
    firsts = Counter(first_choice(pool, uuid.uuid4().hex) for _ in range(4000))
    assert set(firsts) == set(URLS)
    # 1000 expected each; binomial sd is about 27, so 850 is more than 5 sd away.
    assert min(firsts.values()) > 850


def test_removing_an_instance_moves_only_the_runs_that_ranked_it_first():
    full, smaller = ExecutorPool(URLS), ExecutorPool(URLS[:-1])
    for _ in range(500):
        eval_id = uuid.uuid4().hex
        before = first_choice(full, eval_id)
        if before != URLS[-1]:
            assert first_choice(smaller, eval_id) == before
