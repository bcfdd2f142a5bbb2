"""FastAPI dependencies: one session per request (read or write), the database, the publisher,
the settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from crucible_storage.config import Settings
from crucible_storage.db import Database
from crucible_storage.events import EventPublisher


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def read_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    # Closing rolls back whatever the request did not commit.
    with database.reader() as session:
        yield session


def write_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.writer() as session:
        yield session


DatabaseDep = Annotated[Database, Depends(get_database)]
PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadSession = Annotated[Session, Depends(read_session)]
WriteSession = Annotated[Session, Depends(write_session)]
