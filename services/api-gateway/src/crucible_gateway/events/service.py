"""The messages of the live event streams: an evaluation's until its end, or every event, each
resumable from a `Last-Event-ID` without a gap or a repeat while the stream still holds it.

A message is `id:` (the stream entry id), `event:` (the Event's `event`) and `data:` (the
Event's JSON, as storage wrote it). Two notices stand beside them: `gap` (the operators' stream
cannot resume where the client asked: what lies between is gone) and `closed` (the gateway ends
the stream itself: a listener too slow to keep up).

Each stream is a generator of batches of messages, each batch written to the client at once.
Every generator here starts from a listener the caller registered *before* it read anything, and
skips the entries it already delivered from its catch-up by their id: the listener's queue holds
everything handed out after it was registered, so nothing falls between the two.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from pydantic import TypeAdapter
from redis.exceptions import RedisError

from crucible_contracts.errors import NotFound
from crucible_contracts.models import EvaluationView, Event
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_contracts.tenancy import TENANT_HEADER
from crucible_gateway.events.hub import Entry, EventHub, Listener, Signal
from crucible_gateway.events.positions import ORIGIN, StreamId
from crucible_gateway.events.wire import Message
from crucible_runtime.async_clients import AsyncStorageClient

GAP = "gap"
CLOSED = "closed"

_TIMELINE = TypeAdapter(list[Event])


def of_event(event: Event, *, position: StreamId | None) -> Message:
    """A message of an event not read from the stream (storage's timeline), at `position`."""
    return Message(
        id=str(position or ORIGIN), event=event.event.value, data=event.model_dump_json()
    )


@dataclass(frozen=True)
class EventFilter:
    """The operators' stream's filters; None lets every value through."""

    backend: Backend | None = None
    status: Status | None = None
    event: EventName | None = None
    role: Role | None = None

    def accepts(self, entry: Entry) -> bool:
        for name in ("backend", "status", "event", "role"):
            wanted = getattr(self, name)
            if wanted is not None and entry.fields.get(name) != wanted.value:
                return False
        return True


def notice(name: str, *, position: StreamId | None, reason: str, message: str, **more) -> Message:
    """A `gap` or `closed` notice; its id is where the client resumes from."""
    data = {"reason": reason, "message": message, "last_event_id": str(position or ORIGIN)}
    return Message(id=str(position or ORIGIN), event=name, data=json.dumps({**data, **more}))


def slow_listener(position: StreamId | None) -> Message:
    return notice(
        CLOSED,
        position=position,
        reason="slow_listener",
        message="this client fell too far behind the events; reconnect with Last-Event-ID "
        "to resume where it stopped",
    )


# --- every event (operators) ---------------------------------------------------------------------


async def all_events(
    *,
    hub: EventHub,
    listener: Listener,
    accepts: Callable[[Entry], bool],
    after: StreamId | None,
    linger: float = 0,
) -> AsyncIterator[list[Message]]:
    """Every event `accepts` takes: those after `after` still in the stream, then live ones, in
    batches (what is queued when the listener wakes, `linger` seconds after the first one).

    Without `after` the stream starts now. When the stream no longer holds what followed
    `after` (trimmed, or Redis emptied), a `gap` notice comes first and the catch-up starts
    at the first entry kept; when Redis cannot be read, a `gap` notice says so and live events
    follow once the hub reads again. Ends only with a `closed` notice (a slow listener).
    """
    position = after if after is not None else listener.start
    if after is not None:
        try:
            retention = await hub.retention()
            start: StreamId | None = after
            reason = retention.gap_after(after)
            if reason is not None:
                start = None
                yield [
                    notice(
                        GAP,
                        position=after,
                        reason=reason,
                        message="the events stream no longer holds what followed "
                        "Last-Event-ID; what it holds follows",
                        first_retained_id=str(retention.first) if retention.first else None,
                    )
                ]
            async for page in hub.pages_after(start):
                position = page[-1].id
                yield [entry.message for entry in page if accepts(entry)]
        except RedisError:
            yield [
                notice(
                    GAP,
                    position=position,
                    reason="unavailable",
                    message="the events stream cannot be read now; live events follow once it can",
                )
            ]
    while True:
        batch = []
        for item in await listener.batch(linger):
            if item is Signal.OVERFLOW:
                yield [*batch, slow_listener(position)]
                return
            if isinstance(item, Entry) and (position is None or item.id > position):
                position = item.id
                batch.append(item.message)
        if batch:
            yield batch


# --- one evaluation -------------------------------------------------------------------------------


@dataclass
class _Following:
    """Where an evaluation's stream stands: the last position covered, whether the event that
    ends the primary run was sent (`done`) or is known to be recorded (`ended`), and (after a
    fallback to the stored timeline) the events the client has had from it."""

    position: StreamId | None
    done: bool = False
    ended: bool = False
    had: set[tuple] | None = None

    def fresh(self, entry: Entry) -> bool:
        if self.position is not None and entry.id <= self.position:
            return False
        return self.had is None or _key(Event.model_validate_json(entry.data)) not in self.had

    def sent(self, entry: Entry) -> Message:
        self.position = entry.id
        self.done = entry.ends_primary()
        return entry.message


async def evaluation_events(
    *,
    hub: EventHub,
    listener: Listener,
    storage: AsyncStorageClient,
    evaluation: EvaluationView,
    tenant: str | None,
    after: StreamId | None,
) -> AsyncIterator[list[Message]]:
    """The events of `evaluation` (read after `listener` was registered) until the one that
    ends its primary run, which carries the finished evaluation; then the stream ends.

    Without `after` the stream starts now, and an evaluation already finished gets its final
    event at once. With `after` the stream resumes after it; when the events stream no longer
    holds what followed (or cannot be read), the evaluation's stored timeline is sent instead
    (events the client had may come again; each carries the position the stream had reached).
    """
    state = _Following(position=after if after is not None else listener.start)
    if after is not None:
        async for message in _resume(hub, storage, state, evaluation, tenant, after):
            yield [message]
    if state.done:
        return
    if state.ended or Status(evaluation.status).is_terminal():
        async for message in _finish(storage, listener, state, evaluation, tenant):
            yield [message]
        return
    while not state.done:
        item = await listener.next()
        if item is Signal.OVERFLOW:
            yield [slow_listener(state.position)]
            return
        if item is Signal.RESYNC:
            # Redis failed meanwhile: the end may have been committed while it could not be
            # published. Storage is the truth.
            try:
                evaluation = await _evaluation(storage, evaluation.eval_id, tenant)
            except NotFound:
                return  # purged meanwhile
            if Status(evaluation.status).is_terminal():
                async for message in _finish(storage, listener, state, evaluation, tenant):
                    yield [message]
                return
        elif state.fresh(item):
            yield [state.sent(item)]


async def _resume(
    hub: EventHub,
    storage: AsyncStorageClient,
    state: _Following,
    evaluation: EvaluationView,
    tenant: str | None,
    after: StreamId,
) -> AsyncIterator[Message]:
    """The evaluation's events after `after`: from the stream while it holds them all, else
    (or when Redis fails) its stored timeline up to, not including, the event that ends it
    (`state.ended` then says that one is recorded)."""
    try:
        if (await hub.retention()).covers(after):
            async for page in hub.pages_after(after):
                for entry in page:
                    state.position = entry.id
                    if entry.eval_id == evaluation.eval_id:
                        yield state.sent(entry)
                        if state.done:
                            return
            return
    except RedisError:
        pass  # the stream cannot be read now: the stored timeline below stands in for it
    # Every entry handed out up to here was committed before the timeline is read: in it.
    state.position = hub.position
    timeline = await _timeline(storage, evaluation.eval_id, tenant)
    state.had = {_key(event) for event in timeline}
    for event in timeline:
        if _ends_primary(event):
            state.ended = True  # sent by `_finish`, with the evaluation
            return
        yield of_event(event, position=state.position)


async def _finish(
    storage: AsyncStorageClient,
    listener: Listener,
    state: _Following,
    evaluation: EvaluationView,
    tenant: str | None,
) -> AsyncIterator[Message]:
    """The last messages of a finished evaluation: what the listener holds up to the event that
    ends it, or, when that event is not there (published before this stream began, or lost
    while Redis was down), that event as storage recorded it, carrying the evaluation (read
    again unless `evaluation` is finished already)."""
    eval_id = evaluation.eval_id
    for item in listener.pending():
        if isinstance(item, Entry) and state.fresh(item):
            yield state.sent(item)
            if state.done:
                return
    if not Status(evaluation.status).is_terminal():
        evaluation = await _evaluation(storage, eval_id, tenant)
    timeline = await _timeline(storage, eval_id, tenant)
    ending = next((event for event in reversed(timeline) if _ends_primary(event)), None)
    if ending is None:  # the timeline always holds it; built from the evaluation, to be sure
        ending = Event(
            eval_id=eval_id,
            event=EventName.STATUS_CHANGED,
            role=Role.PRIMARY,
            status=evaluation.status,
            at=evaluation.completed_at or evaluation.created_at,
        )
    final = ending.model_copy(update={"backend": evaluation.backend, "evaluation": evaluation})
    yield of_event(final, position=state.position)


def _ends_primary(event: Event) -> bool:
    return (
        event.event is EventName.STATUS_CHANGED
        and event.role is Role.PRIMARY
        and event.status is not None
        and Status(event.status).is_terminal()
    )


def _key(event: Event) -> tuple[object, ...]:
    """What tells two events of one evaluation apart (the stored timeline has no stream ids)."""
    return (event.event, event.role, event.status, event.at)


async def _evaluation(
    storage: AsyncStorageClient, eval_id: str, tenant: str | None
) -> EvaluationView:
    return await storage.get_evaluation(eval_id, tenant=tenant)


async def _timeline(storage: AsyncStorageClient, eval_id: str, tenant: str | None) -> list[Event]:
    """The evaluation's stored timeline, oldest first."""
    headers = {TENANT_HEADER: tenant} if tenant is not None else None
    answer = await storage.request("GET", f"/evaluations/{eval_id}/events", headers=headers)
    return _TIMELINE.validate_json(answer.content)
