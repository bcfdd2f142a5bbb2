"""The mixed workload's programs, how phases state their concurrency, the event-stream hook."""

from __future__ import annotations

from collections import Counter

from crucible_bench.phases import MIX, BenchSettings, mixed_programs


def test_one_cycle_holds_each_kind_in_its_share():
    kinds = Counter(program.kind for program in mixed_programs(seed=6))
    assert kinds == {"quick": 7, "sleep": 2, "cpu": 1}
    assert sum(MIX.values()) == 10


def test_the_order_is_the_same_on_every_run():
    assert mixed_programs(seed=6) == mixed_programs(seed=6)


def settings() -> BenchSettings:
    return BenchSettings(
        seconds=3, rate=100, celery_concurrency=2, legacy_concurrency=3, executor_slots=4
    )


def test_each_path_names_the_consumers_its_evaluations_wait_for():
    assert settings().consumers("celery") == "Celery -c 2"
    assert settings().consumers("legacy") == "queue-worker 3 threads"
    assert settings().consumers("shadow") == "queue-worker 3 threads; Celery -c 2"


def test_every_phase_states_clients_consumers_and_executor_slots():
    assert settings().concurrency(clients="8 (closed loop)", consumers="Celery -c 2") == {
        "clients": "8 (closed loop)",
        "consumers": "Celery -c 2",
        "executor_slots": "4 per executor",
    }
