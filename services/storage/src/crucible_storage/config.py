"""Storage settings: where the database is, where events go, how big the connection pool is."""

from __future__ import annotations

from pydantic import Field

from crucible_contracts.settings import ServiceSettings

DEFAULT_DATABASE_URL = "sqlite:///./.run/crucible.db"


class Settings(ServiceSettings):
    """Read from the environment (DATABASE_URL, REDIS_URL, INTERNAL_API_KEY, ...)."""

    database_url: str = DEFAULT_DATABASE_URL
    # Unset: events are not published (the database stays the truth either way).
    redis_url: str | None = None
    # Apply Alembic migrations when the service starts; `python -m crucible_storage.migrate` also does.
    migrate_on_start: bool = True
    # How long start-up waits for a database that does not accept connections yet.
    startup_wait_seconds: float = 30
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # Whether the hot routes call the database on the event loop instead of a worker thread.
    # Unset: on SQLite only (short local calls); PostgreSQL's round trips and lock waits would
    # hold every other request up.
    db_inline: bool | None = None
    # SQLite: how long a writer waits for the file lock before giving up.
    sqlite_busy_timeout_ms: int = 5000
    # Redis publish timeouts: a slow or dead Redis must not hold up a committed write for long.
    redis_timeout_seconds: float = 0.5
    # Entries the events stream (EVENTS_STREAM) keeps, about: how far back a follower of the
    # gateway's live events can resume (`Last-Event-ID`). Each entry holds one event's JSON, the
    # result's output included on the event that ends an evaluation.
    events_stream_maxlen: int = Field(default=20_000, ge=100)
    # How often an operator may send one run that ended `error` back to `queued`.
    max_replays: int = Field(default=3, ge=0)
