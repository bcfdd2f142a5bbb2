"""The pure parts of the live events: stream positions, what the stream still covers, filters,
and the hub's fan-out (bounded queues, the cap on listeners, a slow listener closed)."""

from __future__ import annotations

import asyncio
import json

import pytest

from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_gateway.events.hub import Entry, EventHub, ListenersFull, Retention, Signal
from crucible_gateway.events.positions import StreamId
from crucible_gateway.events.service import EventFilter, all_events

# Never reached: these tests use the fan-out only, which makes no Redis call.
UNREACHED = "redis://127.0.0.1:1/0"


def entry(n: int, **fields: str) -> Entry:
    values = {
        "eval_id": "a" * 32,
        "event": "eval.status_changed",
        "role": "primary",
        "status": "running",
        "backend": "legacy",
        "data": json.dumps({"n": n}),
    }
    return Entry(StreamId(1000 + n, 0), {**values, **fields})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1733300000000-0", StreamId(1733300000000, 0)), (" 5-12 ", StreamId(5, 12))],
)
def test_a_stream_entry_id_is_read_back(text, expected):
    assert StreamId.parse(text) == expected
    assert str(StreamId.parse(text)) == text.strip()


@pytest.mark.parametrize(
    "text", ["", "abc", "1-2-3", "-1-0", "12", "1-", "1.5-0", "18446744073709551616-0"]
)
def test_anything_else_is_refused(text):
    with pytest.raises(ValueError):
        StreamId.parse(text)


def test_ids_order_as_redis_orders_them():
    assert StreamId(5, 10) < StreamId(6, 0) < StreamId(6, 1)


@pytest.mark.parametrize(
    ("retention", "after", "covers"),
    [
        # Nothing trimmed yet: everything after any id it made is there.
        (Retention(StreamId(10, 0), StreamId(20, 0), trimmed=False), StreamId(1, 0), True),
        # Trimmed: only from the first entry kept.
        (Retention(StreamId(10, 0), StreamId(20, 0), trimmed=True), StreamId(9, 5), False),
        (Retention(StreamId(10, 0), StreamId(20, 0), trimmed=True), StreamId(10, 0), True),
        (Retention(StreamId(10, 0), StreamId(20, 0), trimmed=True), StreamId(20, 0), True),
        # Trimmed to nothing: only a client that had the last entry is complete.
        (Retention(None, StreamId(20, 0), trimmed=True), StreamId(19, 0), False),
        (Retention(None, StreamId(20, 0), trimmed=True), StreamId(20, 0), True),
        # An id the stream never made (Redis emptied since), or no stream at all.
        (Retention(StreamId(10, 0), StreamId(20, 0), trimmed=False), StreamId(21, 0), False),
        (Retention(None, None, trimmed=False), StreamId(1, 0), False),
    ],
)
def test_what_the_stream_still_covers(retention, after, covers):
    assert retention.covers(after) is covers


@pytest.mark.parametrize(
    ("retention", "reason"),
    [
        (Retention(StreamId(10, 0), StreamId(20, 0), trimmed=True), "trimmed"),
        (Retention(StreamId(1, 0), StreamId(4, 0), trimmed=False), "reset"),
        (Retention(None, None, trimmed=False), "reset"),
        (Retention(StreamId(1, 0), StreamId(20, 0), trimmed=True), None),
    ],
)
def test_a_gap_says_why(retention, reason):
    assert retention.gap_after(StreamId(5, 0)) == reason


@pytest.mark.parametrize(
    ("wanted", "accepted"),
    [
        (EventFilter(), True),
        (EventFilter(backend=Backend.LEGACY), True),
        (EventFilter(backend=Backend.CELERY), False),
        (EventFilter(status=Status.RUNNING, role=Role.PRIMARY), True),
        (EventFilter(status=Status.RUNNING, role=Role.SHADOW), False),
        (EventFilter(event=EventName.CREATED), False),
    ],
)
def test_a_filter_keeps_the_entries_it_names(wanted, accepted):
    assert wanted.accepts(entry(1)) is accepted


