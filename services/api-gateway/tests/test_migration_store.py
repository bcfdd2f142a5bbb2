"""The shared migration document against a real Redis: seeding, compare-and-set, the audit outbox,
the cache, the guard's decisions."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
import redis

from crucible_contracts.errors import Conflict, InvalidInput
from crucible_gateway.migration.hysteresis import GuardStreak
from crucible_gateway.migration.models import GuardStatus, MigrationDocument, MigrationSettings
from crucible_gateway.migration.source import RedisMigrationSource
from crucible_gateway.migration.store import MigrationStore
from crucible_runtime.pytest_plugin import wait_for

ENV_SEED = MigrationDocument.seed_from(
    MigrationSettings(celery_enabled=True, celery_percentage=0.25)
)


@pytest.fixture
def store(state_redis: redis.Redis) -> MigrationStore:
    return MigrationStore(state_redis, prefix=f"test:{uuid.uuid4().hex}")


def test_the_document_keeps_the_settings_at_its_top_level_and_gives_them_back():
    settings = MigrationSettings(celery_enabled=True, celery_percentage=0.25, mode="shadow")
    document = MigrationDocument.seed_from(settings)

    assert list(document.model_dump())[: len(MigrationSettings.model_fields) + 1] == [
        "version",
        *MigrationSettings.model_fields,
    ]
    assert type(document.settings()) is MigrationSettings
    assert document.settings() == settings
    assert MigrationDocument.model_validate_json(document.model_dump_json()) == document


def test_the_environment_seeds_the_document_only_when_none_exists(store):
    first = store.seed(ENV_SEED)
    other_env = MigrationDocument.seed_from(MigrationSettings(celery_percentage=0.9))

    second = store.seed(other_env)

    assert first.celery_percentage == second.celery_percentage == 0.25
    assert store.load().version == 1


def test_an_update_bumps_the_version_and_records_who_what_and_why(store):
    store.seed(ENV_SEED)

    new = store.update(
        expected_version=1, changes={"celery_percentage": 0.5}, actor="alice", reason="step 2"
    )

    assert (new.version, new.celery_percentage, new.updated_by) == (2, 0.5, "alice")
    assert store.load() == new
    [(_, entry)] = store.pending_audit()
    assert entry.document == store.prefix
    assert (entry.actor, entry.reason, entry.action) == ("alice", "step 2", "update")
    assert (entry.version_before, entry.version_after) == (1, 2)
    assert entry.changes == {"celery_percentage": [0.25, 0.5]}


def test_a_write_based_on_a_stale_version_is_a_conflict_naming_the_current_version(store):
    store.seed(ENV_SEED)
    store.update(expected_version=1, changes={"force_legacy": True}, actor="alice", reason="a")

    with pytest.raises(Conflict) as raised:
        store.update(expected_version=1, changes={"force_legacy": False}, actor="bob", reason="b")

    assert raised.value.details["current_version"] == 2
    assert store.load().force_legacy is True


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"celery_percentage": 1.5}, "why", "celery_percentage"),
        ({"shadow_percentage": -0.1}, "why", "shadow_percentage"),
        ({"mode": "mirror"}, "why", "mode"),
        ({"version": 9}, "why", "version"),
        ({"force_legacy": True}, "  ", "reason"),
    ],
)
def test_invalid_changes_are_refused_and_nothing_is_written(store, changes, reason, field):
    store.seed(ENV_SEED)

    with pytest.raises(InvalidInput) as raised:
        store.update(expected_version=1, changes=changes, actor="alice", reason=reason)

    assert raised.value.field == field
    assert store.load().version == 1
    assert store.pending_audit() == []


def test_concurrent_writers_of_one_version_let_exactly_one_win(store):
    store.seed(ENV_SEED)
    writers = 8
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            store.update(
                expected_version=1,
                changes={"celery_percentage": n / 10},
                actor=f"writer-{n}",
                reason="race",
            )
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["conflict"] * (writers - 1) + ["won"]
    assert store.load().version == 2
    assert len(store.pending_audit()) == 1


def test_every_change_waits_in_the_outbox_oldest_first_until_delivered(store):
    store.seed(ENV_SEED)
    for version in range(1, 5):
        store.update(
            expected_version=version,
            changes={"celery_percentage": version / 10},
            actor="alice",
            reason=f"step {version}",
        )

    pending = store.pending_audit()
    store.audit_delivered(pending[1][0])

    assert [entry.version_after for _, entry in pending] == [2, 3, 4, 5]
    assert [entry.version_after for _, entry in store.pending_audit()] == [2, 4, 5]
    assert len({entry.audit_id for _, entry in pending}) == 4


def test_a_reason_storage_would_refuse_is_refused_before_anything_is_written(store):
    store.seed(ENV_SEED)

    with pytest.raises(InvalidInput, match="reason"):
        store.update(
            expected_version=1, changes={"celery_percentage": 0.5}, actor="a", reason="r" * 10_001
        )

    assert store.load().version == 1
    assert store.pending_audit() == []


def test_the_source_follows_the_store_and_keeps_its_last_document_while_redis_is_down(
    redis_server,
):
    client = redis.Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    store = MigrationStore(client, prefix="test")
    source = RedisMigrationSource(store=store, seed=ENV_SEED, refresh_interval=0.05)
    source.start()
    try:
        assert source.status()["stale"] is False
        store.update(expected_version=1, changes={"celery_percentage": 1.0}, actor="a", reason="r")
        wait_for(lambda: source.current().celery_percentage == 1.0, timeout=5, what="refresh")

        redis_server.stop()
        wait_for(lambda: source.status()["stale"], timeout=5, what="stale")

        assert source.current().celery_percentage == 1.0
        assert source.status()["stale_since"] is not None
        redis_server.start()
        # The restarted Redis is empty: the replica writes back what it last knew, not its env.
        wait_for(lambda: not source.status()["stale"], timeout=10, what="fresh again")
        assert store.load().version == 2
        assert store.load().celery_percentage == 1.0
    finally:
        source.stop()
        client.close()


def test_a_nested_change_names_only_the_sub_fields_it_changes(store):
    store.seed(ENV_SEED)

    new = store.update(
        expected_version=1, changes={"guard": {"min_samples": 7}}, actor="alice", reason="tune"
    )

    assert new.guard.min_samples == 7
    assert new.guard.window_seconds == ENV_SEED.guard.window_seconds
    [(_, entry)] = store.pending_audit()
    assert entry.changes["guard"][0]["min_samples"] == ENV_SEED.guard.min_samples
    assert entry.changes["guard"][1]["min_samples"] == 7


def test_new_normalisation_rules_get_a_new_rules_version(store):
    store.seed(ENV_SEED)
    rules = [{"name": "ids", "kind": "mask", "pattern": "id=\\d+", "replacement": "id=<n>"}]

    changed = store.update(
        expected_version=1, changes={"comparison": {"rules": rules}}, actor="a", reason="ids"
    )
    grace_only = store.update(
        expected_version=2,
        changes={"comparison": {"shadow_grace_seconds": 5}},
        actor="a",
        reason="grace",
    )

    assert changed.comparison.rules_version == ENV_SEED.comparison.rules_version + 1
    assert grace_only.comparison.rules_version == changed.comparison.rules_version


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"guard": {"min_samples": 0}}, "guard.min_samples"),
        ({"ramp": {"steps": [0.5, 0.2]}}, "ramp.steps"),
        (
            {"comparison": {"rules": [{"name": "x", "kind": "mask", "pattern": "("}]}},
            "comparison.rules.0",
        ),
    ],
)
def test_an_invalid_nested_setting_is_refused_naming_it_and_nothing_is_written(
    store, changes, field
):
    store.seed(ENV_SEED)

    with pytest.raises(InvalidInput) as caught:
        store.update(expected_version=1, changes=changes, actor="a", reason="bad")

    assert caught.value.field.startswith(field)
    assert store.load().version == 1


def test_guard_decisions_are_kept_newest_first_and_capped_and_the_streak_outlives_the_leader(
    state_redis,
):
    prefix = f"test:{uuid.uuid4().hex}"
    leader = MigrationStore(state_redis, prefix=prefix, guard_history_max=3)
    now = datetime.now(UTC)
    for breaches in range(1, 6):
        status = GuardStatus(
            evaluated_at=now, leader="a", document_version=7, state="evaluated", streak=breaches
        )
        streak = GuardStreak(document_version=7, breaches=breaches, since=now)
        leader.record_guard_decision(status, streak, ttl_seconds=30)

    # Another replica, taking over the lease, reads what the first one left.
    successor = MigrationStore(state_redis, prefix=prefix, guard_history_max=3)

    assert [d.streak for d in successor.guard_decisions(limit=10)] == [5, 4, 3]
    assert successor.guard_streak() == GuardStreak(document_version=7, breaches=5, since=now)
    assert successor.guard_status().streak == 5
