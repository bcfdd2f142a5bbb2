"""The mixed workload's programs."""

from __future__ import annotations

from collections import Counter

from crucible_bench.phases import MIX, mixed_programs


def test_one_cycle_holds_each_kind_in_its_share():
    kinds = Counter(program.kind for program in mixed_programs(seed=6))
    assert kinds == {"quick": 7, "sleep": 2, "cpu": 1}
    assert sum(MIX.values()) == 10


def test_the_order_is_the_same_on_every_run():
    assert mixed_programs(seed=6) == mixed_programs(seed=6)