def test_only_the_primary_runs_terminal_status_change_ends_an_evaluation():
    assert entry(1, status="completed").ends_primary()
    assert not entry(1, status="completed", role="shadow").ends_primary()
    assert not entry(1, status="running").ends_primary()
    assert not entry(1, status="queued", event="eval.created").ends_primary()


def test_past_the_cap_a_listener_is_refused_and_a_freed_place_is_taken_again():
    async def scenario() -> None:
        hub = EventHub(UNREACHED, max_listeners=2, queue_size=4)
        first = hub.register(stream="all", accepts=lambda _: True)
        hub.register(stream="all", accepts=lambda _: True)
        with pytest.raises(ListenersFull) as refused:
            hub.register(stream="all", accepts=lambda _: True)
        assert refused.value.status_code == 503 and refused.value.retry_after == 5
        hub.unregister(first)
        hub.unregister(first)  # twice: still one place freed
        hub.register(stream="all", accepts=lambda _: True)
        assert hub.listeners == 2
        await hub.close()

    asyncio.run(scenario())


def test_each_listener_gets_what_it_accepts_in_order():
    async def scenario() -> None:
        hub = EventHub(UNREACHED, max_listeners=10, queue_size=10)
        legacy = hub.register(stream="all", accepts=EventFilter(backend=Backend.LEGACY).accepts)
        celery = hub.register(stream="all", accepts=EventFilter(backend=Backend.CELERY).accepts)
        for n in range(4):
            hub.hand_out(entry(n, backend="legacy" if n % 2 else "celery"))
        assert [e.id.ms for e in legacy.pending()] == [1001, 1003]
        assert [e.id.ms for e in celery.pending()] == [1000, 1002]
        assert hub.position == StreamId(1003, 0)
        await hub.close()

    asyncio.run(scenario())


def test_a_listener_too_slow_to_keep_up_is_closed_with_a_notice_and_frees_its_place():
    async def scenario() -> None:
        hub = EventHub(UNREACHED, max_listeners=10, queue_size=3)
        hub.position = StreamId(999, 0)
        slow = hub.register(stream="all", accepts=lambda _: True)
        messages = all_events(hub=hub, listener=slow, accepts=lambda _: True, after=None)
        hub.hand_out(entry(0))
        (first, *_) = await anext(messages)  # the client takes a batch, then falls behind
        for n in range(1, 8):
            hub.hand_out(entry(n))

        assert hub.listeners == 0
        assert slow.queue.qsize() == 1  # only the notice: memory does not grow with the backlog
        (notice,) = await anext(messages)
        with pytest.raises(StopAsyncIteration):
            await anext(messages)
        assert (first.id, first.event) == ("1000-0", "eval.status_changed")
        assert notice.event == "closed"
        # Where it stopped: a reconnect with this Last-Event-ID resumes after what it had.
        assert notice.id == "1000-0"
        assert json.loads(notice.data)["reason"] == "slow_listener"
        await hub.close()

    asyncio.run(scenario())


def test_a_resync_reaches_every_listener():
    async def scenario() -> None:
        hub = EventHub(UNREACHED, max_listeners=10, queue_size=3)
        listeners = [hub.register(stream="evaluation", accepts=lambda _: True) for _ in range(2)]
        hub._resync()
        assert [listener.pending() for listener in listeners] == [[Signal.RESYNC]] * 2
        await hub.close()

    asyncio.run(scenario())


def test_what_queued_up_while_a_listener_lingered_comes_in_one_batch():
    async def scenario() -> None:
        hub = EventHub(UNREACHED, max_listeners=10, queue_size=10)
        hub.position = StreamId(999, 0)
        listener = hub.register(stream="all", accepts=EventFilter(role=Role.PRIMARY).accepts)
        messages = all_events(hub=hub, listener=listener, accepts=listener.accepts, after=None)
        for n in range(4):
            hub.hand_out(entry(n, role="primary" if n != 2 else "shadow"))
        batch = await anext(messages)
        assert [message.id for message in batch] == ["1000-0", "1001-0", "1003-0"]
        await messages.aclose()
        await hub.close()

    asyncio.run(scenario())
