"""FastAPI dependencies: one session per request (read or write), the database, the publisher,
the settings; and how the hot routes run their database work and answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from crucible_storage.config import Settings
from crucible_storage.db import Database
from crucible_storage.events import EventPublisher

T = TypeVar("T")


# Coroutines, so that FastAPI does not hand each of them to a worker thread.
async def get_database(request: Request) -> Database:
    return request.app.state.database


async def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def read_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    # Closing rolls back whatever the request did not commit.
    with database.reader() as session:
        yield session


def write_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.writer() as session:
        yield session


async def in_connection(database: Database, work: Callable[[Connection], T], *, write: bool) -> T:
    """`work(connection)` on a connection of its own, closed after (which rolls back what `work`
    did not commit). A write begins a transaction (BEGIN IMMEDIATE on SQLite); a read runs in
    autocommit, so `work` must read with a single statement.

    With `database.inline` (SQLite by default: its calls are short, and the four hops to a
    worker thread of a sync route cost more than the work) it runs on the event loop; otherwise
    in one hop to a worker thread, so that network round trips and lock waits never hold the loop.
    """

    def run() -> T:
        engine = database.write_engine if write else database.autocommit_engine
        with engine.connect() as connection:
            return work(connection)

    if database.inline:
        return run()
    return await run_in_threadpool(run)


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as JSON, serialised once by pydantic's own serialiser: what FastAPI would send for
    it as the route's response model, without validating a view built from the database again."""
    body = model.__pydantic_serializer__.to_json(model)
    return Response(body, status_code=status_code, media_type="application/json")


DatabaseDep = Annotated[Database, Depends(get_database)]
PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadSession = Annotated[Session, Depends(read_session)]
WriteSession = Annotated[Session, Depends(write_session)]
