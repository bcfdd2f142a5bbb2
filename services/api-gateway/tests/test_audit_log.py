"""The migration audit log through storage: every change's entry kept there, none lost when it is
down, against a real Redis and real storage processes."""

from __future__ import annotations

import uuid

import pytest

from crucible_contracts.errors import Unavailable
from crucible_gateway.migration.audit import AuditLog
from crucible_gateway.migration.models import MigrationDocument, MigrationSettings
from crucible_gateway.migration.store import MigrationStore

SEED = MigrationDocument.seed_from(MigrationSettings(celery_enabled=True))


@pytest.fixture
def store(state_redis) -> MigrationStore:
    store = MigrationStore(state_redis, prefix=f"test:audit:{uuid.uuid4().hex}")
    store.seed(SEED)
    return store


def _promote(audit: AuditLog, version: int, share: float, actor: str = "alice"):
    return audit.change(
        expected_version=version,
        changes={"celery_percentage": share},
        actor=actor,
        reason=f"to {share:.0%}",
        action="promote",
    )


def test_each_change_is_kept_by_storage_and_read_back_newest_first(store, storage, storage_client):
    audit = AuditLog(store=store, storage=storage_client(storage))

    _promote(audit, 1, 0.1)
    _promote(audit, 2, 0.5, actor="bob")

    entries = audit.entries(limit=10)
    assert [(e.actor, e.version_after, e.reason) for e in entries] == [
        ("bob", 3, "to 50%"),
        ("alice", 2, "to 10%"),
    ]
    assert entries[0].changes == {"celery_percentage": [0.1, 0.5]}
    assert {e.document for e in entries} == {store.prefix}
    assert store.pending_audit() == []
    assert [e.version_after for e in audit.entries(limit=1, offset=1)] == [2]


def test_with_storage_down_a_change_is_refused_with_503_and_nothing_is_written(
    store, own_storage, storage_client
):
    audit = AuditLog(store=store, storage=storage_client(own_storage))
    own_storage.stop()

    with pytest.raises(Unavailable, match="nothing was changed"):
        _promote(audit, 1, 0.5)

    assert store.load().version == 1
    assert store.pending_audit() == []


def test_entries_storage_missed_are_delivered_first_and_in_order_by_the_next_change(
    store, storage, storage_client
):
    # A change whose delivery failed (storage went away right after the write): its entry waits.
    store.update(
        expected_version=1, changes={"celery_percentage": 0.1}, actor="alice", reason="missed"
    )
    audit = AuditLog(store=store, storage=storage_client(storage))
    assert audit.entries(limit=10) == []

    _promote(audit, 2, 0.5)

    assert [(e.version_after, e.reason) for e in audit.entries(limit=10)] == [
        (3, "to 50%"),
        (2, "missed"),
    ]
    assert store.pending_audit() == []


def test_the_leader_delivers_what_waits_without_a_new_change(store, storage, storage_client):
    store.update(
        expected_version=1, changes={"celery_percentage": 0.1}, actor="alice", reason="missed"
    )
    audit = AuditLog(store=store, storage=storage_client(storage))

    audit.deliver()
    audit.deliver()  # nothing left, nothing doubled

    assert [e.reason for e in audit.entries(limit=10)] == ["missed"]
    assert store.pending_audit() == []


def test_a_failed_delivery_keeps_the_entry_in_the_outbox(store, own_storage, storage_client):
    store.update(
        expected_version=1, changes={"celery_percentage": 0.1}, actor="alice", reason="missed"
    )
    own_storage.stop()

    AuditLog(store=store, storage=storage_client(own_storage)).deliver()

    assert [entry.reason for _, entry in store.pending_audit()] == ["missed"]
