"""The dead-letter queue store against a real Redis: order, cap, index consistency, errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import redis

from crucible_contracts.errors import NotFound, Unavailable
from crucible_contracts.models import DeadLetter
from crucible_contracts.names import Backend, Role
from crucible_runtime.dead_letters import DeadLetterStore
from crucible_runtime.pytest_plugin import free_port
from crucible_runtime.redis_client import fail_fast_redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_store(client: redis.Redis) -> Iterator[Callable[..., DeadLetterStore]]:
    """Stores on keys of their own, deleted after the test (the Redis is shared by the session)."""
    keys: list[str] = []

    def make(max_entries: int = 100) -> DeadLetterStore:
        keys.append(f"test:dead_letter:{uuid.uuid4().hex}")
        return DeadLetterStore(client, key=keys[-1], max_entries=max_entries)

    yield make
    for key in keys:
        client.delete(key, f"{key}:entries")


def entry(n: int = 0, **fields) -> DeadLetter:
    return DeadLetter(
        eval_id=f"{n:032x}",
        role=Role.PRIMARY,
        backend=Backend.CELERY,
        task_name="tasks.evaluate_code",
        task_id=f"task-{n}",
        kwargs={"task": {"eval_id": f"{n:032x}"}, "failures": 2},
        reason=f"gave up after 3 failed attempts ({n})",
        exception_type="crucible_contracts.errors.Unavailable",
        exception="no executor could be reached",
        traceback="Traceback (most recent call last):\n  ...\n",
        attempts=3,
        failed_at=datetime.now(UTC),
        **fields,
    )


def test_pushed_entries_come_back_newest_first_and_whole(make_store):
    store = make_store()
    entries = [entry(n) for n in range(3)]

    assert all(store.push(e) for e in entries)

    assert store.list() == entries[::-1]
    assert store.count() == 3
    assert store.get(entries[1].id) == entries[1]


def test_each_entry_gets_a_unique_id_and_no_replays():
    first, second = entry(), entry()

    assert first.id != second.id
    assert first.replays == 0
    assert first.first_seen_at is None


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [(2, 0, [4, 3]), (2, 2, [2, 1]), (10, 4, [0]), (3, 5, []), (0, 0, [])],
)
def test_list_pages_newest_first(make_store, limit, offset, expected):
    store = make_store()
    entries = [entry(n) for n in range(5)]
    for e in entries:
        store.push(e)

    assert [e.task_id for e in store.list(limit, offset)] == [f"task-{n}" for n in expected]


def test_negative_page_bounds_are_refused(make_store):
    with pytest.raises(ValueError):
        make_store().list(-1)


def test_the_cap_drops_the_oldest_entries_and_their_index(make_store, client):
    store = make_store(max_entries=3)
    entries = [entry(n) for n in range(5)]
    for e in entries:
        store.push(e)

    assert store.list() == entries[:1:-1]
    assert store.count() == 3
    assert client.hlen(f"{store.key}:entries") == 3
    with pytest.raises(NotFound):
        store.get(entries[0].id)


def test_pushing_an_id_twice_keeps_one_entry(make_store):
    store = make_store()
    first = entry()

    assert store.push(first) is True
    assert store.push(first.model_copy(update={"reason": "reported again"})) is False

    assert store.list() == [first]


def test_remove_answers_the_entry_and_forgets_it(make_store):
    store = make_store()
    kept, removed = entry(1), entry(2)
    store.push(kept)
    store.push(removed)

    assert store.remove(removed.id) == removed

    assert store.list() == [kept]
    with pytest.raises(NotFound):
        store.get(removed.id)
    with pytest.raises(NotFound):
        store.remove(removed.id)


def test_purge_deletes_everything_and_counts_it(make_store):
    store = make_store()
    for n in range(4):
        store.push(entry(n))

    assert store.purge() == 4
    assert store.count() == 0
    assert store.list() == []
    assert store.purge() == 0


def test_concurrent_pushes_keep_the_cap_and_the_index_in_agreement(make_store, client):
    store = make_store(max_entries=50)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(store.push, (entry(n) for n in range(400))))

    ids = {i.decode() for i in client.lrange(store.key, 0, -1)}
    indexed = {i.decode() for i in client.hkeys(f"{store.key}:entries")}
    assert len(ids) == 50
    assert ids == indexed


def test_an_unreachable_redis_is_unavailable():
    client = fail_fast_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    store = DeadLetterStore(client)

    with pytest.raises(Unavailable):
        store.push(entry())
    with pytest.raises(Unavailable):
        store.count()


def test_a_store_needs_room_for_one_entry(client):
    with pytest.raises(ValueError):
        DeadLetterStore(client, max_entries=0)
