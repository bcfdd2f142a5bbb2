"""The live events' dependencies: the process's hub, and where a client resumes from."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from crucible_contracts.errors import MalformedRequest
from crucible_gateway.events.hub import EventHub
from crucible_gateway.events.positions import StreamId


async def get_hub(request: Request) -> EventHub:
    return request.app.state.event_hub


async def get_resume_point(
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamId | None:
    """The `Last-Event-ID` a client resumes after, None without one (or an empty one, which
    EventSource sends when it has none); 400 when it is not a stream entry id."""
    if last_event_id is None or not last_event_id.strip():
        return None
    try:
        return StreamId.parse(last_event_id)
    except ValueError as exc:
        raise MalformedRequest(
            "Last-Event-ID must be an event id this API sent, e.g. 1733300000000-0",
            header="Last-Event-ID",
        ) from exc


HubDep = Annotated[EventHub, Depends(get_hub)]
ResumePointDep = Annotated[StreamId | None, Depends(get_resume_point)]
