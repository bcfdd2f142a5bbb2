"""The live events API: `GET /api/eval/{eval_id}/events` and `GET /api/events` as Server-Sent
Events (`service` makes the messages; here they only become an HTTP response)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from crucible_contracts.models import EvaluationView
from crucible_contracts.names import Backend, EventName, Role
from crucible_contracts.status import Status
from crucible_gateway.deps import AsyncStorageDep, PrincipalDep, SettingsDep
from crucible_gateway.evaluations.service import evaluation_json
from crucible_gateway.events import service
from crucible_gateway.events.deps import HubDep, ResumePointDep
from crucible_gateway.events.hub import EventHub, Listener, ListenersFull
from crucible_gateway.events.service import EventFilter
from crucible_gateway.events.wire import SEPARATOR, Message
from crucible_runtime.web import error_response

# A client that takes no bytes for this long is disconnected (its TCP window is full).
SEND_TIMEOUT_SECONDS = 30
STREAM_RESPONSES = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
    400: {"description": "Last-Event-ID is not an id this API sent."},
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The process's one reader of the events stream, from start to shutdown."""
    settings = app.state.settings
    hub = EventHub(
        settings.redis_url,
        max_listeners=settings.events_max_listeners,
        queue_size=settings.events_queue_size,
        retry_after=settings.events_retry_after_seconds,
    )
    app.state.event_hub = hub
    hub.start()
    yield
    await hub.close()


router = APIRouter(prefix="/api", lifespan=lifespan)


@router.get(
    "/eval/{eval_id}/events", response_class=EventSourceResponse, responses=STREAM_RESPONSES
)
async def follow_evaluation(
    eval_id: str,
    hub: HubDep,
    storage: AsyncStorageDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    after: ResumePointDep,
):
    """The evaluation's events (its shadow run's too) until the one that ends its primary run,
    which carries the finished evaluation; then the server closes the stream. 404 for an
    unknown eval_id and for another tenant's alike."""
    try:
        listener = hub.register(stream="evaluation", accepts=lambda entry: entry.eval_id == eval_id)
    except ListenersFull as exc:
        return _full(exc)
    try:
        # After registering: whatever lands from here on is in the listener's queue.
        evaluation = EvaluationView.model_validate_json(
            await evaluation_json(eval_id=eval_id, storage=storage, tenant=principal.read_scope)
        )
    except BaseException:
        hub.unregister(listener)
        raise
    messages = service.evaluation_events(
        hub=hub,
        listener=listener,
        storage=storage,
        evaluation=evaluation,
        tenant=principal.read_scope,
        after=after,
    )
    return _stream(messages, hub=hub, listener=listener, ping=settings.events_ping_seconds)


@router.get("/events", response_class=EventSourceResponse, responses=STREAM_RESPONSES)
async def follow_all(
    hub: HubDep,
    settings: SettingsDep,
    after: ResumePointDep,
    backend: Annotated[Backend | None, Query()] = None,
    status: Annotated[Status | None, Query()] = None,
    event: Annotated[EventName | None, Query()] = None,
    role: Annotated[Role | None, Query()] = None,
):
    """Every event of every tenant (operators), filtered by backend, status, event and role;
    never ends but with a `closed` notice."""
    accepts = EventFilter(backend=backend, status=status, event=event, role=role).accepts
    try:
        listener = hub.register(stream="all", accepts=accepts)
    except ListenersFull as exc:
        return _full(exc)
    messages = service.all_events(
        hub=hub,
        listener=listener,
        accepts=accepts,
        after=after,
        linger=settings.events_batch_seconds,
    )
    return _stream(messages, hub=hub, listener=listener, ping=settings.events_ping_seconds)


def _stream(
    messages: AsyncIterator[list[Message]], *, hub: EventHub, listener: Listener, ping: float
) -> EventSourceResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async with aclosing(messages):
                async for batch in messages:
                    if batch:
                        yield b"".join(message.wire for message in batch)
        finally:
            hub.unregister(listener)

    return EventSourceResponse(
        body(),
        ping=ping,
        sep=SEPARATOR,
        send_timeout=SEND_TIMEOUT_SECONDS,
        headers={"Cache-Control": "no-store"},
        # Also when the body never started (a client gone before the first byte).
        background=BackgroundTask(hub.unregister, listener),
    )


def _full(exc: ListenersFull) -> JSONResponse:
    response = error_response(exc)
    response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response
